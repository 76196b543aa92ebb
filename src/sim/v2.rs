//! The simulated foundation's envelopes in their v2 form: what agents send
//! and Doppler turns into the v1 envelopes of the Firehose, so that every
//! transport carries the same workload; and their JSON, as the RLP Gateway
//! writes it (protojson: 64-bit integers as strings, emitted defaults).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::envelope::events::{self, envelope::EventType};
use crate::envelope::v2::{Envelope, Message, proto};

/// The envelope types a query selects, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Selection(pub(crate) u8);

impl Selection {
    const KINDS: [&'static str; 5] = ["log", "counter", "gauge", "timer", "event"];

    /// The kind named `name` in a gateway query: `counter`, say.
    pub(crate) fn kind(name: &str) -> Option<Self> {
        let bit = Self::KINDS.iter().position(|k| *k == name)?;
        Some(Self(1 << bit))
    }

    /// The kinds of a v2 subscription's selectors, whatever their source id.
    pub(crate) fn of_selectors(selectors: &[proto::Selector]) -> Self {
        use proto::selector::Message as Kind;
        let bits = selectors.iter().fold(0, |bits, selector| {
            let name = match selector.message {
                Some(Kind::Log(_)) => "log",
                Some(Kind::Counter(_)) => "counter",
                Some(Kind::Gauge(_)) => "gauge",
                Some(Kind::Timer(_)) => "timer",
                Some(Kind::Event(_)) => "event",
                None => return bits,
            };
            bits | Self::kind(name).map_or(0, |kind| kind.0)
        });
        Self(bits)
    }

    /// Whether the subscription wants `envelope`.
    pub(crate) fn wants(self, envelope: &Envelope) -> bool {
        let bit = match envelope.message {
            Some(Message::Log(_)) => 0,
            Some(Message::Counter(_)) => 1,
            Some(Message::Gauge(_)) => 2,
            Some(Message::Timer(_)) => 3,
            Some(Message::Event(_)) => 4,
            None => return false,
        };
        self.0 & (1 << bit) != 0
    }
}

/// Streams by shard id and selection.
type Groups<C> = HashMap<(String, Selection), Vec<mpsc::Sender<C>>>;

/// The open streams of a simulated v2 server, grouped by shard id and
/// selection: each publication goes to one stream of every group, chosen
/// at random, as the Loggregator splits a shard between its subscribers.
#[derive(Debug)]
pub(crate) struct Streams<C> {
    groups: Mutex<Groups<C>>,
}

impl<C> Default for Streams<C> {
    fn default() -> Self {
        Self {
            groups: Default::default(),
        }
    }
}

impl<C> Streams<C> {
    fn lock(&self) -> MutexGuard<'_, Groups<C>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a stream of `shard` wanting `selection`.
    pub(crate) fn add(&self, shard: String, selection: Selection, tx: mpsc::Sender<C>) {
        self.lock().entry((shard, selection)).or_default().push(tx);
    }

    /// One open stream of each group, chosen at random, with its selection.
    pub(crate) fn chosen(&self) -> Vec<(Selection, mpsc::Sender<C>)> {
        use rand::RngExt;
        let mut groups = self.lock();
        // Streams whose reader has gone.
        groups.retain(|_, streams| {
            streams.retain(|s| !s.is_closed());
            !streams.is_empty()
        });
        let mut rng = rand::rng();
        groups
            .iter()
            .map(|((_, selection), streams)| {
                (
                    *selection,
                    streams[rng.random_range(0..streams.len())].clone(),
                )
            })
            .collect()
    }

    /// How many streams are open.
    pub(crate) fn open(&self) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|s| !s.is_closed())
            .count()
    }

    /// Every open stream.
    pub(crate) fn all(&self) -> Vec<mpsc::Sender<C>> {
        self.lock()
            .values()
            .flatten()
            .filter(|s| !s.is_closed())
            .cloned()
            .collect()
    }

    /// Forgets every stream, handing each to `f` first.
    pub(crate) fn take_all(&self, mut f: impl FnMut(mpsc::Sender<C>)) {
        let groups = std::mem::take(&mut *self.lock());
        groups.into_values().flatten().for_each(&mut f);
    }
}

