//! The `native` naming scheme: every metric keeps the name it was emitted
//! with, every tag becomes a label, and nothing about the envelope's origin
//! or event type is baked into the name.

use std::borrow::Cow;

use super::{LabelSet, MetricKind, NamingScheme, Update, Value};
use crate::envelope::{EnvelopeRef, Fields, Payload, WireEnvelope, by_key};

/// Translates envelopes under the native scheme.
#[derive(Debug, Clone)]
pub struct NativeScheme {
    environment: Option<String>,
    drop_tags: std::collections::HashSet<String>,
    /// How HTTP requests, logs and errors are named.
    pub(super) events: std::sync::Arc<super::events::EventSeries>,
}

impl Default for NativeScheme {
    fn default() -> Self {
        Self::new(None)
    }
}

impl NativeScheme {
    /// A scheme that adds `environment="<value>"` to every series when set.
    pub fn new(environment: Option<String>) -> Self {
        Self {
            environment: environment.filter(|e| !e.is_empty()),
            drop_tags: Default::default(),
            events: Default::default(),
        }
    }

    /// Observes HTTP durations in these buckets (seconds, ascending)
    /// rather than client_golang's defaults.
    pub fn with_http_buckets(mut self, buckets: &[f64]) -> Self {
        std::sync::Arc::make_mut(&mut self.events).http_buckets = buckets.into();
        self
    }

    /// Leaves out the tags with these keys (as the envelope carries them), to
    /// bound cardinality: `process_instance_id`, say.
    pub fn with_drop_tags(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.drop_tags = keys.into_iter().collect();
        self
    }
}

