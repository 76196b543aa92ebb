//! The `firehose_exporter` naming scheme: the Go exporter's v5/v6 names, so
//! that dashboards and alerts written for it keep working unchanged.
//!
//! - A value metric is the gauge `<ns>_value_metric_<norm(origin)>_<norm(name)>`.
//! - A counter event is the counter `<ns>_counter_event_<norm(origin)>_<norm(name)>_total`
//!   (its total), with, on request, the gauge `..._delta` (its delta).
//! - A container metric is five gauges `<ns>_container_metric_cpu_percentage`,
//!   `_memory_bytes`, `_disk_bytes`, `_memory_bytes_quota`, `_disk_bytes_quota`,
//!   labelled `application_id` and `instance_index`.
//! - HTTP requests are the Go v7's `<ns>_http_total`, `<ns>_http_duration_seconds`
//!   and `<ns>_http_response_size_bytes`, labelled as under the native scheme
//!   (so with `bosh_deployment`) and `node_index`; logs and errors are the
//!   native series under the namespace.
//!
//! Labels are the native ones: `environment`, `origin`, the BOSH labels,
//! `unit` on value metrics, and every tag.

use std::borrow::Cow;
use std::sync::Arc;

use super::native::{Exporter, NativeScheme, container_gauges, counter_value};
use super::{MetricKind, NamingScheme, Update, Value};
use crate::envelope::{EnvelopeRef, Fields, Payload, WireEnvelope};

/// The namespace of the Go exporter's names unless `--metrics.namespace` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "firehose";

/// The Go exporter's names for the five container gauges, in the order of
/// the native ones.
const CONTAINER_NAMES: [&str; 5] = [
    "container_metric_cpu_percentage",
    "container_metric_memory_bytes",
    "container_metric_disk_bytes",
    "container_metric_memory_bytes_quota",
    "container_metric_disk_bytes_quota",
];

/// Tags a container's series never take: they are its `application_id` and
/// `instance_index`, whichever transport brought it.
const CONTAINER_TAGS: [&str; 2] = ["source_id", "instance_id"];

/// Translates envelopes under the Go exporter's names.
#[derive(Debug, Clone)]
pub struct CompatScheme {
    /// The label rules, and the event series under the namespace.
    native: NativeScheme,
    /// `<ns>_value_metric_`, `<ns>_counter_event_`.
    value_prefix: Arc<str>,
    counter_prefix: Arc<str>,
    containers: Arc<[Box<str>; 5]>,
    delta: bool,
}

impl CompatScheme {
    /// Names under `namespace` (none when empty), with the label rules,
    /// buckets and dropped tags of `native`.
    pub fn new(namespace: &str, native: NativeScheme) -> Self {
        let prefix = match namespace {
            "" => String::new(),
            ns => format!("{ns}_"),
        };
        let mut native = native;
        native.events = Arc::new(native.events.under(&prefix));
        Self {
            native,
            value_prefix: format!("{prefix}value_metric_").into(),
            counter_prefix: format!("{prefix}counter_event_").into(),
            containers: Arc::new(CONTAINER_NAMES.map(|name| format!("{prefix}{name}").into())),
            delta: false,
        }
    }

    /// Adds the gauge `..._delta` beside each counter: the delta its event
    /// carried (`--metrics.enable-delta`).
    pub fn with_delta(mut self, delta: bool) -> Self {
        self.delta = delta;
        self
    }

    /// Labels the HTTP series `node_index="<index>"`, as the Go v7 did
    /// (`--metrics.node_index`); none when empty.
    pub fn with_node_index(mut self, index: &str) -> Self {
        Arc::make_mut(&mut self.native.events).node_index = index.into();
        self
    }

    /// `<prefix><norm(origin)>_<norm(name)>`.
    fn name(prefix: &str, origin: &str, name: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + origin.len() + name.len() + 8);
        out.push_str(prefix);
        push_norm(&mut out, origin);
        out.push('_');
        push_norm(&mut out, name);
        out
    }
}