/// The v2 envelope an agent sends for the v1 envelope `v1` of the
/// Firehose: origin and the BOSH fields as tags, the v1 type in
/// `__v1_type`, `source_id` and `instance_id` as fields. `None` for what
/// has no v2 form here.
pub fn to_v2(v1: &events::Envelope) -> Option<Envelope> {
    let mut tags: std::collections::BTreeMap<String, String> = v1
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let source_id = tags.remove("source_id");
    let instance_id = tags.remove("instance_id");
    let event_type = EventType::try_from(v1.event_type).ok()?;
    for (key, value) in [
        ("origin", Some(&v1.origin)),
        ("deployment", v1.deployment.as_ref()),
        ("job", v1.job.as_ref()),
        ("index", v1.index.as_ref()),
        ("ip", v1.ip.as_ref()),
    ] {
        if let Some(value) = value {
            tags.insert(key.into(), value.clone());
        }
    }
    tags.insert("__v1_type".into(), event_type.as_str_name().into());
    let mut envelope = Envelope {
        timestamp: v1.timestamp.unwrap_or_default(),
        source_id: source_id.unwrap_or_else(|| {
            format!(
                "{}/{}",
                v1.deployment.as_deref().unwrap_or_default(),
                v1.job.as_deref().unwrap_or_default()
            )
        }),
        instance_id: instance_id.unwrap_or_default(),
        tags,
        ..Default::default()
    };
    let gauge = |metrics: Vec<(&str, &str, f64)>| {
        Message::Gauge(proto::Gauge {
            metrics: metrics
                .into_iter()
                .map(|(name, unit, value)| {
                    let value = proto::GaugeValue {
                        unit: unit.into(),
                        value,
                    };
                    (name.to_owned(), value)
                })
                .collect(),
        })
    };
    envelope.message = Some(match event_type {
        EventType::ValueMetric => {
            let m = v1.value_metric.as_ref()?;
            gauge(vec![(&m.name, &m.unit, m.value)])
        }
        EventType::CounterEvent => {
            let c = v1.counter_event.as_ref()?;
            Message::Counter(proto::Counter {
                name: c.name.clone(),
                delta: c.delta,
                total: c.total.unwrap_or_default(),
            })
        }
        EventType::ContainerMetric => {
            let c = v1.container_metric.as_ref()?;
            envelope.source_id = c.application_id.clone();
            envelope.instance_id = c.instance_index.to_string();
            gauge(vec![
                ("cpu", "percentage", c.cpu_percentage),
                ("memory", "bytes", c.memory_bytes as f64),
                ("disk", "bytes", c.disk_bytes as f64),
                (
                    "memory_quota",
                    "bytes",
                    c.memory_bytes_quota.unwrap_or_default() as f64,
                ),
                (
                    "disk_quota",
                    "bytes",
                    c.disk_bytes_quota.unwrap_or_default() as f64,
                ),
            ])
        }
        EventType::HttpStartStop => {
            let h = v1.http_start_stop.as_ref()?;
            // As go-loggregator's conversion to v2 writes an HTTP event.
            if let Some(id) = &h.application_id {
                envelope.source_id = crate::envelope::uuid_text(&id.to_bytes());
            }
            if let Some(index) = h.instance_index {
                envelope.instance_id = index.to_string();
            }
            let peer = events::PeerType::try_from(h.peer_type).map(|p| p.as_str_name());
            let method = events::Method::try_from(h.method).map(|m| m.as_str_name());
            for (key, value) in [
                (
                    "request_id",
                    crate::envelope::uuid_text(&h.request_id.to_bytes()),
                ),
                ("peer_type", peer.unwrap_or_default().to_owned()),
                ("method", method.unwrap_or_default().to_owned()),
                ("uri", h.uri.clone()),
                ("remote_address", h.remote_address.clone()),
                ("user_agent", h.user_agent.clone()),
                ("status_code", h.status_code.to_string()),
                ("content_length", h.content_length.to_string()),
                ("forwarded", h.forwarded.join("\n")),
            ] {
                envelope.tags.insert(key.into(), value);
            }
            Message::Timer(proto::Timer {
                name: "http".into(),
                start: h.start_timestamp,
                stop: h.stop_timestamp,
            })
        }
        EventType::LogMessage => {
            let l = v1.log_message.as_ref()?;
            if let Some(app_id) = &l.app_id {
                envelope.source_id = app_id.clone();
            }
            if let Some(source_type) = &l.source_type {
                envelope
                    .tags
                    .insert("source_type".into(), source_type.clone());
            }
            if let Some(instance) = &l.source_instance {
                envelope.instance_id = instance.clone();
            }
            Message::Log(proto::Log {
                payload: l.message.clone(),
                r#type: i32::from(l.message_type != 1),
            })
        }
        EventType::Error => {
            let e = v1.error.as_ref()?;
            envelope.tags.insert("source".into(), e.source.clone());
            envelope.tags.insert("code".into(), e.code.to_string());
            Message::Log(proto::Log {
                payload: e.message.clone().into_bytes(),
                r#type: 1,
            })
        }
    });
    Some(envelope)
}

