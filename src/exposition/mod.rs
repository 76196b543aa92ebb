//! Exposition: writes a snapshot of the store and the self metrics in the
//! Prometheus text format 0.0.4 or OpenMetrics 1.0, as the scraper's `Accept`
//! header asks. The self metrics go through prometheus-client. The store's
//! series, hundreds of thousands of them, are written here byte for byte as
//! prometheus-client writes them (a property test compares the two), without
//! its per-label dynamic calls.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::registry::Registry;

use crate::store::SeriesStore;
use crate::telemetry::Telemetry;

/// A bucket's upper bound as its `le` label spells it: `+Inf` for the
/// last, else the shortest float that reads back the same (`0.5`, `1.0`).
pub(crate) fn bucket_bound(number: &mut dtoa::Buffer, le: f64) -> &str {
    if le == f64::INFINITY {
        "+Inf"
    } else {
        number.format(le)
    }
}

mod compat;
pub mod remote_write;
mod text;

pub use compat::CompatSelf;

/// The Content-Type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The Content-Type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A format the exporter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text 0.0.4: counters typed under their `_total` sample name.
    PrometheusText,
    /// OpenMetrics 1.0: counters typed under the family name, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The exact Content-Type of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format to answer an `Accept` header with: OpenMetrics 1.0 when it
    /// is weighted highest of the two (and `openmetrics` allows it), else
    /// text 0.0.4, which is also the answer to no header and to anything
    /// this exporter cannot write.
    pub fn negotiate(accept: Option<&str>, openmetrics: bool) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version.as_deref()) {
                ("application/openmetrics-text", None | Some("1.0.0")) if openmetrics => {
                    Format::OpenMetrics
                }
                ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => {
                    Format::PrometheusText
                }
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::PrometheusText, |(_, format)| format)
    }
}

/// Everything a scrape writes: the relayed series, then the self metrics.
#[derive(Debug)]
pub struct Exposition {
    store: Arc<SeriesStore>,
    /// The self metrics, for both formats.
    own: Registry,
    telemetry: Telemetry,
    /// Bodies encoded so far: text 0.0.4, OpenMetrics.
    encodings: [std::sync::atomic::AtomicU64; 2],
    /// The Go exporter's self metrics, under the compat scheme.
    compat: Option<CompatSelf>,
    /// Whether the store's series are written, not only the self metrics.
    series: bool,
}

impl Exposition {
    /// Exposes `store` and `telemetry`.
    pub fn new(store: Arc<SeriesStore>, telemetry: Telemetry) -> Self {
        let mut own = Registry::default();
        telemetry.register(&mut own);
        Self {
            store,
            own,
            telemetry,
            encodings: Default::default(),
            compat: None,
            series: true,
        }
    }

    /// Adds the remote-write self metrics.
    pub fn with_remote_write(mut self, metrics: &remote_write::RemoteWriteMetrics) -> Self {
        metrics.register(&mut self.own);
        self
    }

    /// Writes only the self metrics: the store's series go elsewhere.
    pub fn without_series(mut self) -> Self {
        self.series = false;
        self
    }

    /// Adds the Go exporter's self metrics to each scrape.
    pub fn with_compat(mut self, compat: CompatSelf) -> Self {
        self.compat = Some(compat);
        self
    }

    /// How many bodies were encoded so far in `format`.
    pub fn encodings(&self, format: Format) -> u64 {
        self.encodings[format as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Encodes one scrape in `format` and records its duration.
    pub fn encode(&self, format: Format) -> String {
        self.encodings[format as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let mut body = String::new();
        // The series first, then the self metrics: a body never counts
        // less than the series it shows (an envelope is counted before it
        // is stored).
        let families = if self.series || self.compat.is_some() {
            self.store.snapshot()
        } else {
            Vec::new()
        };
        if self.series {
            text::write(&mut body, &families, format);
        }
        if let Some(compat) = &self.compat {
            text::write(
                &mut body,
                &compat.families(&self.telemetry, &families),
                format,
            );
        }
        drop(families);
        let written = match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut body, &self.own)
            }
            Format::OpenMetrics => {
                use prometheus_client::encoding::text::{encode_eof, encode_registry};
                encode_registry(&mut body, &self.own).and_then(|()| encode_eof(&mut body))
            }
        };
        written.expect("writing to a String cannot fail");
        self.telemetry
            .scrape_duration
            .set(started.elapsed().as_secs_f64());
        body
    }