impl NamingScheme for NativeScheme {
    /// Calls `apply` with each update `envelope` yields, borrowing from the
    /// envelope. Envelopes that carry no metric (logs, HTTP events, errors)
    /// yield nothing. The label set is built and hashed once per envelope.
    /// The tags must be sorted, one per key, as [`envelope::with_checked`]
    /// and [`envelope::WireEnvelope::sorted`] give them.
    fn translate_each(&self, envelope: &EnvelopeRef<'_>, mut apply: impl FnMut(Update<'_>)) {
        debug_assert!(
            envelope.tags.windows(2).all(|w| w[0].0 < w[1].0),
            "tags sorted, one per key"
        );
        match envelope.payload {
            Payload::Value { name, value, unit } => {
                let Some(family) = sanitize_metric_name(name) else {
                    return;
                };
                let labels = self.label_set(
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
                let Some(family) = sanitize_metric_name(name) else {
                    return;
                };
                let family = match family.strip_suffix("_total") {
                    Some(stem) if !stem.is_empty() => stem,
                    _ => &family,
                };
                let labels = self.label_set(envelope, Exporter::default());
                apply(Update {
                    family,
                    kind: MetricKind::Counter,
                    original: name,
                    labels: &labels,
                    value: counter_value(delta, total),
                    buckets: &[],
                });
            }
            Payload::Container {
                application_id,
                instance_index,
                ..
            } => {
                // Diego puts source_id and instance_id in the tags; older platforms
                // only fill the ContainerMetric fields.
                let source_id = match envelope.tag("source_id") {
                    None => application_id,
                    Some(_) => "",
                };
                let instance_id = match envelope.tag("instance_id") {
                    None => Cow::Owned(instance_index.to_string()),
                    Some(_) => Cow::Borrowed(""),
                };
                let container = |unit| Exporter {
                    source_id,
                    instance_id: &instance_id,
                    unit,
                    ..Default::default()
                };
                let cpu_labels = self.label_set(envelope, container("percentage"));
                let labels = self.label_set(envelope, container("bytes"));
                for (family, original, value) in container_gauges(&envelope.payload) {
                    let Some(value) = value else { continue };
                    apply(Update {
                        family,
                        kind: MetricKind::Gauge,
                        original,
                        labels: if family == "cpu" {
                            &cpu_labels
                        } else {
                            &labels
                        },
                        value: Value::Set(value),
                        buckets: &[],
                    });
                }
            }
            Payload::Http(_) | Payload::Log { .. } | Payload::Error { .. } => {
                self.translate_event(envelope, &mut apply)
            }
            Payload::Other => {}
        }
    }

    /// The values of the updates [`NamingScheme::translate_each`] yields for
    /// `envelope`, in the same order, without their names and labels: what
    /// an envelope carries besides its identity.
    fn values_each(&self, fields: &Fields<'_>, mut value: impl FnMut(Value)) {
        match fields.payload {
            Payload::Value { name, value: v, .. } => {
                if !name.is_empty() {
                    value(Value::Set(v));
                }
            }
            Payload::Counter { name, delta, total } => {
                if !name.is_empty() {
                    value(counter_value(delta, total));
                }
            }
            Payload::Container { .. } => {
                for (_, _, v) in container_gauges(&fields.payload) {
                    if let Some(v) = v {
                        value(Value::Set(v));
                    }
                }
            }
            Payload::Http(_) | Payload::Log { .. } | Payload::Error { .. } => {
                super::events::event_values(&fields.payload, &mut value)
            }
            Payload::Other => {}
        }
    }

    /// Writes to `out` everything of `envelope` that the names and label sets
    /// of its updates depend on, and nothing else: two envelopes with the
    /// same identity yield updates for the same series, in the same order.
    /// Tags are taken as they come, encoded: the same tags in another order,
    /// or a key sent twice, give another identity (for the same series).
    fn identity(&self, envelope: &WireEnvelope<'_>, out: &mut Vec<u8>) {
        fn put(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let fields = envelope.fields();
        out.clear();
        out.push(fields.event_type as u8);
        put(out, fields.origin.as_bytes());
        for field in [fields.deployment, fields.job, fields.index, fields.ip] {
            put(out, field.unwrap_or_default().as_bytes());
        }
        match fields.payload {
            Payload::Value { name, unit, .. } => {
                put(out, name.as_bytes());
                put(out, unit.as_bytes());
            }
            Payload::Counter { name, .. } => put(out, name.as_bytes()),
            Payload::Container {
                application_id,
                instance_index,
                memory_bytes_quota,
                disk_bytes_quota,
                ..
            } => {
                put(out, application_id.as_bytes());
                out.extend_from_slice(&instance_index.to_le_bytes());
                out.push(
                    u8::from(memory_bytes_quota.is_some())
                        | u8::from(disk_bytes_quota.is_some()) << 1,
                );
            }
            Payload::Http(_) | Payload::Log { .. } | Payload::Error { .. } => {
                super::events::event_identity(&fields.payload, &mut |bytes| put(out, bytes))
            }
            Payload::Other => {}
        }
        let entries = envelope.tag_entries();
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for entry in entries {
            put(out, entry);
        }
    }
}

impl NativeScheme {
    /// The labels the exporter sets on a series of `e`, sorted by name, with
    /// the empty ones left out.
    fn exporter_labels<'l>(
        &'l self,
        e: &EnvelopeRef<'l>,
        extra: Exporter<'l>,
    ) -> impl Iterator<Item = (&'static str, &'l str)> + Clone {
        let vm = |value: Option<&'l str>| match extra.no_vm {
            true => "",
            false => value.unwrap_or_default(),
        };
        [
            ("application_id", extra.application_id),
            ("bosh_deployment", vm(e.deployment)),
            ("bosh_job_id", vm(e.index)),
            ("bosh_job_ip", vm(e.ip)),
            ("bosh_job_name", vm(e.job)),
            ("code", extra.code),
            (
                "environment",
                self.environment.as_deref().unwrap_or_default(),
            ),
            ("instance_id", extra.instance_id),
            ("instance_index", extra.instance_index),
            ("message_type", extra.message_type),
            ("method", extra.method),
            ("node_index", extra.node_index),
            ("origin", vm(Some(e.origin))),
            ("source", extra.source),
            ("source_id", extra.source_id),
            ("source_type", extra.source_type),
            ("status_code", extra.status_code),
            ("unit", extra.unit),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
    }

    /// The label set of a series of `e`: the exporter's labels and every
    /// non-empty tag. Both come sorted, so they are merged; a tag whose name
    /// must change (sanitized, reserved, or taken) sends the whole set
    /// through [`NativeScheme::label_set_renaming`] instead.
    pub(super) fn label_set<'l>(
        &'l self,
        e: &EnvelopeRef<'l>,
        extra: Exporter<'l>,
    ) -> LabelSet<'l> {
        let skip = extra.skip_tags;
        let set = self.exporter_labels(e, extra);
        let mut pairs: Pairs<'l> = Vec::with_capacity(9 + e.tags.len());
        let mut ours = set.clone().peekable();
        for &(key, value) in &e.tags {
            if value.is_empty() || self.drop_tags.contains(key) || skip.contains(&key) {
                continue;
            }
            if key.is_empty() {
                continue;
            }
            let renamed = key.starts_with("__")
                || !matches!(sanitize_label_name(key), Some(Cow::Borrowed(_)));
            while let Some((name, v)) = ours.next_if(|(name, _)| by_key(name, key).is_lt()) {
                pairs.push((Cow::Borrowed(name), Cow::Borrowed(v)));
            }
            if renamed || ours.peek().is_some_and(|(name, _)| *name == key) {
                return self.label_set_renaming(e, set, skip);
            }
            pairs.push((Cow::Borrowed(key), Cow::Borrowed(value)));
        }
        pairs.extend(ours.map(|(name, v)| (Cow::Borrowed(name), Cow::Borrowed(v))));
        LabelSet::from_sorted(pairs)
    }

    /// The label set when some tag's name must change. Tags are taken in
    /// key order so that collisions resolve the same way every time: a
    /// name that is already present (set by the exporter, or produced by an
    /// earlier tag that sanitizes the same way) gets `exported_` in front
    /// until it is unique, and so does a name starting with `__`.
    fn label_set_renaming<'l>(
        &'l self,
        e: &EnvelopeRef<'l>,
        ours: impl Iterator<Item = (&'static str, &'l str)>,
        skip: &[&str],
    ) -> LabelSet<'l> {
        let mut labels: Pairs<'l> = ours
            .map(|(name, v)| (Cow::Borrowed(name), Cow::Borrowed(v)))
            .collect();
        // Already sorted by key and one per key.
        let tags = e
            .tags
            .iter()
            .filter(|(k, v)| !v.is_empty() && !self.drop_tags.contains(*k) && !skip.contains(k));
        for &(key, value) in tags {
            let Some(mut name) = sanitize_label_name(key) else {
                continue;
            };
            while name.starts_with("__") || labels.iter().any(|(n, _)| *n == name) {
                name = Cow::Owned(format!("exported_{name}"));
            }
            labels.push((name, Cow::Borrowed(value)));
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        LabelSet::from_sorted(labels)
    }
}

