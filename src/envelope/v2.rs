//! Loggregator v2 envelopes: the types generated from
//! `proto/loggregator/v2/`, their JSON form as the RLP Gateway sends it,
//! and how a v2 envelope reads as the envelopes the naming schemes take.
//!
//! A v2 envelope is read in place ([`with_wire`], as the RLP sends it) and
//! straight into the borrowed envelope model ([`EnvelopeRef`]) that schemes
//! translate, never encoded as v1 on the way: [`WireV2::metrics`] yields
//! one per metric it carries, with the fields and tags Doppler's v2 → v1
//! conversion would give (protocol.md §3.4), so that a metric gives the
//! same series whichever transport delivered it. [`with_metrics`] does the
//! same for an owned envelope (the gateway's, decoded from JSON).
//! [`to_v1`] is that conversion, in owned form, for the simulator and for
//! tests that hold the two paths to each other.

use prost::Message as _;

use super::{EnvelopeRef, events};

/// Types generated from `proto/loggregator/v2/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/loggregator.v2.rs"));
}

pub use proto::envelope::Message;
pub use proto::{Envelope, EnvelopeBatch};

mod json;
pub(super) mod scan;
mod wire;

pub use json::{JsonError, decode_batch_json};
pub use wire::{GaugeMetric, Kind, WireV2, for_each_in_batch, with_wire};