    /// Encodes one scrape in the text format 0.0.4.
    pub fn encode_text(&self) -> String {
        self.encode(Format::PrometheusText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{MetricKind, SeriesUpdate, Value};
    use std::time::Duration;

    /// A store with a counter, a gauge with a unit and a gauge whose name
    /// and label need escaping.
    fn fixed() -> Exposition {
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
                    buckets: Vec::new(),
                },
                now,
            );
        }
        Exposition::new(store, telemetry)
    }

    /// The relayed families, which come before the self metrics.
    fn relayed(text: &str) -> &str {
        let end = text
            .find("# HELP cf_firehose_exporter_")
            .expect("self metrics present");
        assert!(text.starts_with("# HELP numCPUS"), "relayed families first");
        &text[..end]
    }

    #[test]
    fn golden_text_for_a_fixed_store() {
        let text = fixed().encode(Format::PrometheusText);
        assert_eq!(
            relayed(&text),
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
        assert!(!text.contains("# EOF"));
    }

    /// What Prometheus 2.x sends by default.
    const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// Prometheus 2.x with native histograms: protobuf first.
    const PROMETHEUS_2_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// What Prometheus 3.x sends with its default scrape protocols.
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    /// Prometheus 3.x with `PrometheusProto` first.
    const PROMETHEUS_3_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    /// A scraper that asks for the text format only.
    const TEXT_ONLY: &str = "text/plain;version=0.0.4;q=0.5,*/*;q=0.4";

    #[test]
    fn negotiation_follows_the_weights_prometheus_sends() {
        use Format::{OpenMetrics as Om, PrometheusText as Text};
        let cases = [
            (None, Text),
            (Some(PROMETHEUS_2), Om),
            (Some(PROMETHEUS_2_PROTOBUF), Om),
            (Some(PROMETHEUS_3), Om),
            (Some(PROMETHEUS_3_PROTOBUF), Om),
            (Some(TEXT_ONLY), Text),
            (Some("*/*"), Text),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                Text,
            ),
            (Some("application/openmetrics-text"), Om),
            (
                Some(" Application/OpenMetrics-Text ; Version=1.0.0 ; q=0.9 , text/plain;q=0.5"),
                Om,
            ),
            (
                Some("application/openmetrics-text;q=0.4,text/plain;q=0.5"),
                Text,
            ),
            (
                Some("application/openmetrics-text;q=0.5,text/plain;q=0.5"),
                Om,
            ),
            (Some("application/openmetrics-text;q=0,*/*;q=0.1"), Text),
            (Some("application/openmetrics-text;version=2.0.0"), Text),
            (
                Some("application/openmetrics-text;q=high,text/plain;q=0.1"),
                Text,
            ),
            (Some("application/vnd.google.protobuf"), Text),
        ];
        for (accept, expected) in cases {
            assert_eq!(Format::negotiate(accept, true), expected, "{accept:?}");
        }
        assert_eq!(Format::negotiate(Some(PROMETHEUS_2), false), Text);
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::PrometheusText.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn golden_openmetrics_for_a_fixed_store() {
        let text = fixed().encode(Format::OpenMetrics);
        assert_eq!(
            relayed(&text),
            "# HELP numCPUS Cloud Foundry gauge 'numCPUS'\n\
             # TYPE numCPUS gauge\n\
             numCPUS{origin=\"rep\",unit=\"count\"} 4.0\n\
             # HELP requests Cloud Foundry counter 'requests'\n\
             # TYPE requests counter\n\
             requests_total{origin=\"gorouter\"} 1234.0\n\
             # HELP tricky Cloud Foundry gauge 'tricky\\\\name'\n\
             # TYPE tricky gauge\n\
             tricky{v=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        );
        let last = format!(
            "cf_firehose_exporter_build_info{{version=\"{}\"}} 1\n# EOF\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.ends_with(&last), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains(
            "# TYPE cf_firehose_exporter_series_expired counter\ncf_firehose_exporter_series_expired_total 0\n"
        ));
    }
}