/// A counter's value: its total when sent, else its delta to add.
pub(super) fn counter_value(delta: u64, total: Option<u64>) -> Value {
    match total {
        Some(total) => Value::Set(total as f64),
        None => Value::Add(delta as f64),
    }
}

/// A container metric's gauges: family, original name and value, if sent.
/// All absent for any other payload.
pub(super) fn container_gauges(
    payload: &Payload<'_>,
) -> [(&'static str, &'static str, Option<f64>); 5] {
    let Payload::Container {
        cpu_percentage,
        memory_bytes,
        disk_bytes,
        memory_bytes_quota,
        disk_bytes_quota,
        ..
    } = *payload
    else {
        return [("", "", None); 5];
    };
    [
        ("cpu", "containerMetric.cpuPercentage", Some(cpu_percentage)),
        (
            "memory",
            "containerMetric.memoryBytes",
            Some(memory_bytes as f64),
        ),
        ("disk", "containerMetric.diskBytes", Some(disk_bytes as f64)),
        (
            "memory_quota",
            "containerMetric.memoryBytesQuota",
            memory_bytes_quota.map(|q| q as f64),
        ),
        (
            "disk_quota",
            "containerMetric.diskBytesQuota",
            disk_bytes_quota.map(|q| q as f64),
        ),
    ]
}

