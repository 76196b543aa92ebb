//! Forwarding: the endpoints together, what ingestion hands them, and the
//! aggregates sent at an interval.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AggregateRef, EndpointConfig, RemoteWrite, RemoteWriteMetrics, Sample, SeriesRef};
use crate::store::{FamilySnapshot, SeriesStore, SnapshotVisitor, visit};

/// The label that tells apart the processes' parts of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLabel {
    /// Its name (`exporter_shard`).
    pub name: String,
    /// This process' value: unique among the processes that share a
    /// subscription, and the same across its restarts.
    pub value: String,
}

/// What to forward, and where.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// The endpoints, each with its own queue.
    pub endpoints: Vec<EndpointConfig>,
    /// Added to the aggregates' samples.
    pub shard: ShardLabel,
    /// How often the aggregates are sent.
    pub interval: Duration,
}

/// The endpoints, as ingestion sees them: every sample handed over goes to
/// each. Clones share them.
#[derive(Debug, Clone)]
pub struct Forwarding {
    sinks: Arc<[RemoteWrite]>,
    future_timestamps: Counter,
}

impl Forwarding {
    /// Starts a task per endpoint, and one that sends `store`'s aggregates
    /// every `config.interval` until `shutdown`.
    pub fn start(
        config: ForwardConfig,
        store: Arc<SeriesStore>,
        metrics: &RemoteWriteMetrics,
        shutdown: CancellationToken,
    ) -> Result<(Self, Vec<JoinHandle<()>>), reqwest::Error> {
        let mut sinks = Vec::with_capacity(config.endpoints.len());
        let mut tasks = Vec::with_capacity(config.endpoints.len() + 1);
        for endpoint in config.endpoints {
            let (sink, task) = RemoteWrite::start(endpoint, metrics, shutdown.clone())?;
            sinks.push(sink);
            tasks.push(task);
        }
        let this = Self {
            sinks: sinks.into(),
            future_timestamps: metrics.future_timestamps.clone(),
        };
        let aggregates = this.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: wait one interval for something to send.
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.cancelled() => break,
                }
                let samples = aggregate_samples(
                    &store.aggregates(),
                    &config.shard,
                    crate::telemetry::unix_now_ms(),
                );
                aggregates.push(samples);
            }
        }));
        Ok((this, tasks))
    }

    /// Hands `samples` to every endpoint.
    pub fn push(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let Some((last, others)) = self.sinks.split_last() else {
            return;
        };
        for sink in others {
            sink.push_all(samples.clone());
        }
        last.push_all(samples);
    }

    /// Counts envelopes whose timestamp was too far ahead to send.
    pub fn future_timestamps(&self) -> &Counter {
        &self.future_timestamps
    }
}

/// The samples of `families`, each labelled with `shard`, at `timestamp_ms`.
/// They share the snapshot's names and labels rather than copy them.
pub(super) fn aggregate_samples(
    families: &[FamilySnapshot],
    shard: &ShardLabel,
    timestamp_ms: i64,
) -> Vec<Sample> {
    let mut collect = Collect {
        shard: Arc::new(shard.clone()),
        timestamp_ms,
        bounds: Vec::new(),
        number: dtoa::Buffer::new(),
        out: Vec::new(),
    };
    visit(families, &mut collect);
    collect.out
}

struct Collect {
    shard: Arc<ShardLabel>,
    timestamp_ms: i64,
    /// The family's bucket bounds met so far, written once each.
    bounds: Vec<(f64, Arc<str>)>,
    number: dtoa::Buffer,
    out: Vec<Sample>,
}

impl Collect {
    /// `le` as its label's value: `+Inf` for the last bucket.
    fn bound(&mut self, le: f64) -> Arc<str> {
        if let Some((_, text)) = self.bounds.iter().find(|(bound, _)| *bound == le) {
            return text.clone();
        }
        let text: Arc<str> = crate::exposition::bucket_bound(&mut self.number, le).into();
        self.bounds.push((le, text.clone()));
        text
    }
}

impl SnapshotVisitor for Collect {
    fn family(&mut self, _family: &FamilySnapshot) {
        self.bounds.clear();
    }

    fn sample(&mut self, sample: crate::store::Sample<'_>) {
        let le = sample.le.map(|le| self.bound(le));
        self.out.push(Sample {
            series: SeriesRef::Aggregate(Box::new(AggregateRef {
                family: sample.family.name.clone(),
                suffix: sample.suffix,
                labels: sample.labels.clone(),
                le,
                shard: self.shard.clone(),
            })),
            value: sample.value.as_f64(),
            timestamp_ms: self.timestamp_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{MetricKind, SeriesUpdate, Value};
    use crate::telemetry::Telemetry;

    /// The samples as a request carries them: labels, value and time.
    fn written(samples: &[Sample]) -> Vec<String> {
        use prost::Message;
        let mut raw = Vec::new();
        super::super::write_request(samples, &[], &mut raw);
        let request = super::super::proto::WriteRequest::decode(raw.as_slice()).unwrap();
        request
            .timeseries
            .iter()
            .map(|series| {
                let labels: Vec<String> = series
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let sample = &series.samples[0];
                format!(
                    "{} {} @{}",
                    labels.join(","),
                    sample.value,
                    sample.timestamp
                )
            })
            .collect()
    }

    fn update(family: &str, kind: MetricKind, value: Value) -> SeriesUpdate {
        SeriesUpdate {
            family: family.into(),
            kind,
            original: family.into(),
            labels: vec![("origin".into(), "gorouter".into())],
            value,
            buckets: vec![0.1, 1.0],
        }
    }

    #[test]
    fn only_what_this_process_counts_is_an_aggregate_and_it_names_its_shard() {
        let store = SeriesStore::new(Duration::from_secs(60), Telemetry::new());
        let now = tokio::time::Instant::now();
        // Set by the envelopes: the store's, not an aggregate.
        store.apply(update("latency", MetricKind::Gauge, Value::Set(3.0)), now);
        store.apply(
            update("requests", MetricKind::Counter, Value::Set(10.0)),
            now,
        );
        // Counted here.
        store.apply(update("http", MetricKind::Counter, Value::Add(2.0)), now);
        store.apply(update("http", MetricKind::Counter, Value::Add(1.0)), now);
        store.apply(
            update("duration", MetricKind::Histogram, Value::Observe(0.5)),
            now,
        );
        let shard = ShardLabel {
            name: "exporter_shard".into(),
            value: "a".into(),
        };
        let sent = written(&aggregate_samples(&store.aggregates(), &shard, 1_000));
        assert_eq!(
            sent,
            [
                "__name__=duration_bucket,exporter_shard=a,le=0.1,origin=gorouter 0 @1000",
                "__name__=duration_bucket,exporter_shard=a,le=1.0,origin=gorouter 1 @1000",
                "__name__=duration_bucket,exporter_shard=a,le=+Inf,origin=gorouter 1 @1000",
                "__name__=duration_sum,exporter_shard=a,origin=gorouter 0.5 @1000",
                "__name__=duration_count,exporter_shard=a,origin=gorouter 1 @1000",
                "__name__=http_total,exporter_shard=a,origin=gorouter 3 @1000",
            ]
        );
        // A counter that a total sets again is the envelopes' once more.
        store.apply(update("http", MetricKind::Counter, Value::Set(7.0)), now);
        let names = written(&aggregate_samples(&store.aggregates(), &shard, 1));
        assert!(
            !names.iter().any(|s| s.starts_with("__name__=http_total")),
            "{names:?}"
        );
    }
}