/// A double as protojson writes it.
fn double(value: f64) -> Value {
    if value.is_nan() {
        json!("NaN")
    } else if value == f64::INFINITY {
        json!("Infinity")
    } else if value == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(value)
    }
}

/// One envelope as protojson writes it, with its defaults.
fn envelope_json(envelope: &Envelope) -> Value {
    let mut object = Map::new();
    object.insert("timestamp".into(), json!(envelope.timestamp.to_string()));
    object.insert("source_id".into(), json!(envelope.source_id));
    object.insert("instance_id".into(), json!(envelope.instance_id));
    object.insert("deprecated_tags".into(), json!({}));
    object.insert("tags".into(), json!(envelope.tags));
    let (key, message) = match &envelope.message {
        Some(Message::Counter(c)) => (
            "counter",
            json!({"name": c.name, "delta": c.delta.to_string(), "total": c.total.to_string()}),
        ),
        Some(Message::Gauge(g)) => {
            let metrics: Map<String, Value> = g
                .metrics
                .iter()
                .map(|(name, m)| {
                    (
                        name.clone(),
                        json!({"unit": m.unit, "value": double(m.value)}),
                    )
                })
                .collect();
            ("gauge", json!({ "metrics": metrics }))
        }
        Some(Message::Timer(t)) => (
            "timer",
            json!({"name": t.name, "start": t.start.to_string(), "stop": t.stop.to_string()}),
        ),
        Some(Message::Log(l)) => {
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::STANDARD.encode(&l.payload);
            let kind = if l.r#type == 1 { "ERR" } else { "OUT" };
            ("log", json!({"payload": payload, "type": kind}))
        }
        Some(Message::Event(e)) => ("event", json!({"title": e.title, "body": e.body})),
        None => return Value::Object(object),
    };
    object.insert(key.into(), message);
    Value::Object(object)
}

/// An `EnvelopeBatch` as the gateway's JSON, on one line.
pub fn batch_json(batch: &[Envelope]) -> String {
    let batch: Vec<Value> = batch.iter().map(envelope_json).collect();
    json!({ "batch": batch }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::v2::{decode_batch_json, to_v1};
    use crate::naming::native::NativeScheme;
    use crate::naming::{NamingScheme, SeriesUpdate};
    use crate::sim::args::WorkloadArgs;
    use crate::sim::workload::Workload;

    /// Every envelope of a round of the workload, sent as v2 and read back
    /// from the gateway's JSON, gives the series its v1 form gives; and
    /// Doppler's conversion of it gives that v1 form's series too.
    #[test]
    fn the_workload_gives_the_same_series_as_v1_and_as_v2() {
        let args = WorkloadArgs {
            rate: 0,
            cells: 2,
            apps: 5,
            seed: 7,
        };
        let mut workload = Workload::new(&args);
        let scheme = NativeScheme::new(Some("test".into()));
        let (mut compared, mut metrics) = (0, 0);
        for _ in 0..workload.round_len() {
            let v1 = workload.next_envelope();
            let Some(v2) = to_v2(&v1) else { continue };
            let json = batch_json(std::slice::from_ref(&v2));
            let read = decode_batch_json(json.as_bytes()).unwrap();
            assert_eq!(read.batch, vec![v2.clone()], "{json}");
            let mut from_v1: Vec<SeriesUpdate> = Vec::new();
            scheme.translate(&v1, &mut from_v1);
            let mut from_v2 = Vec::new();
            scheme.translate_v2(&read.batch[0], &mut from_v2);
            assert_eq!(from_v2, from_v1, "{v1:?}");
            let mut converted = Vec::new();
            for e in to_v1(&v2) {
                scheme.translate(&e, &mut converted);
            }
            assert_eq!(converted, from_v1);
            compared += 1;
            metrics += from_v1.len();
        }
        assert!(compared > 100, "{compared} envelopes compared");
        assert!(metrics > 100, "{metrics} updates compared");
    }
}