/// The labels the exporter sets beyond the envelope's own fields.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Exporter<'l> {
    /// Leave out the emitter's origin and BOSH labels (a log's series are
    /// per app, not per VM).
    pub(super) no_vm: bool,
    pub(super) source_id: &'l str,
    pub(super) instance_id: &'l str,
    pub(super) unit: &'l str,
    pub(super) method: &'l str,
    pub(super) status_code: &'l str,
    pub(super) source_type: &'l str,
    pub(super) message_type: &'l str,
    pub(super) source: &'l str,
    pub(super) code: &'l str,
    /// The compat scheme's container labels.
    pub(super) application_id: &'l str,
    pub(super) instance_index: &'l str,
    /// The Go v7's label of the HTTP series.
    pub(super) node_index: &'l str,
    /// Tags never made labels for this series (a request's URI, say).
    pub(super) skip_tags: &'l [&'l str],
}

/// Label pairs being built, borrowing where they can.
type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Makes a metric name valid while keeping it recognisable: every character
/// outside `[a-zA-Z0-9_]` becomes one `_`, and a leading digit gets a `_` in
/// front. Case, words and order are kept. `None` for an empty name.
pub fn sanitize_metric_name(name: &str) -> Option<Cow<'_, str>> {
    sanitize(name)
}

/// Makes a label name valid the same way as [`sanitize_metric_name`].
pub fn sanitize_label_name(name: &str) -> Option<Cow<'_, str>> {
    sanitize(name)
}

/// The bytes that may appear in a metric or label name: `[a-zA-Z0-9_]`.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

