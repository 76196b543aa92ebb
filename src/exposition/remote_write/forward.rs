//! Forwarding: the endpoints together, what ingestion hands them, and the
//! aggregates sent at an interval.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{EndpointConfig, RemoteWrite, RemoteWriteMetrics, Sample, SeriesRef, proto};
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
pub(super) fn aggregate_samples(
    families: &[FamilySnapshot],
    shard: &ShardLabel,
    timestamp_ms: i64,
) -> Vec<Sample> {
    let mut collect = Collect {
        shard,
        timestamp_ms,
        number: dtoa::Buffer::new(),
        out: Vec::new(),
    };
    visit(families, &mut collect);
    collect.out
}

struct Collect<'a> {
    shard: &'a ShardLabel,
    timestamp_ms: i64,
    number: dtoa::Buffer,
    out: Vec<Sample>,
}

impl SnapshotVisitor for Collect<'_> {
    fn family(&mut self, _family: &FamilySnapshot) {}

    fn sample(&mut self, sample: crate::store::Sample<'_>) {
        let label = |name: &str, value: &str| proto::Label {
            name: name.into(),
            value: value.into(),
        };
        let mut labels: Vec<proto::Label> = Vec::with_capacity(sample.labels.len() + 3);
        labels.push(label(
            "__name__",
            &format!("{}{}", sample.family.name, sample.suffix),
        ));
        labels.extend(sample.labels.iter().map(|(k, v)| label(k, v)));
        if let Some(le) = sample.le {
            let le = if le == f64::INFINITY {
                "+Inf"
            } else {
                self.number.format(le)
            };
            labels.push(label("le", le));
        }
        if !labels.iter().any(|l| l.name == self.shard.name) {
            labels.push(label(&self.shard.name, &self.shard.value));
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        self.out.push(Sample {
            series: SeriesRef::Labels(labels.into()),
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
        let samples = aggregate_samples(&store.aggregates(), &shard, 1_000);
        let written: Vec<String> = samples
            .iter()
            .map(|s| {
                let SeriesRef::Labels(labels) = &s.series else {
                    unreachable!()
                };
                let labels: Vec<String> = labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                format!("{} {} @{}", labels.join(","), s.value, s.timestamp_ms)
            })
            .collect();
        assert_eq!(
            written,
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
        let names: Vec<String> = aggregate_samples(&store.aggregates(), &shard, 1)
            .iter()
            .map(|s| match &s.series {
                SeriesRef::Labels(l) => l[0].value.clone(),
                SeriesRef::Stored { .. } => unreachable!(),
            })
            .collect();
        assert!(!names.contains(&"http_total".to_string()), "{names:?}");
    }
}
