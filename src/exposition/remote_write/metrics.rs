//! The remote-write self metrics, under `cf_firehose_exporter_remote_write_`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type EndpointLabel = [(&'static str, String); 1];
type ResultLabel = [(&'static str, String); 2];

/// The remote-write self metrics, by endpoint.
#[derive(Debug, Clone)]
pub struct RemoteWriteMetrics {
    samples: Family<ResultLabel, Counter>,
    queue_length: Family<EndpointLabel, Gauge>,
    pub(super) last_success: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    pub(super) send_duration: Family<EndpointLabel, Histogram>,
    pub(super) retries: Family<EndpointLabel, Counter>,
    /// Envelopes whose timestamp was too far ahead to send.
    pub(super) future_timestamps: Counter,
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
            future_timestamps: Counter::default(),
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
        registry.register(
            name("future_timestamps"),
            "Envelopes whose timestamp was more than 10 minutes ahead of this host's clock: their samples carry the time they arrived instead",
            self.future_timestamps.clone(),
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

    pub(super) fn queue_length(&self, endpoint: &str) -> Gauge {
        self.queue_length
            .get_or_create(&[("endpoint", endpoint.to_owned())])
            .clone()
    }
}
