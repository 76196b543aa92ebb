//! The text encoders, Prometheus text 0.0.4 and OpenMetrics 1.0: a
//! [`SnapshotVisitor`] that writes each family's HELP and TYPE and each of
//! its samples.
//!
//! Gauges and counters are written byte for byte as prometheus-client
//! writes them (a property test compares the two). Text 0.0.4 names a
//! counter's HELP and TYPE by its `_total` sample name and escapes `\\` and
//! newlines in HELP; OpenMetrics names them by the family and escapes `"`
//! too. Label values escape `\\`, `"` and newlines in both. Values are the
//! shortest decimal that reads back the same (`dtoa`); 0.0.4 writes the
//! infinities `+Inf` and `-Inf`, OpenMetrics `inf` and `-inf`, and both
//! write `NaN`. A histogram's buckets carry `le` after the series' labels,
//! as a float (`0.5`, `1.0`, `+Inf`); bucket counts and `_count` are
//! integers.

use std::fmt::Write;

use super::Format;
use crate::naming::MetricKind;
use crate::store::{FamilySnapshot, Sample, SampleValue, SnapshotVisitor, visit};

/// Writes `families` to `out` in `format`.
pub(super) fn write(out: &mut String, families: &[FamilySnapshot], format: Format) {
    let mut encoder = TextEncoder {
        out,
        format,
        number: dtoa::Buffer::new(),
    };
    visit(families, &mut encoder);
}

/// Writes what it visits as text in one of the two formats.
struct TextEncoder<'a> {
    out: &'a mut String,
    format: Format,
    number: dtoa::Buffer,
}

impl SnapshotVisitor for TextEncoder<'_> {
    fn family(&mut self, family: &FamilySnapshot) {
        let (described, kind) = match (family.kind, self.format) {
            (MetricKind::Gauge, _) => ("", "gauge"),
            (MetricKind::Counter, Format::PrometheusText) => ("_total", "counter"),
            (MetricKind::Counter, Format::OpenMetrics) => ("", "counter"),
            (MetricKind::Histogram, _) => ("", "histogram"),
        };
        let out = &mut *self.out;
        out.push_str("# HELP ");
        out.push_str(&family.name);
        out.push_str(described);
        out.push(' ');
        push_escaped(out, &family.help, self.format == Format::OpenMetrics);
        out.push_str("\n# TYPE ");
        out.push_str(&family.name);
        out.push_str(described);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    fn sample(&mut self, sample: Sample<'_>) {
        let out = &mut *self.out;
        out.push_str(&sample.family.name);
        out.push_str(sample.suffix);
        for (i, (name, label_value)) in sample.labels.iter().enumerate() {
            out.push_str(if i == 0 { "{" } else { "," });
            out.push_str(name);
            out.push_str("=\"");
            push_escaped(out, label_value, true);
            out.push('"');
        }
        if let Some(le) = sample.le {
            out.push_str(if sample.labels.is_empty() { "{" } else { "," });
            out.push_str("le=\"");
            out.push_str(super::bucket_bound(&mut self.number, le));
            out.push('"');
        }
        if !sample.labels.is_empty() || sample.le.is_some() {
            out.push('}');
        }
        out.push(' ');
        match (sample.value, self.format) {
            (SampleValue::Count(n), _) => {
                let _ = write!(out, "{n}");
            }
            (SampleValue::Float(value), Format::PrometheusText) if !value.is_finite() => out
                .push_str(if value.is_nan() {
                    "NaN"
                } else if value.is_sign_positive() {
                    "+Inf"
                } else {
                    "-Inf"
                }),
            (SampleValue::Float(value), Format::PrometheusText) => {
                out.push_str(self.number.format_finite(value))
            }
            (SampleValue::Float(value), Format::OpenMetrics) => {
                out.push_str(self.number.format(value))
            }
        }
        out.push('\n');
    }
}

