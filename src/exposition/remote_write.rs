//! Prometheus remote-write 1.0: samples sent to a distributed store.
//!
//! Each endpoint has its own bounded queue and sending task. Pushing never
//! waits: a full queue drops the sample and counts it. The task batches
//! samples by count and by age, encodes a `WriteRequest` (protobuf, then
//! snappy's block format) and POSTs it with the protocol's headers. A 5xx,
//! a 429 or a network error is retried with backoff (after the server's
//! `Retry-After`, when it sends one) while the queue keeps filling; any
//! other 4xx drops the batch and counts its samples as failed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::secret::Secret;
use crate::source::backoff::Backoff;

/// The messages of the protocol, from `proto/prometheus/remote.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// The version header's value for remote-write 1.0.
pub const VERSION: &str = "0.1.0";

/// A request's body: `request` in protobuf, compressed in snappy's block
/// format, as the protocol asks.
pub fn encode(request: &proto::WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("a request is far below snappy's 4 GiB limit")
}

/// Reads a body [`encode`] wrote: for tests and receivers.
pub fn decode(body: &[u8]) -> Result<proto::WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    proto::WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// One sample of one series: its labels (sorted by name, `__name__` among
/// them), its value and its time in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, shared by its samples.
    pub labels: Arc<[proto::Label]>,
    /// The value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// How the endpoint is authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Nothing.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// Its password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// One endpoint's settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where to POST.
    pub url: Url,
    /// Credentials.
    pub auth: Auth,
    /// Extra CA certificates for the endpoint's TLS, beside the system's.
    pub ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Accept any certificate.
    pub skip_verify: bool,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Samples that fill a request.
    pub batch_size: usize,
    /// Longest a sample waits for its batch to fill.
    pub batch_age: Duration,
    /// Samples the queue holds while requests fail; beyond, they are dropped.
    pub queue_capacity: usize,
    /// First and longest delay between retries.
    pub min_backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
}

impl EndpointConfig {
    /// Defaults for `url`: batches of 2,000 samples or 1 s, 100,000 queued,
    /// retries from 30 ms to 5 s, 30 s per request.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            auth: Auth::None,
            ca: Vec::new(),
            skip_verify: false,
            timeout: Duration::from_secs(30),
            batch_size: 2_000,
            batch_age: Duration::from_secs(1),
            queue_capacity: 100_000,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The endpoint as a label: scheme, host, port and path, never the
    /// user information or the query.
    pub fn label(&self) -> String {
        let url = &self.url;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        )
    }
}

