//! A remote-write receiver on loopback that keeps every sample it accepts,
//! with its whole label set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use cf_firehose_exporter::exposition::remote_write::decode;

/// One sample as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl Received {
    pub fn name(&self) -> &str {
        &self.labels["__name__"]
    }
}

/// The samples received so far, in order of arrival.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    samples: Arc<Mutex<Vec<Received>>>,
    pub address: Option<SocketAddr>,
}

impl Receiver {
    /// Serves on a free loopback port.
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// Serves on a free loopback port, accepting every well-formed request
    /// and keeping none of its samples: for a stream that runs for long.
    #[allow(dead_code)]
    pub async fn start_discarding() -> Self {
        Self::serve(false).await
    }

    async fn serve(keep: bool) -> Self {
        let mut receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        receiver.address = Some(listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(write))
            .with_state((receiver.samples.clone(), keep));
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// Where to send.
    pub fn url(&self) -> url::Url {
        format!("http://{}/api/v1/write", self.address.unwrap())
            .parse()
            .unwrap()
    }

    pub fn samples(&self) -> Vec<Received> {
        self.samples.lock().unwrap().clone()
    }

    /// The samples named `name`.
    pub fn named(&self, name: &str) -> Vec<Received> {
        self.samples()
            .into_iter()
            .filter(|s| s.name() == name)
            .collect()
    }
}

async fn write(
    State((samples, keep)): State<(Arc<Mutex<Vec<Received>>>, bool)>,
    body: Bytes,
) -> StatusCode {
    let Ok(request) = decode(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !keep {
        return StatusCode::NO_CONTENT;
    }
    let mut samples = samples.lock().unwrap();
    for series in request.timeseries {
        let labels: BTreeMap<String, String> = series
            .labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        for s in series.samples {
            samples.push(Received {
                labels: labels.clone(),
                value: s.value,
                timestamp_ms: s.timestamp,
            });
        }
    }
    StatusCode::NO_CONTENT
}