/// Appends `text` with `\\` and newlines escaped, and `"` too if `quotes`.
fn push_escaped(out: &mut String, text: &str, quotes: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quotes && b == b'"');
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::naming::{SeriesUpdate, Value};
    use crate::store::SeriesStore;
    use crate::telemetry::Telemetry;

    /// prometheus-client's own encoding of the store, which the hand-written
    /// one must match byte for byte.
    mod reference {
        use std::sync::Arc;

        use prometheus_client::collector::Collector;
        use prometheus_client::encoding::{
            DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
        };
        use prometheus_client::metrics::MetricType;
        use prometheus_client::registry::Registry;

        use crate::exposition::Format;
        use crate::naming::MetricKind;
        use crate::store::{SeriesStore, StoredLabels};

        /// The store's series in `format`, as prometheus-client writes them.
        pub fn encode(store: &Arc<SeriesStore>, format: Format) -> String {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(StoreCollector {
                store: store.clone(),
                escape_help: format == Format::OpenMetrics,
            }));
            let mut body = String::new();
            match format {
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)
                }
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode_registry(&mut body, &registry)
                }
            }
            .unwrap();
            body
        }

        /// Presents the store to prometheus-client as families of gauges and counters.
        #[derive(Debug)]
        struct StoreCollector {
            store: Arc<SeriesStore>,
            /// Escape `\`, `"` and newlines in HELP, for an encoder that does not.
            escape_help: bool,
        }

        /// A stored label set, as prometheus-client encodes one.
        struct StoredLabelSet<'a>(&'a StoredLabels);

        impl EncodeLabelSet for StoredLabelSet<'_> {
            fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
                for (name, value) in self.0.iter() {
                    (name.as_ref(), value.as_ref()).encode(encoder.encode_label())?;
                }
                Ok(())
            }
        }

        /// HELP text as OpenMetrics wants it.
        fn escape_help(help: &str) -> std::borrow::Cow<'_, str> {
            if !help.contains(['\\', '"', '\n']) {
                return help.into();
            }
            help.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
                .into()
        }

        impl Collector for StoreCollector {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                for family in self.store.snapshot() {
                    let metric_type = match family.kind {
                        MetricKind::Gauge => MetricType::Gauge,
                        MetricKind::Counter => MetricType::Counter,
                        MetricKind::Histogram => MetricType::Histogram,
                    };
                    let help = if self.escape_help {
                        escape_help(&family.help)
                    } else {
                        family.help.as_ref().into()
                    };
                    let mut metric =
                        encoder.encode_descriptor(&family.name, &help, None, metric_type)?;
                    for (labels, value) in &family.series {
                        let labels = StoredLabelSet(labels);
                        let mut sample = metric.encode_family(&labels)?;
                        match family.kind {
                            MetricKind::Gauge => sample.encode_gauge(value)?,
                            MetricKind::Counter => {
                                sample.encode_counter::<NoLabelSet, _, f64>(value, None)?
                            }
                            MetricKind::Histogram => unreachable!("no histograms here"),
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The hand-written series match prometheus-client's, byte for byte, in
    /// both formats: over names, HELP texts and label values that need
    /// escaping, empty label sets, both kinds, and every kind of float.
    #[test]
    fn series_are_written_as_prometheus_client_writes_them() {
        use proptest::prelude::*;
        let text = prop::sample::select(vec![
            "a",
            "cf",
            "diego-cell",
            "x\\y",
            "say \"hi\"",
            "two\nlines",
            "é ü",
            "",
            "\\n",
        ]);
        let value = prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            1e6,
            123456789.0,
            1e21,
            1e-7,
            0.1,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            4.0e15,
            2.5e-300,
        ]);
        let names = prop::sample::select(vec!["cpu", "requests", "numCPUS", "m_1"]);
        let help = prop::sample::select(vec!["plain", "back\\slash", "quote \" q", "new\nline"]);
        let label_names = prop::sample::select(vec!["app", "origin", "zone", "unit"]);
        let series = prop::collection::vec(
            (
                names,
                any::<bool>(),
                help,
                prop::collection::btree_map(label_names, text, 0..4),
                value,
            ),
            1..12,
        );
        proptest!(ProptestConfig::with_cases(500), |(series in series)| {
            let telemetry = Telemetry::new();
            let store = Arc::new(SeriesStore::new(Duration::from_secs(60), telemetry.clone()));
            let now = tokio::time::Instant::now();
            for (name, counter, help, labels, value) in series {
                store.apply(
                    SeriesUpdate {
                        family: name.to_string(),
                        kind: if counter { MetricKind::Counter } else { MetricKind::Gauge },
                        original: help.to_string(),
                        labels: labels
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        value: Value::Set(value),
                        buckets: Vec::new(),
                    },
                    now,
                );
            }
            for format in [Format::PrometheusText, Format::OpenMetrics] {
                let mut ours = String::new();
                write(&mut ours, &store.snapshot(), format);
                prop_assert_eq!(&ours, &reference::encode(&store, format));
            }
        });
    }
}