type EndpointLabel = [(&'static str, String); 1];
type ResultLabel = [(&'static str, String); 2];

/// The remote-write self metrics, by endpoint.
#[derive(Debug, Clone)]
pub struct RemoteWriteMetrics {
    samples: Family<ResultLabel, Counter>,
    queue_length: Family<EndpointLabel, Gauge>,
    last_success: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    send_duration: Family<EndpointLabel, Histogram>,
    retries: Family<EndpointLabel, Counter>,
}

impl Default for RemoteWriteMetrics {
    fn default() -> Self {
        Self {
            samples: Family::default(),
            queue_length: Family::default(),
            last_success: Family::default(),
            send_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            retries: Family::default(),
        }
    }
}

impl RemoteWriteMetrics {
    /// Registers the metrics under `cf_firehose_exporter_remote_write_`.
    pub fn register(&self, registry: &mut Registry) {
        let prefix = format!("{}remote_write_", crate::telemetry::PREFIX);
        let name = |n: &str| format!("{prefix}{n}");
        registry.register(
            name("samples"),
            "Samples handed to remote-write, by endpoint and result: sent, failed (refused with a 4xx), dropped (queue full)",
            self.samples.clone(),
        );
        registry.register(
            name("queue_length"),
            "Samples waiting to be sent, by endpoint",
            self.queue_length.clone(),
        );
        registry.register(
            name("last_success_timestamp_seconds"),
            "Unix time of the last request the endpoint accepted",
            self.last_success.clone(),
        );
        registry.register(
            name("send_duration_seconds"),
            "Time taken by remote-write requests, by endpoint",
            self.send_duration.clone(),
        );
        registry.register(
            name("retries"),
            "Remote-write requests sent again after a 5xx, a 429 or a network error, by endpoint",
            self.retries.clone(),
        );
    }

    /// Samples of `endpoint` with `result` (`sent`, `failed`, `dropped`).
    pub fn samples(&self, endpoint: &str, result: &str) -> Counter {
        self.samples
            .get_or_create(&[
                ("endpoint", endpoint.to_owned()),
                ("result", result.to_owned()),
            ])
            .clone()
    }

    fn queue_length(&self, endpoint: &str) -> Gauge {
        self.queue_length
            .get_or_create(&[("endpoint", endpoint.to_owned())])
            .clone()
    }
}

/// The sending side of one endpoint: pushing never blocks.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    queue: mpsc::Sender<Sample>,
    dropped: Counter,
    queued: Gauge,
}

impl RemoteWrite {
    /// Starts the endpoint's task, which runs until `shutdown` and then
    /// sends what is queued once more.
    pub fn start(
        config: EndpointConfig,
        metrics: &RemoteWriteMetrics,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), reqwest::Error> {
        let endpoint = config.label();
        let mut client = reqwest::Client::builder()
            .timeout(config.timeout)
            .danger_accept_invalid_certs(config.skip_verify)
            .redirect(reqwest::redirect::Policy::none());
        for cert in &config.ca {
            client = client.add_root_certificate(reqwest::Certificate::from_der(cert)?);
        }
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let this = Self {
            queue,
            dropped: metrics.samples(&endpoint, "dropped"),
            queued: metrics.queue_length(&endpoint),
        };
        // Created now, so that every result shows from the start.
        metrics.samples(&endpoint, "sent");
        metrics.samples(&endpoint, "failed");
        let task = Task {
            client: client.build()?,
            metrics: metrics.clone(),
            queued: this.queued.clone(),
            endpoint,
            config,
        };
        Ok((this, tokio::spawn(task.run(rx, shutdown))))
    }

    /// Queues a sample; drops and counts it when the queue is full.
    pub fn push(&self, sample: Sample) -> bool {
        match self.queue.try_send(sample) {
            Ok(()) => {
                self.queued.inc();
                true
            }
            Err(_) => {
                self.dropped.inc();
                false
            }
        }
    }
}

/// What became of a request.
enum Outcome {
    Accepted,
    /// Refused for good: a 4xx other than 429.
    Refused(u16),
    /// To send again, after the server's delay when it gave one.
    Retry(Option<Duration>),
}

struct Task {
    client: reqwest::Client,
    metrics: RemoteWriteMetrics,
    queued: Gauge,
    endpoint: String,
    config: EndpointConfig,
}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<Sample>, shutdown: CancellationToken) {
        let mut batch: Vec<Sample> = Vec::with_capacity(self.config.batch_size);
        loop {
            // Fill a batch: the first sample starts its clock.
            let first = tokio::select! {
                sample = rx.recv() => sample,
                _ = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.config.batch_age;
            while batch.len() < self.config.batch_size {
                tokio::select! {
                    sample = rx.recv() => match sample {
                        Some(sample) => batch.push(sample),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            self.queued.dec_by(batch.len() as i64);
            self.deliver(&batch, &shutdown).await;
            batch.clear();
        }
        // What is still queued goes out once more.
        rx.close();
        while let Ok(sample) = rx.try_recv() {
            batch.push(sample);
        }
        if !batch.is_empty() {
            self.queued.dec_by(batch.len() as i64);
            let stop = CancellationToken::new();
            stop.cancel();
            self.deliver(&batch, &stop).await;
        }
    }

    /// Sends `batch` until it is accepted or refused, or until shutdown.
    async fn deliver(&self, batch: &[Sample], shutdown: &CancellationToken) {
        let body = encode(&request(batch));
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        let n = batch.len() as u64;
        loop {
            let started = Instant::now();
            let outcome = self.send(body.clone()).await;
            self.metrics
                .send_duration
                .get_or_create(&[("endpoint", self.endpoint.clone())])
                .observe(started.elapsed().as_secs_f64());
            let wait = match outcome {
                Outcome::Accepted => {
                    self.metrics.samples(&self.endpoint, "sent").inc_by(n);
                    self.metrics
                        .last_success
                        .get_or_create(&[("endpoint", self.endpoint.clone())])
                        .set(crate::telemetry::unix_now());
                    return;
                }
                Outcome::Refused(status) => {
                    self.metrics.samples(&self.endpoint, "failed").inc_by(n);
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        status,
                        samples = n,
                        "remote-write refused a batch: its samples are dropped"
                    );
                    return;
                }
                Outcome::Retry(after) => {
                    let delay = backoff.next_delay();
                    after.map_or(delay, |after| after.max(delay))
                }
            };
            if shutdown.is_cancelled() {
                self.metrics.samples(&self.endpoint, "failed").inc_by(n);
                return;
            }
            self.metrics
                .retries
                .get_or_create(&[("endpoint", self.endpoint.clone())])
                .inc();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Outcome {
        let mut request = self
            .client
            .post(self.config.url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header(
                "User-Agent",
                concat!("cf-firehose-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Prometheus-Remote-Write-Version", VERSION)
            .body(body);
        request = match &self.config.auth {
            Auth::None => request,
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Outcome::Accepted
                } else if status.as_u16() == 429 || status.is_server_error() {
                    let after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Outcome::Retry(after)
                } else {
                    Outcome::Refused(status.as_u16())
                }
            }
            Err(error) => {
                tracing::debug!(endpoint = %self.endpoint, %error, "remote-write request failed");
                Outcome::Retry(None)
            }
        }
    }
}

/// A request of one time series per sample, in the batch's order.
fn request(batch: &[Sample]) -> proto::WriteRequest {
    proto::WriteRequest {
        timeseries: batch
            .iter()
            .map(|s| proto::TimeSeries {
                labels: s.labels.to_vec(),
                samples: vec![proto::Sample {
                    value: s.value,
                    timestamp: s.timestamp_ms,
                }],
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Arc<[proto::Label]> {
        pairs
            .iter()
            .map(|(name, value)| proto::Label {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect()
    }

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let batch = [
            Sample {
                labels: labels(&[("__name__", "CapacityRemainingMemory"), ("origin", "rep")]),
                value: 1024.5,
                timestamp_ms: 1_700_000_000_123,
            },
            Sample {
                labels: labels(&[("__name__", "total_requests_total")]),
                value: 7.0,
                timestamp_ms: 1_700_000_000_456,
            },
        ];
        let body = encode(&request(&batch));
        // Snappy's block format starts with the raw length as a varint.
        let raw = request(&batch).encode_to_vec();
        assert_eq!(usize::from(body[0] & 0x7f), raw.len() & 0x7f);
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.timeseries.len(), 2);
        assert_eq!(
            decoded.timeseries[0].labels[0].value,
            "CapacityRemainingMemory"
        );
        assert_eq!(decoded.timeseries[0].samples[0].value, 1024.5);
        assert_eq!(
            decoded.timeseries[1].samples[0].timestamp,
            1_700_000_000_456
        );
        assert!(decode(b"not snappy").is_err());
    }

    #[test]
    fn the_endpoint_label_leaves_out_credentials_and_the_query() {
        let config = EndpointConfig::new(
            "https://user:pass@mimir.example.com:8080/api/v1/push?tenant=x"
                .parse()
                .unwrap(),
        );
        assert_eq!(config.label(), "https://mimir.example.com:8080/api/v1/push");
    }
}