/// Calls `f` with each metric `envelope` carries, as the envelope model the
/// schemes translate ([`WireV2::metrics`]): a counter gives one; a
/// container's gauge one container metric; any other gauge one value metric
/// per key, in key order; an HTTP timer, a log or an error one event. The envelope is read as it would arrive, encoded.
pub fn with_metrics(envelope: &Envelope, mut f: impl FnMut(&EnvelopeRef<'_>)) {
    let encoded = envelope.encode_to_vec();
    with_wire(&encoded, |wire| {
        // An owned envelope holds only strings: it always reads.
        if let Ok(wire) = wire {
            let _ = wire.metrics(&mut f);
        }
    });
}

/// The v1 envelopes Doppler's conversion makes of a v2 envelope
/// (protocol.md §3.4), as far as the exporter reads them: a counter event,
/// a container metric, a value metric per gauge key (in key order), an
/// HTTP event for a timer named `http`, a log message or an error for a
/// log. Other timers and events give none.
pub fn to_v1(envelope: &Envelope) -> Vec<events::Envelope> {
    let mut out = Vec::new();
    with_metrics(envelope, |metric| {
        out.push(metric.to_envelope(Some(envelope.timestamp)));
    });
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::envelope::events::envelope::EventType;
    use crate::naming::native::NativeScheme;
    use crate::naming::{NamingScheme, SeriesUpdate, Value};

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The BOSH tags an agent puts on a v2 envelope.
    fn bosh(origin: &str) -> Vec<(&str, &str)> {
        vec![
            ("origin", origin),
            ("deployment", "cf"),
            ("job", "diego-cell"),
            ("index", "0c8b50b8"),
            ("ip", "10.0.5.12"),
        ]
    }

    /// A v1 envelope as Doppler converts one, written out by hand.
    fn v1(origin: &str, tags: &[(&str, &str)]) -> events::Envelope {
        events::Envelope {
            origin: origin.into(),
            timestamp: Some(1),
            deployment: Some("cf".into()),
            job: Some("diego-cell".into()),
            index: Some("0c8b50b8".into()),
            ip: Some("10.0.5.12".into()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn sorted(mut updates: Vec<SeriesUpdate>) -> Vec<SeriesUpdate> {
        updates.sort_by(|a, b| (&a.family, &a.labels).cmp(&(&b.family, &b.labels)));
        updates
    }

    /// The native updates of a v2 envelope, and of the v1 envelopes that
    /// Doppler makes of it.
    fn both(v2: &Envelope, v1: &[events::Envelope]) -> (Vec<SeriesUpdate>, Vec<SeriesUpdate>) {
        let scheme = NativeScheme::new(Some("prod".into()));
        let mut from_v2 = Vec::new();
        scheme.translate_v2(v2, &mut from_v2);
        let mut from_v1 = Vec::new();
        for e in v1 {
            scheme.translate(e, &mut from_v1);
        }
        (sorted(from_v2), sorted(from_v1))
    }

    #[test]
    fn a_counter_gives_the_series_of_its_v1_conversion() {
        let mut t = bosh("gorouter");
        t.extend([
            ("component", "route-emitter"),
            ("__v1_type", "CounterEvent"),
        ]);
        let v2 = Envelope {
            timestamp: 1,
            source_id: "gorouter".into(),
            instance_id: "i-1".into(),
            tags: tags(&t),
            message: Some(Message::Counter(proto::Counter {
                name: "total_requests".into(),
                delta: 3,
                total: 120,
            })),
            ..Default::default()
        };
        let mut expected = v1(
            "gorouter",
            &[
                ("component", "route-emitter"),
                ("source_id", "gorouter"),
                ("instance_id", "i-1"),
            ],
        );
        expected.event_type = EventType::CounterEvent as i32;
        expected.counter_event = Some(events::CounterEvent {
            name: "total_requests".into(),
            delta: 3,
            total: Some(120),
        });
        let (from_v2, from_v1) = both(&v2, std::slice::from_ref(&expected));
        assert_eq!(from_v2.len(), 1);
        assert_eq!(from_v2[0].value, Value::Set(120.0));
        assert!(
            from_v2[0]
                .labels
                .contains(&("bosh_job_name".into(), "diego-cell".into()))
        );
        assert_eq!(from_v2, from_v1);
        assert_eq!(to_v1(&v2), vec![expected]);
    }

    #[test]
    fn a_gauge_gives_a_value_metric_per_key_and_deprecated_tags_fill_in() {
        let v2 = Envelope {
            source_id: "rep".into(),
            tags: tags(&[bosh("rep"), vec![("zone", "z1")]].concat()),
            deprecated_tags: [
                ("zone", proto::value::Data::Text("ignored".into())),
                ("cell", proto::value::Data::Integer(7)),
                ("ratio", proto::value::Data::Decimal(0.5)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), proto::Value { data: Some(v) }))
            .collect(),
            message: Some(Message::Gauge(proto::Gauge {
                metrics: [
                    ("CapacityRemainingMemory", "MiB", 1024.0),
                    ("numGoRoutines", "", 50.0),
                ]
                .into_iter()
                .map(|(name, unit, value)| {
                    let value = proto::GaugeValue {
                        unit: unit.into(),
                        value,
                    };
                    (name.to_string(), value)
                })
                .collect(),
            })),
            ..Default::default()
        };
        let t = [
            ("zone", "z1"),
            ("cell", "7"),
            ("ratio", "0.500000"),
            ("source_id", "rep"),
        ];
        let value = |name: &str, unit: &str, value| {
            let mut e = v1("rep", &t);
            e.event_type = EventType::ValueMetric as i32;
            e.value_metric = Some(events::ValueMetric {
                name: name.into(),
                value,
                unit: unit.into(),
            });
            e
        };
        let expected = [
            value("CapacityRemainingMemory", "MiB", 1024.0),
            value("numGoRoutines", "", 50.0),
        ];
        let (from_v2, from_v1) = both(&v2, &expected);
        assert_eq!(from_v2.len(), 2);
        assert_eq!(from_v2, from_v1);
        let mut converted = to_v1(&v2);
        for e in &mut converted {
            e.timestamp = Some(1);
        }
        assert_eq!(converted, expected);
    }

    #[test]
    fn a_containers_gauge_gives_the_five_container_gauges() {
        let guid = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
        let v2 = Envelope {
            source_id: guid.into(),
            instance_id: "2".into(),
            tags: tags(&[bosh("rep"), vec![("app_name", "web")]].concat()),
            message: Some(Message::Gauge(proto::Gauge {
                metrics: [
                    ("cpu", "percentage", 12.5),
                    ("memory", "bytes", 1e8),
                    ("disk", "bytes", 2e8),
                    ("memory_quota", "bytes", 1e9),
                    ("disk_quota", "bytes", 2e9),
                ]
                .into_iter()
                .map(|(name, unit, value)| {
                    let value = proto::GaugeValue {
                        unit: unit.into(),
                        value,
                    };
                    (name.to_string(), value)
                })
                .collect(),
            })),
            ..Default::default()
        };
        let mut expected = v1("rep", &[("app_name", "web"), ("source_id", guid)]);
        expected.event_type = EventType::ContainerMetric as i32;
        expected.container_metric = Some(events::ContainerMetric {
            application_id: guid.into(),
            instance_index: 2,
            cpu_percentage: 12.5,
            memory_bytes: 100_000_000,
            disk_bytes: 200_000_000,
            memory_bytes_quota: Some(1_000_000_000),
            disk_bytes_quota: Some(2_000_000_000),
        });
        let (from_v2, from_v1) = both(&v2, std::slice::from_ref(&expected));
        let families: Vec<&str> = from_v2.iter().map(|u| u.family.as_str()).collect();
        assert_eq!(
            families,
            ["cpu", "disk", "disk_quota", "memory", "memory_quota"]
        );
        assert!(
            from_v2[0]
                .labels
                .contains(&("instance_id".into(), "2".into()))
        );
        assert_eq!(from_v2, from_v1);
    }

    #[test]
    fn a_delta_only_counter_accumulates_and_other_messages_carry_no_metric() {
        let counter = Envelope {
            tags: tags(&bosh("agent")),
            message: Some(Message::Counter(proto::Counter {
                name: "dropped".into(),
                delta: 4,
                total: 0,
            })),
            ..Default::default()
        };
        let mut out = Vec::new();
        NativeScheme::default().translate_v2(&counter, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value, Value::Add(4.0));
        // A timer of another name than `http` (Diego's `spike`) and an
        // event give nothing; a log its two counters.
        for (message, updates) in [
            (Message::Timer(proto::Timer::default()), 0),
            (Message::Log(proto::Log::default()), 2),
            (Message::Event(proto::Event::default()), 0),
        ] {
            let e = Envelope {
                message: Some(message),
                ..Default::default()
            };
            assert_eq!(NativeScheme::default().translate_v2(&e, &mut out), updates);
            assert_eq!(to_v1(&e).len(), updates / 2);
        }
    }
}
