//! The exporter's own metrics, `cf_firehose_exporter_*`: what an operator
//! alerts on to know the stream is healthy.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// The time now in Unix seconds, as the timestamp gauges give it.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The reasons of `envelopes_dropped_total`.
pub const DROP_REASONS: [&str; 4] = [
    "frame_too_large",
    "missing_field",
    "queue_full",
    "unknown_event_type",
];

/// The reasons of `series_rejected_total`.
pub const REJECT_REASONS: [&str; 5] = [
    "cap",
    "conflict",
    "label_value_too_long",
    "name_too_long",
    "too_many_labels",
];

/// Prefix of every self metric; relayed metrics may not use it.
pub const PREFIX: &str = "cf_firehose_exporter_";

type Label = [(&'static str, String); 1];
type Counters = Family<Label, Counter>;

/// Handles to the exporter's own metrics. Cloning shares the values.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// 1 while authenticated and streaming.
    pub up: Gauge,
    envelopes_received: Counters,
    envelopes_dropped: Counters,
    /// Frames that were not valid envelopes.
    pub decode_errors: Counter,
    /// Envelopes left out by the filters.
    pub envelopes_filtered: Counter,
    /// Open Firehose connections.
    pub connections: Gauge,
    reconnects: Counters,
    connect_errors: Counters,
    /// Signs that the Firehose is cutting this consumer off for being slow.
    pub slow_consumer_alerts: Counter,
    /// Unix time of the last envelope received.
    pub last_envelope_timestamp: Gauge<f64, AtomicU64>,
    /// Series held in the store.
    pub series: Gauge,
    /// Series removed because they were not updated within the expiration.
    pub series_expired: Counter,
    series_rejected: Counters,
    token_requests: Counters,
    /// Duration of the last scrape, in seconds.
    pub scrape_duration: Gauge<f64, AtomicU64>,
    build_info: Family<Label, Gauge>,
    /// Open HTTP connections.
    pub http_connections: Gauge,
    http_connections_closed: Counters,
    /// What the Go exporter's self metrics need beyond these.
    pub kinds: std::sync::Arc<KindStats>,
    /// Unix time of the last sign of a slow consumer; 0 before any.
    pub last_slow_consumer_alert: Gauge<f64, AtomicU64>,
}

/// The kinds of metric the Go exporter's self metrics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoKind {
    /// v1 ContainerMetric.
    ContainerMetric,
    /// v1 CounterEvent, v2 counter.
    CounterEvent,
    /// v1 ValueMetric, v2 gauge (an app container's too).
    ValueMetric,
    /// v1 HttpStartStop, v2 timer.
    HttpStartStop,
}

impl GoKind {
    /// Every kind, in the order of [`GoKind::index`].
    pub const ALL: [GoKind; 4] = [
        GoKind::ContainerMetric,
        GoKind::CounterEvent,
        GoKind::ValueMetric,
        GoKind::HttpStartStop,
    ];

    /// The position in [`GoKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind counted for envelopes of `event_type`: a v1 event type's
    /// name or a v2 kind's ([`crate::envelope::event_type_name`],
    /// [`crate::envelope::v2::Kind::name`]).
    pub fn of(event_type: &str) -> Option<GoKind> {
        GoKind::ALL
            .into_iter()
            .find(|kind| kind.event_types().contains(&event_type))
    }

    /// The event types counted as this kind.
    pub fn event_types(self) -> &'static [&'static str] {
        match self {
            GoKind::ContainerMetric => &["ContainerMetric"],
            GoKind::CounterEvent => &["CounterEvent", "counter"],
            GoKind::ValueMetric => &["ValueMetric", "gauge"],
            GoKind::HttpStartStop => &["HttpStartStop", "timer"],
        }
    }

    /// The plural in the Go names: `container_metrics`.
    pub fn plural(self) -> &'static str {
        match self {
            GoKind::ContainerMetric => "container_metrics",
            GoKind::CounterEvent => "counter_events",
            GoKind::ValueMetric => "value_metrics",
            GoKind::HttpStartStop => "http_start_stop",
        }
    }

    /// The singular in the Go names: `container_metric`.
    pub fn singular(self) -> &'static str {
        match self {
            GoKind::ContainerMetric => "container_metric",
            GoKind::CounterEvent => "counter_event",
            GoKind::ValueMetric => "value_metric",
            GoKind::HttpStartStop => "http_start_stop",
        }
    }
}

/// Per [`GoKind`]: envelopes left out by the filters, and the Unix time of
/// the last one received.
#[derive(Debug, Default)]
pub struct KindStats {
    filtered: [Counter; 4],
    last_received: [Gauge<f64, AtomicU64>; 4],
}

impl KindStats {
    /// Counts an envelope of `event_type` left out by the filters.
    pub fn filtered(&self, event_type: &str) {
        if let Some(kind) = GoKind::of(event_type) {
            self.filtered[kind.index()].inc();
        }
    }

    /// Envelopes of `kind` left out by the filters.
    pub fn filtered_count(&self, kind: GoKind) -> u64 {
        self.filtered[kind.index()].get()
    }

    /// Records that envelopes of `kind` arrived at Unix time `unix`.
    pub fn received_at(&self, kind: GoKind, unix: f64) {
        self.last_received[kind.index()].set(unix);
    }

    /// Unix time of the last envelope of `kind`; 0 before any.
    pub fn last_received(&self, kind: GoKind) -> f64 {
        self.last_received[kind.index()].get()
    }
}

