//! v2 envelopes seen before go to the series they went to without their
//! tags being decoded again: whatever the stream (tags and deprecated tags
//! in any order or sent twice, gauges of one metric or many, containers'
//! gauges, counters with and without totals, timers and logs, series
//! expiring in between, tags that are not UTF-8), the store ends as when
//! every envelope is translated afresh, and every envelope is counted as
//! what it is.

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::envelope::v2::{self, proto};
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::NamingScheme;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

/// What a test stream does next.
#[derive(Debug, Clone)]
enum Step {
    /// An encoded envelope, its kind, whether its tags are read (those of
    /// metrics, logs and HTTP timers), and how many seconds pass before it.
    Envelope(Vec<u8>, &'static str, bool, u64),
    /// The sweeper runs.
    Sweep,
}

/// Field `number`, length-delimited, holding `bytes`.
fn field(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A map entry of field `number`: the key, then the value's encoding as field 2.
fn entry(number: u32, key: &str, value: &[u8], out: &mut Vec<u8>) {
    let mut encoded = Vec::new();
    field(1, key.as_bytes(), &mut encoded);
    encoded.extend_from_slice(value);
    field(number, &encoded, out);
}

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(values.to_vec())
}

/// A gauge of `(name, unit, value)` metrics.
fn gauge(metrics: Vec<(&str, &str, u8)>) -> Option<proto::envelope::Message> {
    let metrics = metrics
        .into_iter()
        .map(|(name, unit, value)| {
            let value = proto::GaugeValue {
                unit: unit.into(),
                value: f64::from(value),
            };
            (name.to_string(), value)
        })
        .collect();
    Some(proto::envelope::Message::Gauge(proto::Gauge { metrics }))
}

fn message() -> impl Strategy<Value = Option<proto::envelope::Message>> {
    use proto::envelope::Message as M;
    let metrics = prop::collection::vec(
        (
            pick(&[
                "cpu",
                "memory",
                "disk",
                "memory_quota",
                "disk_quota",
                "instance_index",
                "m1",
            ]),
            pick(&["", "bytes"]),
            0..3u8,
        ),
        0..8,
    );
    let container = (prop::option::of(0..3u8), pick(&["", "bytes"])).prop_map(|(index, unit)| {
        let mut metrics: Vec<_> = ["cpu", "memory", "disk", "memory_quota", "disk_quota"]
            .into_iter()
            .map(|name| (name, unit, 1))
            .collect();
        metrics.extend(index.map(|i| ("instance_index", "", i)));
        metrics
    });
    prop_oneof![
        2 => container.prop_map(gauge),
        4 => metrics.prop_map(gauge),
        3 => (pick(&["c1", "m1", "c1_total"]), 0..5u64, 0..50u64).prop_map(|(name, delta, total)| {
            Some(M::Counter(proto::Counter { name: name.into(), delta, total }))
        }),
        1 => Just(Some(M::Timer(proto::Timer { name: "http".into(), start: 1, stop: 2 }))),
        1 => Just(Some(M::Log(proto::Log { payload: b"x".to_vec(), r#type: 0 }))),
        1 => Just(None),
    ]
}

/// An envelope before encoding: the message, tags and deprecated tags in
/// the order they are sent.
#[derive(Debug, Clone)]
struct Shape {
    source_id: &'static str,
    instance_id: &'static str,
    message: Option<proto::envelope::Message>,
    tags: Vec<(&'static str, &'static str)>,
    deprecated: Vec<(&'static str, u8)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let tags = prop::collection::vec(
        (
            pick(&[
                "origin",
                "deployment",
                "job",
                "a",
                "b",
                "source_id",
                "instance_id",
                "__v1_type",
            ]),
            pick(&["1", "2", "", "\u{ff}"]),
        ),
        0..6,
    );
    let deprecated = prop::collection::vec((pick(&["a", "c", "job"]), 0..4u8), 0..3);
    (
        pick(&["rep", "f47ac10b", ""]),
        pick(&["0", "1", ""]),
        message(),
        tags,
        deprecated,
    )
        .prop_map(
            |(source_id, instance_id, message, tags, deprecated)| Shape {
                source_id,
                instance_id,
                message,
                tags,
                deprecated,
            },
        )
}

impl Shape {
    /// The shape sent again: its maps rotated by `turn`, its values moved
    /// by `bump` (with 1, `c1` and `m1` renamed; with 2, empty units
    /// filled), and its instance id
    /// changed when `instance` is given.
    fn encode(&self, turn: usize, bump: u8, instance: Option<&'static str>) -> Vec<u8> {
        use proto::envelope::Message as M;
        let mut message = self.message.clone();
        match &mut message {
            Some(M::Counter(c)) => {
                c.total += u64::from(bump);
                if bump == 1 && c.name == "c1" {
                    c.name = "c2".into();
                }
            }
            Some(M::Gauge(g)) => {
                if bump == 1
                    && let Some(metric) = g.metrics.remove("m1")
                {
                    g.metrics.insert("m2".into(), metric);
                }
                for metric in g.metrics.values_mut() {
                    metric.value = (metric.value + f64::from(bump)) % 3.0;
                    if bump == 2 && metric.unit.is_empty() {
                        metric.unit = "bytes".into();
                    }
                }
            }
            _ => {}
        }
        let envelope = proto::Envelope {
            timestamp: 1 + i64::from(bump),
            source_id: self.source_id.into(),
            instance_id: instance.unwrap_or(self.instance_id).into(),
            message,
            ..Default::default()
        };
        let mut encoded = envelope.encode_to_vec();
        let mut tags = self.tags.clone();
        if !tags.is_empty() {
            let len = tags.len();
            tags.rotate_left(turn % len);
        }
        for (key, value) in tags {
            // "\u{ff}" stands for a value that is not UTF-8.
            let value: &[u8] = if value == "\u{ff}" {
                &[0xff]
            } else {
                value.as_bytes()
            };
            let mut string = Vec::new();
            field(2, value, &mut string);
            entry(9, key, &string, &mut encoded);
        }
        let mut deprecated = self.deprecated.clone();
        if !deprecated.is_empty() {
            let len = deprecated.len();
            deprecated.rotate_right(turn % len);
        }
        for (key, kind) in deprecated {
            let mut value = Vec::new();
            match kind {
                0 => field(1, b"text", &mut value),
                1 => {
                    encode_key(2, WireType::Varint, &mut value);
                    encode_varint(7, &mut value);
                }
                2 => {
                    encode_key(3, WireType::SixtyFourBit, &mut value);
                    value.extend_from_slice(&0.5f64.to_le_bytes());
                }
                _ => {}
            }
            let mut wrapped = Vec::new();
            field(2, &value, &mut wrapped);
            entry(3, key, &wrapped, &mut encoded);
        }
        encoded
    }
}

/// A few shapes, and envelopes of them sent again and again, a little
/// changed each time.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    let sends = prop::collection::vec(
        prop_oneof![
            10 => (
                0..4usize,
                0..6usize,
                0..3u8,
                prop::option::of(pick(&["0", "1", "", "2"])),
                0..400u64,
            )
                .prop_map(Some),
            1 => Just(None),
        ],
        1..60,
    );
    (prop::collection::vec(shape(), 1..5), sends).prop_map(|(shapes, sends)| {
        sends
            .into_iter()
            .map(|send| match send {
                None => Step::Sweep,
                Some((index, turn, bump, instance, after)) => {
                    let shape = &shapes[index % shapes.len()];
                    let kind = kind(&proto::Envelope {
                        message: shape.message.clone(),
                        ..Default::default()
                    });
                    use proto::envelope::Message as M;
                    let reads_tags = match &shape.message {
                        Some(M::Timer(t)) => t.name == "http",
                        Some(M::Event(_)) | None => false,
                        _ => true,
                    };
                    Step::Envelope(shape.encode(turn, bump, instance), kind, reads_tags, after)
                }
            })
            .collect()
    })
}

fn kind(envelope: &proto::Envelope) -> &'static str {
    use proto::envelope::Message as M;
    match envelope.message {
        Some(M::Counter(_)) => "counter",
        Some(M::Gauge(_)) => "gauge",
        Some(M::Timer(_)) => "timer",
        Some(M::Log(_)) => "log",
        Some(M::Event(_)) => "event",
        None => "none",
    }
}

#[test]
fn known_v2_envelopes_update_the_series_a_fresh_translation_would() {
    let config = ProptestConfig {
        cases: 500,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in steps(), environment in any::<bool>())| {
        let scheme = NativeScheme::new(environment.then(|| "prod".to_string()))
            .with_drop_tags(["b".to_string()]);
        let telemetry = Telemetry::new();
        let expiration = Duration::from_secs(600);
        let store = Arc::new(SeriesStore::new(expiration, telemetry.clone()));
        let fresh = SeriesStore::new(expiration, Telemetry::new());
        let mut ingest = Ingest::new(scheme.clone(), store.clone(), telemetry.clone());
        let mut now = tokio::time::Instant::now();
        let mut updates = Vec::new();
        let mut received = std::collections::HashMap::<&str, u64>::new();
        let mut malformed = 0;
        for step in steps {
            match step {
                Step::Envelope(encoded, kind, reads_tags, after) => {
                    now += Duration::from_secs(after);
                    ingest.v2_encoded(&encoded, now);
                    // Every map entry decoded, UTF-8 checked, the last of a key winning.
                    let Ok(envelope) = proto::Envelope::decode(encoded.as_slice()) else {
                        // Only the tags of what gives series are read.
                        if reads_tags {
                            malformed += 1;
                        } else {
                            *received.entry(kind).or_default() += 1;
                        }
                        continue;
                    };
                    *received.entry(kind).or_default() += 1;
                    updates.clear();
                    scheme.translate_v2(&envelope, &mut updates);
                    for update in updates.drain(..) {
                        fresh.apply(update, now);
                    }
                }
                Step::Sweep => {
                    prop_assert_eq!(store.sweep(now), fresh.sweep(now));
                }
            }
        }
        prop_assert_eq!(store.snapshot(), fresh.snapshot());
        prop_assert_eq!(store.len(), fresh.len());
        for kind in v2::Kind::ALL {
            let name = kind.name();
            prop_assert_eq!(
                telemetry.envelopes_received(name).get(),
                received.get(name).copied().unwrap_or(0),
                "{}", name
            );
        }
        prop_assert_eq!(telemetry.decode_errors.get(), malformed);
    });
}
