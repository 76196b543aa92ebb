//! The Go exporter's self metrics, for `--metrics.naming firehose_exporter`:
//! gauges under its namespace, labelled `environment`, read from the
//! exporter's own counters and from the scrape's snapshot.

use std::sync::Arc;
use std::time::Duration;

use crate::naming::MetricKind;
use crate::store::{FamilySnapshot, StoredLabels, Text};
use crate::telemetry::{GoKind, Telemetry, unix_now};

/// What the Go exporter's self metrics are named under.
#[derive(Debug, Clone)]
pub struct CompatSelf {
    /// `<ns>_` or nothing.
    prefix: String,
    labels: StoredLabels,
    /// How long a slow-consumer alert stays raised.
    alert_window: Duration,
}

impl CompatSelf {
    /// Under `namespace` (none when empty), with `environment` as a label
    /// when set; an alert shows for `alert_window` (the series' expiration).
    pub fn new(namespace: &str, environment: Option<&str>, alert_window: Duration) -> Self {
        let labels: Vec<(Text, Text)> = environment
            .filter(|e| !e.is_empty())
            .map(|e| (Text::new("environment"), Text::new(e)))
            .into_iter()
            .collect();
        Self {
            prefix: match namespace {
                "" => String::new(),
                ns => format!("{ns}_"),
            },
            labels: labels.into(),
            alert_window,
        }
    }

    /// The self metrics, given the relayed families of the same scrape.
    pub fn families(
        &self,
        telemetry: &Telemetry,
        relayed: &[FamilySnapshot],
    ) -> Vec<FamilySnapshot> {
        let p = &self.prefix;
        let series_of = |matches: &dyn Fn(&FamilySnapshot) -> bool| -> f64 {
            relayed
                .iter()
                .filter(|f| matches(f))
                .map(|f| f.series.len() + f.histograms.len())
                .sum::<usize>() as f64
        };
        let value_prefix = format!("{p}value_metric_");
        let counter_prefix = format!("{p}counter_event_");
        let containers = format!("{p}container_metric_cpu_percentage");
        let http = format!("{p}http");
        let cached = |kind: GoKind| match kind {
            GoKind::ValueMetric => {
                series_of(&|f| f.kind == MetricKind::Gauge && f.name.starts_with(&value_prefix))
            }
            GoKind::CounterEvent => {
                series_of(&|f| f.kind == MetricKind::Counter && f.name.starts_with(&counter_prefix))
            }
            GoKind::ContainerMetric => series_of(&|f| *f.name == *containers),
            GoKind::HttpStartStop => {
                series_of(&|f| f.kind == MetricKind::Counter && *f.name == *http)
            }
        };
        let all: u64 = [0, 4, 5, 6, 7, 8, 9]
            .map(crate::envelope::event_type_name)
            .into_iter()
            .chain(crate::envelope::v2::Kind::ALL.map(|kind| kind.name()))
            .map(|t| telemetry.envelopes_received(t).get())
            .sum();
        let received = |kind: GoKind| telemetry.received_of(kind.event_types());
        let metrics: u64 = GoKind::ALL.into_iter().map(received).sum();
        let last_metric = GoKind::ALL
            .into_iter()
            .map(|kind| telemetry.kinds.last_received(kind))
            .fold(0.0, f64::max);
        let last_alert = telemetry.last_slow_consumer_alert.get();
        let alerting =
            last_alert > 0.0 && unix_now() - last_alert < self.alert_window.as_secs_f64();
        let mut out = vec![
            self.gauge("total_envelopes_received", "Total number of envelopes received from Cloud Foundry Firehose.", all as f64),
            self.gauge("last_envelope_received_timestamp", "Number of seconds since 1970 since last envelope received from Cloud Foundry Firehose.", telemetry.last_envelope_timestamp.get().trunc()),
            self.gauge("total_metrics_received", "Total number of metrics received from Cloud Foundry Firehose.", metrics as f64),
            self.gauge("last_metric_received_timestamp", "Number of seconds since 1970 since last metric received from Cloud Foundry Firehose.", last_metric.trunc()),
            self.gauge("slow_consumer_alert", "Nozzle could not keep up with Cloud Foundry Firehose.", f64::from(u8::from(alerting))),
            self.gauge("last_slow_consumer_alert_timestamp", "Number of seconds since 1970 since last slow consumer alert received from Cloud Foundry Firehose.", last_alert.trunc()),
        ];
        for kind in GoKind::ALL {
            let (plural, singular) = (kind.plural(), kind.singular());
            let words = plural.replace('_', " ");
            let got = received(kind);
            out.push(self.gauge(
                &format!("total_{plural}_received"),
                &format!("Total number of {words} received from Cloud Foundry Firehose."),
                got as f64,
            ));
            let processed = got.saturating_sub(telemetry.kinds.filtered_count(kind));
            out.push(self.gauge(
                &format!("total_{plural}_processed"),
                &format!("Total number of {words} processed from Cloud Foundry Firehose."),
                processed as f64,
            ));
            out.push(self.gauge(
                &format!("{plural}_cached"),
                &format!("Number of {words} cached."),
                cached(kind),
            ));
            out.push(self.gauge(&format!("last_{singular}_received_timestamp"), &format!("Number of seconds since 1970 since last {} received from Cloud Foundry Firehose.", singular.replace('_', " ")), telemetry.kinds.last_received(kind).trunc()));
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn gauge(&self, name: &str, help: &str, value: f64) -> FamilySnapshot {
        FamilySnapshot {
            name: Arc::from(format!("{}{name}", self.prefix)),
            kind: MetricKind::Gauge,
            help: Arc::from(help),
            series: vec![(self.labels.clone(), value)],
            histograms: Vec::new(),
        }
    }
}
