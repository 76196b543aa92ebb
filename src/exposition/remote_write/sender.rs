//! One endpoint's queue and sending task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Auth, EndpointConfig, RemoteWriteMetrics, Sample, VERSION, encode};
use crate::source::backoff::Backoff;

/// The sending side of one endpoint: pushing never blocks. Samples travel
/// in chunks (an ingestion batch's worth), bounded by their count.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    queue: mpsc::UnboundedSender<Vec<Sample>>,
    /// Samples pushed and not yet taken into a request.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    dropped: Counter,
    queue_length: Gauge,
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
        if let Some(identity) = &config.identity {
            client = client.identity(identity.clone());
        }
        let (queue, rx) = mpsc::unbounded_channel();
        let this = Self {
            queue,
            queued: Arc::new(AtomicUsize::new(0)),
            capacity: config.queue_capacity.max(1),
            dropped: metrics.samples(&endpoint, "dropped"),
            queue_length: metrics.queue_length(&endpoint),
        };
        // Created now, so that every result shows from the start.
        metrics.samples(&endpoint, "sent");
        metrics.samples(&endpoint, "failed");
        let task = Arc::new(Task {
            client: client.build()?,
            metrics: metrics.clone(),
            queued: this.queued.clone(),
            queue_length: this.queue_length.clone(),
            endpoint,
            config,
        });
        Ok((this, tokio::spawn(task.run(rx, shutdown))))
    }

    /// Queues a sample; drops and counts it when the queue is full.
    pub fn push(&self, sample: Sample) -> bool {
        self.push_all(vec![sample]) == 1
    }

    /// Queues as many of `samples` as fit, in order, and drops and counts
    /// the rest; returns how many were queued.
    pub fn push_all(&self, mut samples: Vec<Sample>) -> usize {
        let wanted = samples.len();
        let mut room = 0;
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                room = wanted.min(self.capacity.saturating_sub(queued));
                Some(queued + room)
            });
        if room < wanted {
            self.dropped.inc_by((wanted - room) as u64);
            samples.truncate(room);
        }
        if room == 0 {
            return 0;
        }
        self.queue_length.inc_by(room as i64);
        if self.queue.send(samples).is_err() {
            // The task has stopped: nothing will send them.
            self.queued.fetch_sub(room, Ordering::AcqRel);
            self.queue_length.dec_by(room as i64);
            self.dropped.inc_by(room as u64);
            return 0;
        }
        room
    }
}

/// What became of a request.
enum Outcome {
    Accepted,
    /// Refused for good: a 4xx other than 429, and the store's reason.
    Refused(u16, String),
    /// To send again, after the server's delay when it gave one.
    Retry(Option<Duration>),
}

struct Task {
    client: reqwest::Client,
    metrics: RemoteWriteMetrics,
    queued: Arc<AtomicUsize>,
    queue_length: Gauge,
    endpoint: String,
    config: EndpointConfig,
}

impl Task {
    /// Fills batches by count and age and hands each to a delivery, at most
    /// `concurrency` of them in flight; a batch waits for a free one.
    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Vec<Sample>>,
        shutdown: CancellationToken,
    ) {
        let size = self.config.batch_size.max(1);
        let concurrency = self.config.concurrency.max(1);
        let in_flight = Arc::new(Semaphore::new(concurrency));
        // What a chunk left over when it filled a batch.
        let mut leftover: Vec<Sample> = Vec::new();
        let mut open = true;
        while open || !leftover.is_empty() {
            let mut batch: Vec<Sample> = Vec::with_capacity(size);
            let take = |batch: &mut Vec<Sample>, chunk: &mut Vec<Sample>| {
                let n = chunk.len().min(size - batch.len());
                batch.extend(chunk.drain(..n));
            };
            take(&mut batch, &mut leftover);
            if batch.is_empty() {
                // The first sample starts the batch's clock.
                match tokio::select! {
                    chunk = rx.recv() => chunk,
                    _ = shutdown.cancelled() => None,
                } {
                    Some(mut chunk) => {
                        take(&mut batch, &mut chunk);
                        leftover = chunk;
                    }
                    None => break,
                }
            }
            let deadline = tokio::time::Instant::now() + self.config.batch_age;
            while batch.len() < size && leftover.is_empty() && open {
                tokio::select! {
                    chunk = rx.recv() => match chunk {
                        Some(mut chunk) => {
                            take(&mut batch, &mut chunk);
                            leftover = chunk;
                        }
                        None => open = false,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.cancelled() => open = false,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            self.taken(batch.len());
            let (task, stop) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                task.deliver(&batch, &stop).await;
                drop(permit);
            });
        }
        // What is still queued goes out once more, after the deliveries in
        // flight.
        rx.close();
        let mut rest = leftover;
        while let Ok(chunk) = rx.try_recv() {
            rest.extend(chunk);
        }
        let _all = in_flight.acquire_many(concurrency as u32).await;
        let stop = CancellationToken::new();
        stop.cancel();
        for batch in rest.chunks(size) {
            self.taken(batch.len());
            self.deliver(batch, &stop).await;
        }
    }

    /// `n` samples left the queue for a request.
    fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.queue_length.dec_by(n as i64);
    }

    /// Sends `batch` until it is accepted or refused, or until shutdown.
    async fn deliver(&self, batch: &[Sample], shutdown: &CancellationToken) {
        let mut raw = Vec::with_capacity(batch.len() * 256);
        encode::write_request(batch, &self.config.external_labels, &mut raw);
        let body = bytes::Bytes::from(encode::compress(&raw));
        drop(raw);
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        let n = batch.len() as u64;
        let endpoint = [("endpoint", self.endpoint.clone())];
        loop {
            let started = Instant::now();
            let outcome = self.send(body.clone()).await;
            self.metrics
                .send_duration
                .get_or_create(&endpoint)
                .observe(started.elapsed().as_secs_f64());
            let wait = match outcome {
                Outcome::Accepted => {
                    self.metrics.samples(&self.endpoint, "sent").inc_by(n);
                    self.metrics
                        .last_success
                        .get_or_create(&endpoint)
                        .set(crate::telemetry::unix_now());
                    return;
                }
                Outcome::Refused(status, reason) => {
                    self.metrics.samples(&self.endpoint, "failed").inc_by(n);
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        status,
                        samples = n,
                        reason = %reason,
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
            self.metrics.retries.get_or_create(&endpoint).inc();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    async fn send(&self, body: bytes::Bytes) -> Outcome {
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
                    // The store's reason, as far as a log line goes.
                    let reason = response.text().await.unwrap_or_default();
                    let reason: String = reason.trim().chars().take(300).collect();
                    Outcome::Refused(status.as_u16(), reason)
                }
            }
            Err(error) => {
                tracing::debug!(endpoint = %self.endpoint, %error, "remote-write request failed");
                Outcome::Retry(None)
            }
        }
    }
}
