//! Remote-write against receivers over loopback that answer as told: a 500
//! then a 200 is retried and delivered once, a 429 is retried after its
//! Retry-After, a 400 is dropped and counted without a retry, a receiver
//! down for 30 s loses nothing that fits in the queue, and a full queue
//! drops and counts rather than waiting.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cf_firehose_exporter::exposition::remote_write::{
    Auth, EndpointConfig, RemoteWrite, RemoteWriteMetrics, Sample, decode,
};
use cf_firehose_exporter::secret::Secret;
use tokio_util::sync::CancellationToken;

/// What a receiver saw.
#[derive(Debug, Default)]
struct Seen {
    /// Answers to give, in turn; 200 once they run out.
    script: VecDeque<(u16, Option<u64>)>,
    /// Requests answered, and when.
    attempts: Vec<(u16, Instant)>,
    /// Samples of the accepted requests: (the `n` label, value, timestamp).
    samples: Vec<(String, f64, i64)>,
    headers: Vec<HeaderMap>,
}

type Receiver = Arc<Mutex<Seen>>;

async fn write(State(seen): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let mut seen = seen.lock().unwrap();
    let (status, retry_after) = seen.script.pop_front().unwrap_or((200, None));
    seen.attempts.push((status, Instant::now()));
    if status / 100 == 2 {
        let request = decode(&body).expect("a valid remote-write body");
        for series in request.timeseries {
            let n = series
                .labels
                .iter()
                .find(|l| l.name == "n")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            for s in series.samples {
                seen.samples.push((n.clone(), s.value, s.timestamp));
            }
        }
        seen.headers.push(headers);
    }
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("Retry-After", after.to_string().parse().unwrap());
    }
    response
}