impl NamingScheme for CompatScheme {
    fn translate_each(&self, envelope: &EnvelopeRef<'_>, mut apply: impl FnMut(Update<'_>)) {
        match envelope.payload {
            Payload::Value { name, value, unit } => {
                if name.is_empty() {
                    return;
                }
                let family = Self::name(&self.value_prefix, envelope.origin, name);
                let labels = self.native.label_set(
                    envelope,
                    Exporter {
                        unit,
                        ..Default::default()
                    },
                );
                apply(Update {
                    family: &family,
                    kind: MetricKind::Gauge,
                    original: name,
                    labels: &labels,
                    value: Value::Set(value),
                    buckets: &[],
                });
            }
            Payload::Counter { name, delta, total } => {
                if name.is_empty() {
                    return;
                }
                let family = Self::name(&self.counter_prefix, envelope.origin, name);
                let labels = self.native.label_set(envelope, Exporter::default());
                apply(Update {
                    family: &family,
                    kind: MetricKind::Counter,
                    original: name,
                    labels: &labels,
                    value: counter_value(delta, total),
                    buckets: &[],
                });
                if self.delta {
                    apply(Update {
                        family: &format!("{family}_delta"),
                        kind: MetricKind::Gauge,
                        original: name,
                        labels: &labels,
                        value: Value::Set(delta as f64),
                        buckets: &[],
                    });
                }
            }
            Payload::Container {
                application_id,
                instance_index,
                ..
            } => {
                let application_id = envelope.tag("source_id").unwrap_or(application_id);
                let instance_index = match envelope.tag("instance_id") {
                    Some(id) => Cow::Borrowed(id),
                    None => Cow::Owned(instance_index.to_string()),
                };
                let labels = self.native.label_set(
                    envelope,
                    Exporter {
                        application_id,
                        instance_index: &instance_index,
                        skip_tags: &CONTAINER_TAGS,
                        ..Default::default()
                    },
                );
                let gauges = container_gauges(&envelope.payload);
                for ((_, original, value), family) in gauges.into_iter().zip(&*self.containers) {
                    let Some(value) = value else { continue };
                    apply(Update {
                        family,
                        kind: MetricKind::Gauge,
                        original,
                        labels: &labels,
                        value: Value::Set(value),
                        buckets: &[],
                    });
                }
            }
            Payload::Http(_) | Payload::Log { .. } | Payload::Error { .. } => {
                self.native.translate_event(envelope, &mut apply)
            }
            Payload::Other => {}
        }
    }

    fn values_each(&self, fields: &Fields<'_>, mut value: impl FnMut(Value)) {
        match fields.payload {
            Payload::Counter { name, delta, .. } if self.delta && !name.is_empty() => {
                self.native.values_each(fields, &mut value);
                value(Value::Set(delta as f64));
            }
            _ => self.native.values_each(fields, value),
        }
    }

    /// What the names and labels depend on is what they depend on natively:
    /// the origin, the metric's name and the envelope's fields and tags.
    fn identity(&self, envelope: &WireEnvelope<'_>, out: &mut Vec<u8>) {
        self.native.identity(envelope, out)
    }
}

/// The Go exporter's normalisation of a name, appended to `out`: the name
/// split into runs of one class of character (lower-case letter, upper-case
/// letter, digit, anything else); where an upper-case run is followed by a
/// lower-case one, the last upper-case letter starts the lower-case run
/// (`LRPs` gives `LR`, `Ps`); runs of anything else are dropped, and the
/// rest are lower-cased and joined with `_`. Letters outside ASCII count as
/// anything else, as they cannot be in a metric name.
pub fn push_norm(out: &mut String, name: &str) {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    fn class(b: u8) -> Class {
        match b {
            b'a'..=b'z' => Class::Lower,
            b'A'..=b'Z' => Class::Upper,
            b'0'..=b'9' => Class::Digit,
            _ => Class::Other,
        }
    }
    let bytes = name.as_bytes();
    // The runs, as byte ranges, with the upper-case letter moved.
    let mut runs: Vec<(usize, usize, Class)> = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let c = class(bytes[start]);
        let mut end = start + 1;
        while end < bytes.len() && class(bytes[end]) == c {
            end += 1;
        }
        if c == Class::Lower
            && let Some(last) = runs.last_mut()
            && last.2 == Class::Upper
            && last.1 == start
        {
            last.1 -= 1;
            runs.push((start - 1, end, c));
        } else {
            runs.push((start, end, c));
        }
        start = end;
    }
    let mut first = true;
    for (start, end, c) in runs {
        if c == Class::Other || start == end {
            continue;
        }
        if !first {
            out.push('_');
        }
        first = false;
        out.extend(
            bytes[start..end]
                .iter()
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
    }
}

/// [`push_norm`] into a new string.
pub fn norm(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    push_norm(&mut out, name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_gives_the_go_exporters_words() {
        for (name, normalised) in [
            (
                "This_is_-_a-MetricName.Example/-._/._with:0_-._/totals",
                "this_is_a_metric_name_example_with_0_totals",
            ),
            ("LRPsMissing", "lr_ps_missing"),
            ("responses.5xx", "responses_5_xx"),
            (
                "AuctioneerLRPAuctionsFailed",
                "auctioneer_lrp_auctions_failed",
            ),
            ("loggregator.doppler", "loggregator_doppler"),
            ("DopplerServer", "doppler_server"),
            ("CapacityRemainingMemory", "capacity_remaining_memory"),
            ("total_requests", "total_requests"),
            ("gorouter", "gorouter"),
            ("numCPUS", "num_cpus"),
            (
                "memoryStats.numBytesAllocated",
                "memory_stats_num_bytes_allocated",
            ),
            ("é.x", "x"),
            ("...", ""),
            ("", ""),
        ] {
            assert_eq!(norm(name), normalised, "{name}");
        }
    }
}