fn sanitize(name: &str) -> Option<Cow<'_, str>> {
    let first = name.chars().next()?;
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Bytes, not chars: a name with anything outside ASCII is not valid anyway.
    if !first.is_ascii_digit() && name.bytes().all(|b| NAME_BYTES[usize::from(b)]) {
        return Some(Cow::Borrowed(name));
    }
    let mut out = String::with_capacity(name.len() + 1);
    if first.is_ascii_digit() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if valid(c) { c } else { '_' }));
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;
    use crate::envelope::{ContainerMetric, CounterEvent, Envelope, ValueMetric, decode, vectors};
    use crate::naming::SeriesUpdate;
    use prost::Message;

    fn labels(pairs: &[(&str, &str)]) -> crate::naming::Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn translate(e: &Envelope) -> Vec<SeriesUpdate> {
        let mut out = Vec::new();
        NativeScheme::default().translate(e, &mut out);
        out
    }

    #[test]
    fn sanitizes_one_for_one() {
        let s = |n| sanitize_metric_name(n).map(|c| c.into_owned());
        assert_eq!(s("responses.5xx").as_deref(), Some("responses_5xx"));
        assert_eq!(
            s("CapacityRemainingMemory").as_deref(),
            Some("CapacityRemainingMemory")
        );
        assert_eq!(
            s("memoryStats.numBytesAllocated").as_deref(),
            Some("memoryStats_numBytesAllocated")
        );
        assert_eq!(s("5xx").as_deref(), Some("_5xx"));
        assert_eq!(
            s("grootfs-create.run.fail").as_deref(),
            Some("grootfs_create_run_fail")
        );
        assert_eq!(s("é/x").as_deref(), Some("__x"));
        assert_eq!(s(""), None);
        assert!(matches!(
            sanitize_metric_name("ok_name"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn value_metric_vector() {
        let e = decode(&vectors::bytes(vectors::VALUE_METRIC)).unwrap();
        let out = translate(&e);
        assert_eq!(
            out,
            vec![SeriesUpdate {
                family: "numCPUS".into(),
                kind: MetricKind::Gauge,
                original: "numCPUS".into(),
                labels: labels(&[
                    ("bosh_deployment", "cf"),
                    ("bosh_job_id", "idx-1"),
                    ("bosh_job_ip", "10.0.0.5"),
                    ("bosh_job_name", "diego-cell"),
                    ("origin", "rep"),
                    ("source_id", "rep"),
                    ("unit", "count"),
                ]),
                value: Value::Set(4.0),
                buckets: Vec::new(),
            }]
        );
        assert_eq!(out[0].help(), "Cloud Foundry gauge 'numCPUS'");
    }

    #[test]
    fn counter_vector_uses_total() {
        let e = decode(&vectors::bytes(vectors::COUNTER_EVENT)).unwrap();
        let out = translate(&e);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].family, "requests");
        assert_eq!(out[0].sample_name(), "requests_total");
        assert_eq!(out[0].kind, MetricKind::Counter);
        assert_eq!(out[0].labels, labels(&[("origin", "gorouter")]));
        assert_eq!(out[0].value, Value::Set(1234.0));
    }

    #[test]
    fn counter_without_total_adds_delta_and_total_suffix_is_not_doubled() {
        let e = Envelope {
            origin: "x".into(),
            event_type: 7,
            counter_event: Some(CounterEvent {
                name: "dropped_total".into(),
                delta: 3,
                total: None,
            }),
            ..Default::default()
        };
        let out = translate(&e);
        assert_eq!(out[0].family, "dropped");
        assert_eq!(out[0].sample_name(), "dropped_total");
        assert_eq!(out[0].value, Value::Add(3.0));
    }

    #[test]
    fn container_metric_vector() {
        let e = decode(&vectors::bytes(vectors::CONTAINER_METRIC)).unwrap();
        let out = translate(&e);
        let got: Vec<(&str, f64, Option<&str>)> = out
            .iter()
            .map(|u| {
                let Value::Set(v) = u.value else {
                    panic!("set expected")
                };
                let unit = u
                    .labels
                    .iter()
                    .find(|(k, _)| k == "unit")
                    .map(|(_, v)| v.as_str());
                (u.family.as_str(), v, unit)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("cpu", 1.5, Some("percentage")),
                ("memory", 104857600.0, Some("bytes")),
                ("disk", 209715200.0, Some("bytes")),
                ("memory_quota", 1073741824.0, Some("bytes")),
                ("disk_quota", 1073741824.0, Some("bytes")),
            ]
        );
        assert_eq!(
            out[0].labels,
            labels(&[
                ("app_name", "myapp"),
                ("instance_id", "0"),
                ("origin", "rep"),
                ("source_id", "f47ac10b-58cc-4372-a567-0e02b2c3d479"),
                ("unit", "percentage"),
            ])
        );
    }

    #[test]
    fn container_ids_come_from_tags_when_present() {
        let mut e = Envelope {
            origin: "rep".into(),
            event_type: 9,
            container_metric: Some(ContainerMetric {
                application_id: "app-guid".into(),
                instance_index: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        e.tags.insert("source_id".into(), "tag-guid".into());
        e.tags.insert("instance_id".into(), "7".into());
        let out = translate(&e);
        // No quotas on the wire: only three gauges.
        assert_eq!(out.len(), 3);
        let l = &out[1].labels;
        assert!(l.contains(&("source_id".into(), "tag-guid".into())));
        assert!(l.contains(&("instance_id".into(), "7".into())));
        assert!(!l.iter().any(|(k, _)| k.starts_with("exported_")));
    }

    #[test]
    fn colliding_tags_are_exported_and_never_duplicated() {
        let mut e = Envelope {
            origin: "rep".into(),
            event_type: 6,
            deployment: Some("cf".into()),
            value_metric: Some(ValueMetric {
                name: "m".into(),
                value: 1.0,
                unit: "ms".into(),
            }),
            ..Default::default()
        };
        for (k, v) in [
            ("origin", "o"),
            ("unit", "u"),
            ("bosh_deployment", "d"),
            ("request-type", "a"),
            ("request_type", "b"),
            ("__v1_type", "ValueMetric"),
            ("empty", ""),
            ("9lives", "cat"),
        ] {
            e.tags.insert(k.into(), v.into());
        }
        let mut out = Vec::new();
        NativeScheme::new(Some("prod".into())).translate(&e, &mut out);
        assert_eq!(
            out[0].labels,
            labels(&[
                ("_9lives", "cat"),
                ("bosh_deployment", "cf"),
                ("environment", "prod"),
                ("exported___v1_type", "ValueMetric"),
                ("exported_bosh_deployment", "d"),
                ("exported_origin", "o"),
                ("exported_request_type", "b"),
                ("exported_unit", "u"),
                ("origin", "rep"),
                ("request_type", "a"),
                ("unit", "ms"),
            ])
        );
    }

    /// Every label set built by merging is the one the renaming path builds,
    /// over tag names that collide, sanitize, repeat and interleave with the
    /// exporter's own labels.
    #[test]
    fn merged_label_sets_equal_the_renaming_path() {
        use proptest::prelude::*;
        let keys = prop::sample::select(vec![
            "app_name",
            "origin",
            "unit",
            "source_id",
            "instance_id",
            "bosh_job_id",
            "a.b",
            "a_b",
            "a-b",
            "__x",
            "_x",
            "9x",
            "environment",
            "zz",
            "",
            "exported_unit",
            "bosh_job_ip",
            "id",
        ]);
        let tags = prop::collection::vec((keys, prop::sample::select(vec!["", "v", "w"])), 0..8);
        let kinds = prop::sample::select(vec![6, 7, 9]);
        let runner_config = ProptestConfig {
            cases: 3000,
            ..ProptestConfig::default()
        };
        proptest!(runner_config, |(tags in tags, event_type in kinds, env in any::<bool>(), drop in any::<bool>())| {
            let mut e = Envelope {
                origin: "rep".into(),
                event_type,
                deployment: Some("cf".into()),
                index: Some("".into()),
                ip: Some("10.0.0.1".into()),
                value_metric: Some(ValueMetric { name: "m".into(), value: 1.0, unit: "ms".into() }),
                counter_event: Some(CounterEvent { name: "c".into(), delta: 1, total: None }),
                container_metric: Some(ContainerMetric {
                    application_id: "guid".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            for (k, v) in tags {
                e.tags.insert(k.into(), v.into());
            }
            let mut scheme = NativeScheme::new(env.then(|| "prod".to_string()));
            if drop {
                scheme = scheme.with_drop_tags(["a.b".to_string(), "unit".to_string()]);
            }
            let frame = e.encode_to_vec();
            envelope::with_checked(&frame, |checked| {
                let checked = checked.unwrap();
                for extra in [
                    Exporter::default(),
                    Exporter { unit: "ms", ..Default::default() },
                    Exporter {
                        source_id: "guid",
                        instance_id: "0",
                        unit: "bytes",
                        ..Default::default()
                    },
                    Exporter {
                        method: "GET",
                        status_code: "200",
                        skip_tags: &["a.b"],
                        ..Default::default()
                    },
                    Exporter { no_vm: true, message_type: "OUT", ..Default::default() },
                ] {
                    let merged = scheme.label_set(&checked, extra);
                    let renamed = scheme.label_set_renaming(
                        &checked,
                        scheme.exporter_labels(&checked, extra),
                        extra.skip_tags,
                    );
                    assert_eq!(merged.to_labels(), renamed.to_labels());
                    assert_eq!(merged.hash_value(), renamed.hash_value());
                }
            });
        });
    }

    #[test]
    fn guid_origin_stays_a_label() {
        let origin = "3f1a2b4c-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
        let e = Envelope {
            origin: origin.into(),
            event_type: 6,
            value_metric: Some(ValueMetric {
                name: "jvm.heap".into(),
                value: 1.0,
                unit: "".into(),
            }),
            ..Default::default()
        };
        let out = translate(&e);
        assert_eq!(out[0].family, "jvm_heap");
        assert_eq!(out[0].labels, labels(&[("origin", origin)]));
    }

    #[test]
    fn envelopes_without_metrics_yield_nothing() {
        let e = Envelope {
            origin: "x".into(),
            event_type: 5,
            ..Default::default()
        };
        assert!(translate(&e).is_empty());
    }
}