/// Serves a receiver on `listener`.
fn serve(listener: tokio::net::TcpListener, seen: Receiver) {
    let app = axum::Router::new()
        .route("/api/v1/write", axum::routing::post(write))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

async fn receiver(script: &[(u16, Option<u64>)]) -> (Receiver, SocketAddr) {
    let seen = Receiver::default();
    seen.lock().unwrap().script = script.iter().copied().collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    serve(listener, seen.clone());
    (seen, address)
}

fn config(address: SocketAddr) -> EndpointConfig {
    let mut config = EndpointConfig::new(format!("http://{address}/api/v1/write").parse().unwrap());
    config.batch_size = 50;
    config.batch_age = Duration::from_millis(50);
    config.min_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config
}

fn sample(n: usize) -> Sample {
    Sample::with_labels(
        &[("__name__", "requests_total"), ("n", &n.to_string())],
        n as f64,
        1_700_000_000_000 + n as i64,
    )
}

/// Waits until the receiver holds `n` samples, for at most `patience`.
async fn received(seen: &Receiver, n: usize, patience: Duration) -> Vec<(String, f64, i64)> {
    let deadline = Instant::now() + patience;
    loop {
        let got = seen.lock().unwrap().samples.clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(metrics: &RemoteWriteMetrics, endpoint: &str, result: &str) -> u64 {
    metrics.samples(endpoint, result).get()
}

#[tokio::test]
async fn a_500_then_a_200_is_retried_and_delivered_once_with_the_protocols_headers() {
    let (seen, address) = receiver(&[(500, None), (503, None)]).await;
    let metrics = RemoteWriteMetrics::default();
    let mut config = config(address);
    config.auth = Auth::Basic {
        username: "prometheus".into(),
        password: Secret::new("s3cr3t"),
    };
    let endpoint = config.label();
    let (rw, task) = RemoteWrite::start(config, &metrics, CancellationToken::new()).unwrap();
    for n in 0..120 {
        assert!(rw.push(sample(n)));
    }
    let got = received(&seen, 120, Duration::from_secs(10)).await;
    let expected: Vec<_> = (0..120)
        .map(|n| (n.to_string(), n as f64, 1_700_000_000_000 + n as i64))
        .collect();
    assert_eq!(
        got, expected,
        "every sample once, in order, with its timestamp"
    );
    let seen = seen.lock().unwrap();
    let statuses: Vec<u16> = seen.attempts.iter().map(|a| a.0).collect();
    assert_eq!(&statuses[..3], &[500, 503, 200]);
    let headers = &seen.headers[0];
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("cf-firehose-exporter/")
    );
    // prometheus:s3cr3t
    assert_eq!(headers["authorization"], "Basic cHJvbWV0aGV1czpzM2NyM3Q=");
    assert_eq!(metric(&metrics, &endpoint, "sent"), 120);
    assert_eq!(metric(&metrics, &endpoint, "failed"), 0);
    assert_eq!(metric(&metrics, &endpoint, "dropped"), 0);
    task.abort();
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let (seen, address) = receiver(&[(429, Some(1))]).await;
    let metrics = RemoteWriteMetrics::default();
    let mut config = config(address);
    config.auth = Auth::Bearer(Secret::new("token-1"));
    let (rw, task) = RemoteWrite::start(config, &metrics, CancellationToken::new()).unwrap();
    rw.push(sample(1));
    let got = received(&seen, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let seen = seen.lock().unwrap();
    let (first, second) = (seen.attempts[0], seen.attempts[1]);
    assert_eq!((first.0, second.0), (429, 200));
    assert!(
        second.1 - first.1 >= Duration::from_millis(950),
        "waited {:?}",
        second.1 - first.1
    );
    assert_eq!(seen.headers[0]["authorization"], "Bearer token-1");
    task.abort();
}

#[tokio::test]
async fn a_400_is_dropped_and_counted_without_a_retry() {
    let (seen, address) = receiver(&[(400, None)]).await;
    let metrics = RemoteWriteMetrics::default();
    let config = config(address);
    let endpoint = config.label();
    let (rw, task) = RemoteWrite::start(config, &metrics, CancellationToken::new()).unwrap();
    for n in 0..10 {
        rw.push(sample(n));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics, &endpoint, "failed") < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&metrics, &endpoint, "failed"), 10);
    // The next batch goes through: the refusal was that batch's alone.
    rw.push(sample(10));
    let got = received(&seen, 1, Duration::from_secs(10)).await;
    assert_eq!(got, vec![("10".to_owned(), 10.0, 1_700_000_000_010)]);
    let attempts: Vec<u16> = seen.lock().unwrap().attempts.iter().map(|a| a.0).collect();
    assert_eq!(
        attempts,
        vec![400, 200],
        "the refused batch is not sent again"
    );
    assert_eq!(metric(&metrics, &endpoint, "sent"), 1);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_seconds_loses_nothing_that_fits_in_the_queue() {
    // A free port with nothing listening on it yet.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = RemoteWriteMetrics::default();
    let config = config(address);
    let endpoint = config.label();
    let (rw, task) = RemoteWrite::start(config, &metrics, CancellationToken::new()).unwrap();
    let started = Instant::now();
    // 100 samples a second while the receiver is down.
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(30) {
        for _ in 0..10 {
            assert!(rw.push(sample(n)), "sample {n} fits in the queue");
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = Receiver::default();
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    serve(listener, seen.clone());
    let got = received(&seen, n, Duration::from_secs(20)).await;
    assert_eq!(got.len(), n, "every sample of the 30 s arrives");
    let mut numbers: Vec<usize> = got.iter().map(|s| s.0.parse().unwrap()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), n, "each exactly once");
    assert_eq!(metric(&metrics, &endpoint, "dropped"), 0);
    assert_eq!(metric(&metrics, &endpoint, "sent"), n as u64);
    task.abort();
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = RemoteWriteMetrics::default();
    let mut config = config(address);
    config.queue_capacity = 10;
    config.batch_size = 1_000;
    config.batch_age = Duration::from_secs(60);
    let endpoint = config.label();
    let (rw, task) = RemoteWrite::start(config, &metrics, CancellationToken::new()).unwrap();
    let started = Instant::now();
    let kept = (0..25).filter(|&n| rw.push(sample(n))).count();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "pushing never waits"
    );
    // The task may already hold the first in its batch: 10 or 11 kept.
    assert!((10..=11).contains(&kept), "{kept}");
    assert_eq!(metric(&metrics, &endpoint, "dropped"), 25 - kept as u64);
    task.abort();
}
