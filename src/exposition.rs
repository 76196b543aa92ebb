//! Exposition: writes a snapshot of the store and the self metrics in the
//! Prometheus text format 0.0.4, through prometheus-client.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::naming::MetricKind;
use crate::store::SeriesStore;
use crate::telemetry::Telemetry;

/// The Content-Type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything a scrape writes: the relayed series, then the self metrics.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
    telemetry: Telemetry,
}

impl Exposition {
    /// Exposes `store` and `telemetry`.
    pub fn new(store: Arc<SeriesStore>, telemetry: Telemetry) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StoreCollector(store)));
        telemetry.register(&mut registry);
        Self {
            registry,
            telemetry,
        }
    }

    /// Encodes one scrape in the text format 0.0.4 and records its duration.
    pub fn encode_text(&self) -> String {
        let started = Instant::now();
        let mut body = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry)
            .expect("writing to a String cannot fail");
        self.telemetry
            .scrape_duration
            .set(started.elapsed().as_secs_f64());
        body
    }
}

/// Presents the store to prometheus-client as families of gauges and counters.
#[derive(Debug)]
struct StoreCollector(Arc<SeriesStore>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in self.0.snapshot() {
            let metric_type = match family.kind {
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Counter => MetricType::Counter,
            };
            let mut metric =
                encoder.encode_descriptor(&family.name, &family.help, None, metric_type)?;
            for (labels, value) in &family.series {
                let mut sample = metric.encode_family(labels)?;
                match family.kind {
                    MetricKind::Gauge => sample.encode_gauge(value)?,
                    MetricKind::Counter => {
                        sample.encode_counter::<NoLabelSet, _, f64>(value, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{SeriesUpdate, Value};
    use std::time::Duration;

    #[test]
    fn golden_text_for_a_fixed_store() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(Duration::from_secs(60), telemetry.clone()));
        let now = tokio::time::Instant::now();
        let updates = [
            (
                "requests",
                MetricKind::Counter,
                "requests",
                vec![("origin", "gorouter")],
                1234.0,
            ),
            (
                "numCPUS",
                MetricKind::Gauge,
                "numCPUS",
                vec![("origin", "rep"), ("unit", "count")],
                4.0,
            ),
            (
                "tricky",
                MetricKind::Gauge,
                "tricky\\name",
                vec![("v", "a\"b\\c\nd")],
                0.5,
            ),
        ];
        for (family, kind, original, labels, v) in updates {
            store.apply(
                SeriesUpdate {
                    family: family.into(),
                    kind,
                    original: original.into(),
                    labels: labels
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    value: Value::Set(v),
                },
                now,
            );
        }
        let text = Exposition::new(store, telemetry).encode_text();
        // prometheus-client writes registered metrics before collectors.
        let relayed = &text[text
            .find("# HELP numCPUS")
            .expect("relayed families present")..];
        assert_eq!(
            relayed,
            "# HELP numCPUS Cloud Foundry gauge 'numCPUS'\n\
             # TYPE numCPUS gauge\n\
             numCPUS{origin=\"rep\",unit=\"count\"} 4.0\n\
             # HELP requests_total Cloud Foundry counter 'requests'\n\
             # TYPE requests_total counter\n\
             requests_total{origin=\"gorouter\"} 1234.0\n\
             # HELP tricky Cloud Foundry gauge 'tricky\\\\name'\n\
             # TYPE tricky gauge\n\
             tricky{v=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        );
        assert!(text.contains("# TYPE cf_firehose_exporter_up gauge\ncf_firehose_exporter_up 0\n"));
        assert!(text.contains("cf_firehose_exporter_build_info{version=\""));
        assert!(text.contains("cf_firehose_exporter_series 3\n"));
    }
}