impl Telemetry {
    /// Fresh metrics, with `build_info` set and every reason a drop or a
    /// rejection can have at 0, so that rules and panels reading them have
    /// series before the first one happens.
    pub fn new() -> Self {
        let t = Self::default();
        t.build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_owned())])
            .set(1);
        for reason in DROP_REASONS {
            t.envelopes_dropped(reason);
        }
        for reason in REJECT_REASONS {
            t.series_rejected(reason);
        }
        t
    }

    /// Registers every metric under its `cf_firehose_exporter_` name.
    pub fn register(&self, registry: &mut Registry) {
        fn reg(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
            registry.register(format!("{PREFIX}{name}"), help, metric);
        }
        let r = registry;
        reg(
            r,
            "up",
            "1 while authenticated and streaming from the Firehose",
            self.up.clone(),
        );
        reg(
            r,
            "envelopes_received",
            "Envelopes received from the Firehose, by event type",
            self.envelopes_received.clone(),
        );
        reg(
            r,
            "envelopes_dropped",
            "Envelopes dropped before reaching the store, by reason",
            self.envelopes_dropped.clone(),
        );
        reg(
            r,
            "envelopes_filtered",
            "Envelopes left out by the --filter.* flags",
            self.envelopes_filtered.clone(),
        );
        reg(
            r,
            "decode_errors",
            "Frames that were not valid envelopes",
            self.decode_errors.clone(),
        );
        reg(
            r,
            "connections",
            "Open Firehose connections",
            self.connections.clone(),
        );
        reg(
            r,
            "reconnects",
            "Firehose reconnections, by reason",
            self.reconnects.clone(),
        );
        reg(
            r,
            "connect_errors",
            "Failed attempts to open a Firehose connection, by reason",
            self.connect_errors.clone(),
        );
        reg(
            r,
            "slow_consumer_alerts",
            "Signs that the Firehose cut this consumer off for reading too slowly",
            self.slow_consumer_alerts.clone(),
        );
        reg(
            r,
            "last_envelope_received_timestamp_seconds",
            "Unix time at which the last envelope was received",
            self.last_envelope_timestamp.clone(),
        );
        reg(r, "series", "Series held", self.series.clone());
        reg(
            r,
            "series_expired",
            "Series removed after not being updated within the expiration",
            self.series_expired.clone(),
        );
        reg(
            r,
            "series_rejected",
            "Series updates rejected, by reason",
            self.series_rejected.clone(),
        );
        reg(
            r,
            "token_requests",
            "UAA token requests, by result",
            self.token_requests.clone(),
        );
        reg(
            r,
            "scrape_duration_seconds",
            "Time taken to encode the last scrape",
            self.scrape_duration.clone(),
        );
        reg(
            r,
            "http_connections",
            "Open HTTP connections to the metrics endpoint",
            self.http_connections.clone(),
        );
        reg(
            r,
            "http_connections_closed",
            "HTTP connections closed by the exporter, by reason",
            self.http_connections_closed.clone(),
        );
        reg(
            r,
            "log_lines_dropped",
            "Log lines that could not be written (standard error closed, full or too slow)",
            crate::logging::dropped_lines(),
        );
        reg(
            r,
            "build_info",
            "Version of the exporter",
            self.build_info.clone(),
        );
    }

    /// Counts a sign that the Firehose is cutting this consumer off.
    pub fn slow_consumer_alert(&self) {
        self.slow_consumer_alerts.inc();
        self.last_slow_consumer_alert.set(unix_now());
    }

    /// Envelopes received of each event type given, together.
    pub fn received_of(&self, event_types: &[&str]) -> u64 {
        event_types
            .iter()
            .map(|event_type| self.envelopes_received(event_type).get())
            .sum()
    }

    /// Counter of envelopes received of `event_type`.
    pub fn envelopes_received(&self, event_type: &str) -> Counter {
        self.envelopes_received
            .get_or_create(&[("event_type", event_type.to_owned())])
            .clone()
    }

    /// Counter of envelopes dropped for `reason`.
    pub fn envelopes_dropped(&self, reason: &str) -> Counter {
        self.envelopes_dropped
            .get_or_create(&[("reason", reason.to_owned())])
            .clone()
    }

    /// Counter of reconnections for `reason`.
    pub fn reconnects(&self, reason: &str) -> Counter {
        self.reconnects
            .get_or_create(&[("reason", reason.to_owned())])
            .clone()
    }

    /// Counter of failed connection attempts for `reason`.
    pub fn connect_errors(&self, reason: &str) -> Counter {
        self.connect_errors
            .get_or_create(&[("reason", reason.to_owned())])
            .clone()
    }

    /// Counter of rejected series updates for `reason`.
    pub fn series_rejected(&self, reason: &str) -> Counter {
        self.series_rejected
            .get_or_create(&[("reason", reason.to_owned())])
            .clone()
    }

    /// Counter of HTTP connections closed for `reason`: `idle_timeout`,
    /// `header_timeout`, `tls_handshake`, `evicted` (to make room under the
    /// cap) or `refused` (the cap reached and every connection busy).
    pub fn http_connections_closed(&self, reason: &str) -> Counter {
        self.http_connections_closed
            .get_or_create(&[("reason", reason.to_owned())])
            .clone()
    }

    /// Counter of token requests with `result`.
    pub fn token_requests(&self, result: &str) -> Counter {
        self.token_requests
            .get_or_create(&[("result", result.to_owned())])
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules and panels read drops and rejections before the first one.
    #[test]
    fn every_drop_and_rejection_reason_is_exposed_from_the_start() {
        let mut registry = Registry::default();
        Telemetry::new().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for reason in DROP_REASONS {
            let line = format!("{PREFIX}envelopes_dropped_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        for reason in REJECT_REASONS {
            let line = format!("{PREFIX}series_rejected_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
