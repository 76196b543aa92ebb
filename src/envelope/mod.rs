//! Dropsonde v1 envelopes: the types generated from `proto/` and the checks
//! that turn a frame's bytes into an envelope the translator can trust.
//!
//! Frames are decoded by prost as a [`view::Envelope`], whose strings are
//! slices of the frame rather than copies, then checked into an
//! [`EnvelopeRef`] that borrows from it, all inside [`with_checked`].
//! Ingestion uses [`with_checked_wire`] instead, whose [`WireEnvelope`] keeps
//! the tags encoded until [`WireEnvelope::sorted`] decodes and checks them.
//! [`decode`] gives an owned [`Envelope`] by the same rules, for tools and
//! tests.
//!
//! Its two `unsafe` blocks are in `borrowed.rs`, each with the reason it
//! is sound; the only other one in the crate is a prefetch hint in `store`.

/// Types generated from `proto/events/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

/// The wire-compatible view of `events.Envelope` from `proto/view/`.
#[allow(missing_docs, clippy::all)]
pub mod view {
    include!(concat!(env!("OUT_DIR"), "/view.rs"));
}

mod borrowed;
mod payloads;

pub use payloads::{Http, Instance, LogType, Peer, uuid_text};
pub mod v2;
pub mod vectors;

use borrowed::{decode_tag, utf8, utf8_opt, with_view};

use bytes::Bytes;
use events::envelope::EventType;
pub use events::{ContainerMetric, CounterEvent, Envelope, ValueMetric};
use prost::Message;

/// Why a frame did not yield a usable envelope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a protobuf `Envelope`.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The bytes break a rule of protobuf's encoding.
    #[error("malformed envelope: {0}")]
    Invalid(&'static str),
    /// A string field the exporter reads is not UTF-8.
    #[error("malformed envelope: {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// `eventType` is 0 or a value this version does not know. (A missing
    /// `eventType` decodes as the enum's first value, HttpStartStop, and then
    /// fails as a missing payload.)
    #[error("unknown event type {0}")]
    UnknownEventType(i32),
    /// The event named by `eventType` is absent, or a field it requires is empty.
    #[error("{event:?} envelope without {field}")]
    MissingField {
        /// The envelope's event type.
        event: EventType,
        /// The missing field.
        field: &'static str,
    },
}

impl DecodeError {
    /// A short, stable label for counting rejections by cause.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) | DecodeError::Invalid(_) | DecodeError::InvalidUtf8(_) => {
                "malformed"
            }
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::MissingField { .. } => "missing_field",
        }
    }
}

/// The event an envelope carries, as far as the exporter reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Payload<'a> {
    /// A gauge reading.
    Value {
        /// Metric name as emitted.
        name: &'a str,
        /// The reading.
        value: f64,
        /// Free-text unit, possibly empty.
        unit: &'a str,
    },
    /// A counter.
    Counter {
        /// Metric name as emitted.
        name: &'a str,
        /// Increment since the previous emission.
        delta: u64,
        /// Running total, when sent.
        total: Option<u64>,
    },
    /// An application instance's usage.
    Container {
        /// App GUID.
        application_id: &'a str,
        /// Instance index.
        instance_index: i32,
        /// Percent of one core.
        cpu_percentage: f64,
        /// Bytes of memory in use.
        memory_bytes: u64,
        /// Bytes of disk in use.
        disk_bytes: u64,
        /// Memory limit, when sent.
        memory_bytes_quota: Option<u64>,
        /// Disk limit, when sent.
        disk_bytes_quota: Option<u64>,
    },
    /// An HTTP request, as a router or an app reports it.
    Http(Http<'a>),
    /// A log line: its size and kind, never its text.
    Log {
        /// `OUT` or `ERR`.
        message_type: LogType,
        /// The length of the line, in bytes.
        bytes: u64,
        /// The app GUID (v1), empty when not sent.
        app_id: &'a str,
        /// `APP/PROC/WEB`, `RTR`, `STG`, ... (v1), empty when not sent.
        source_type: &'a str,
    },
    /// An error a component reports.
    Error {
        /// What reported it.
        source: &'a str,
        /// Its code.
        code: i32,
    },
    /// Nothing the exporter reads (a v2 event).
    Other,
}

/// What a checked envelope carries besides its tags, borrowing its strings
/// from a [`view::Envelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fields<'a> {
    /// Emitting component.
    pub origin: &'a str,
    /// The event type, known and with its payload present.
    pub event_type: EventType,
    /// BOSH deployment, job, index and IP, when sent.
    pub deployment: Option<&'a str>,
    /// BOSH job (instance group).
    pub job: Option<&'a str>,
    /// BOSH instance id.
    pub index: Option<&'a str>,
    /// VM IP.
    pub ip: Option<&'a str>,
    /// The event.
    pub payload: Payload<'a>,
}

impl<'a> Fields<'a> {
    /// Fields with only an event type and its payload, the rest empty:
    /// enough for a naming scheme to read the values of an envelope it knows.
    pub fn of_payload(event_type: EventType, payload: Payload<'a>) -> Self {
        Self {
            origin: "",
            event_type,
            deployment: None,
            job: None,
            index: None,
            ip: None,
            payload,
        }
    }

    /// The counter older Dopplers inject into a subscription they drop messages from.
    pub fn is_dropped_messages_alert(&self) -> bool {
        matches!(
            self.payload,
            Payload::Counter {
                name: "TruncatingBuffer.DroppedMessages",
                ..
            }
        ) && matches!(self.origin, "doppler" | "DopplerServer")
    }
}

/// A checked envelope with its tags, borrowing its strings from a
/// [`view::Envelope`]. Its other fields read through [`Fields`].
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeRef<'a> {
    /// Everything but the tags.
    pub fields: Fields<'a>,
    /// Tags sorted by key, one per key (the last sent, as for a map).
    pub tags: Vec<(&'a str, &'a str)>,
}

impl<'a> std::ops::Deref for EnvelopeRef<'a> {
    type Target = Fields<'a>;

    fn deref(&self) -> &Fields<'a> {
        &self.fields
    }
}

impl<'a> EnvelopeRef<'a> {
    /// An owned copy, stamped with `timestamp`: the fields, the tags and
    /// what it carries as far as it was read (an HTTP event without its
    /// request's URI, addresses and id; a log line of the same length),
    /// nothing for [`Payload::Other`].
    pub fn to_envelope(&self, timestamp: Option<i64>) -> Envelope {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let mut envelope = Envelope {
            origin: self.origin.to_owned(),
            event_type: self.event_type as i32,
            timestamp,
            deployment: owned(self.deployment),
            job: owned(self.job),
            index: owned(self.index),
            ip: owned(self.ip),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        match self.payload {
            Payload::Value { name, value, unit } => {
                envelope.value_metric = Some(ValueMetric {
                    name: name.into(),
                    value,
                    unit: unit.into(),
                })
            }
            Payload::Counter { name, delta, total } => {
                envelope.counter_event = Some(CounterEvent {
                    name: name.into(),
                    delta,
                    total,
                })
            }
            Payload::Container {
                application_id,
                instance_index,
                cpu_percentage,
                memory_bytes,
                disk_bytes,
                memory_bytes_quota,
                disk_bytes_quota,
            } => {
                envelope.container_metric = Some(ContainerMetric {
                    application_id: application_id.into(),
                    instance_index,
                    cpu_percentage,
                    memory_bytes,
                    disk_bytes,
                    memory_bytes_quota,
                    disk_bytes_quota,
                })
            }
            Payload::Http(http) => {
                envelope.http_start_stop = Some(events::HttpStartStop {
                    stop_timestamp: http.duration_ns,
                    peer_type: match http.peer {
                        Peer::Client => events::PeerType::Client as i32,
                        Peer::Server => events::PeerType::Server as i32,
                        Peer::Unknown => 0,
                    },
                    method: events::Method::from_str_name(http.method).map_or(0, |m| m as i32),
                    status_code: http.status_code,
                    content_length: http.content_length.unwrap_or_default() as i64,
                    application_id: http.application_id.as_ref().map(events::Uuid::from_bytes),
                    instance_index: match http.instance {
                        Instance::None => None,
                        Instance::Index(i) => Some(i),
                        Instance::Text(text) => text.parse().ok(),
                    },
                    ..Default::default()
                })
            }
            Payload::Log {
                message_type,
                bytes,
                app_id,
                source_type,
            } => {
                envelope.log_message = Some(events::LogMessage {
                    // The text is not kept: a line of the same length.
                    message: vec![b'.'; bytes as usize],
                    message_type: match message_type {
                        LogType::Out => 1,
                        LogType::Err => 2,
                    },
                    timestamp: timestamp.unwrap_or_default(),
                    app_id: (!app_id.is_empty()).then(|| app_id.into()),
                    source_type: (!source_type.is_empty()).then(|| source_type.into()),
                    source_instance: None,
                })
            }
            Payload::Error { source, code } => {
                envelope.error = Some(events::Error {
                    source: source.into(),
                    code,
                    message: String::new(),
                })
            }
            Payload::Other => {}
        }
        envelope
    }

    /// The value of tag `key`, if sent.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.tags[i].1)
    }
}

/// A checked envelope whose tags are still encoded, as sent: what ingestion
/// can read without decoding them. [`WireEnvelope::sorted`] decodes and
/// checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct WireEnvelope<'a> {
    fields: Fields<'a>,
    /// The encodings of the tags map's entries, in wire order.
    entries: &'a [Bytes],
    /// Nanoseconds since the Unix epoch, when sent.
    timestamp: Option<i64>,
}

impl<'a> WireEnvelope<'a> {
    /// Everything but the tags.
    pub fn fields(&self) -> &Fields<'a> {
        &self.fields
    }

    /// When the envelope was emitted, in nanoseconds since the Unix epoch,
    /// if the sender said.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The encoding of each tag, in wire order: the same bytes decode to the
    /// same key and value.
    pub fn tag_entries(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        self.entries.iter().map(|entry| &entry[..])
    }

    /// The envelope with its tags decoded and checked, sorted by key, one
    /// per key: the last sent wins, as for a protobuf map.
    pub fn sorted(self) -> Result<EnvelopeRef<'a>, DecodeError> {
        let mut tags = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            tags.push(decode_tag(entry)?);
        }
        // Sorted by key, wire order kept among equal keys; then the last wins.
        tags.sort_by(|a: &(&str, &str), b| by_key(a.0, b.0));
        tags.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = later.1;
            }
            same
        });
        Ok(EnvelopeRef {
            fields: self.fields,
            tags,
        })
    }
}

/// Decodes and checks one frame and hands the result to `f`, which borrows
/// the envelope's strings from the frame: nothing is copied and no reference
/// count is touched. The borrow ends when `f` returns.
pub fn with_checked<R>(
    frame: &[u8],
    f: impl FnOnce(Result<EnvelopeRef<'_>, DecodeError>) -> R,
) -> R {
    with_view(frame, |view| {
        f(view.and_then(validate).and_then(WireEnvelope::sorted))
    })
}

/// As [`with_checked`], but the tags are left encoded, for a caller that
/// may not need them decoded: a frame whose tags do not decode or are not
/// UTF-8 fails [`WireEnvelope::sorted`] rather than this.
pub fn with_checked_wire<R>(
    frame: &[u8],
    f: impl FnOnce(Result<WireEnvelope<'_>, DecodeError>) -> R,
) -> R {
    with_view(frame, |view| f(view.and_then(validate)))
}

/// The order of two tag keys, that of `str`, compared inline eight bytes at
/// a time: keys are short, and a call to `memcmp` for each comparison of a
/// sort costs more than the comparison.
#[inline]
pub(crate) fn by_key(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a_rest, mut b_rest) = (a.as_bytes(), b.as_bytes());
    while let (Some((x, a_next)), Some((y, b_next))) = (
        a_rest.split_first_chunk::<8>(),
        b_rest.split_first_chunk::<8>(),
    ) {
        if x != y {
            return u64::from_be_bytes(*x).cmp(&u64::from_be_bytes(*y));
        }
        (a_rest, b_rest) = (a_next, b_next);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        if x != y {
            return x.cmp(y);
        }
    }
    a_rest.len().cmp(&b_rest.len())
}

/// Checks a decoded view: every string the exporter reads is UTF-8, the
/// event type is known, and the event it names is present with the fields
/// translation needs.
///
/// prost fills a missing proto2 `required` scalar with its default, so absence
/// shows as an empty name or application id; those are rejected here rather
/// than turned into nameless series. The payloads of events the exporter does
/// not translate (HTTP, log, error) are only checked for presence.
fn validate(e: &view::Envelope) -> Result<WireEnvelope<'_>, DecodeError> {
    let origin = utf8(&e.origin, "origin")?;
    let deployment = utf8_opt(&e.deployment, "deployment")?;
    let job = utf8_opt(&e.job, "job")?;
    let index = utf8_opt(&e.index, "index")?;
    let ip = utf8_opt(&e.ip, "ip")?;
    let value_metric = match &e.value_metric {
        Some(m) => Some((
            utf8(&m.name, "valueMetric.name")?,
            m.value,
            utf8(&m.unit, "valueMetric.unit")?,
        )),
        None => None,
    };
    let counter_name = e
        .counter_event
        .as_ref()
        .map(|c| utf8(&c.name, "counterEvent.name"))
        .transpose()?;
    let application_id = e
        .container_metric
        .as_ref()
        .map(|c| utf8(&c.application_id, "containerMetric.applicationId"))
        .transpose()?;

    let event = EventType::try_from(e.event_type)
        .map_err(|_| DecodeError::UnknownEventType(e.event_type))?;
    let missing = |field| DecodeError::MissingField { event, field };
    let payload = match event {
        EventType::ValueMetric => match value_metric {
            None => return Err(missing("valueMetric")),
            Some(("", _, _)) => return Err(missing("valueMetric.name")),
            Some((name, value, unit)) => Payload::Value { name, value, unit },
        },
        EventType::CounterEvent => match (&e.counter_event, counter_name) {
            (Some(_), Some("")) => return Err(missing("counterEvent.name")),
            (Some(c), Some(name)) => Payload::Counter {
                name,
                delta: c.delta,
                total: c.total,
            },
            _ => return Err(missing("counterEvent")),
        },
        EventType::ContainerMetric => match (&e.container_metric, application_id) {
            (Some(_), Some("")) => return Err(missing("containerMetric.applicationId")),
            (Some(c), Some(application_id)) => Payload::Container {
                application_id,
                instance_index: c.instance_index,
                cpu_percentage: c.cpu_percentage,
                memory_bytes: c.memory_bytes,
                disk_bytes: c.disk_bytes,
                memory_bytes_quota: c.memory_bytes_quota,
                disk_bytes_quota: c.disk_bytes_quota,
            },
            _ => return Err(missing("containerMetric")),
        },
        EventType::HttpStartStop => match &e.http_start_stop {
            Some(bytes) => Payload::Http(payloads::http(bytes)?),
            None => return Err(missing("httpStartStop")),
        },
        EventType::LogMessage => match &e.log_message {
            Some(bytes) => payloads::log(bytes)?,
            None => return Err(missing("logMessage")),
        },
        EventType::Error => match &e.error {
            Some(bytes) => payloads::error(bytes)?,
            None => return Err(missing("error")),
        },
    };
    Ok(WireEnvelope {
        fields: Fields {
            origin,
            event_type: event,
            deployment,
            job,
            index,
            ip,
            payload,
        },
        entries: &e.tags,
        timestamp: e.timestamp,
    })
}

/// Decodes and checks one frame by the rules of [`validate`], as an owned
/// envelope. The payloads of events the exporter does not translate are
/// decoded as far as they go, and left empty where they do not.
pub fn decode(frame: &[u8]) -> Result<Envelope, DecodeError> {
    with_view(frame, |raw| owned(raw?))
}

fn owned(raw: &view::Envelope) -> Result<Envelope, DecodeError> {
    let e = validate(raw)?.sorted()?;
    let mut envelope = e.to_envelope(raw.timestamp);
    match e.payload {
        Payload::Value { .. } | Payload::Counter { .. } | Payload::Container { .. } => {}
        Payload::Http(_) | Payload::Log { .. } | Payload::Error { .. } | Payload::Other => {
            // These copy what they decode: nothing of the frame is kept.
            envelope.http_start_stop = raw
                .http_start_stop
                .as_deref()
                .map(|b| events::HttpStartStop::decode(b).unwrap_or_default());
            envelope.log_message = raw
                .log_message
                .as_deref()
                .map(|b| events::LogMessage::decode(b).unwrap_or_default());
            envelope.error = raw
                .error
                .as_deref()
                .map(|b| events::Error::decode(b).unwrap_or_default());
        }
    }
    Ok(envelope)
}

/// The names of the event types this version knows, for labels and filters.
pub const EVENT_TYPE_NAMES: [&str; 6] = [
    "HttpStartStop",
    "LogMessage",
    "ValueMetric",
    "CounterEvent",
    "Error",
    "ContainerMetric",
];

/// The name used for an event type in labels and filters.
pub fn event_type_name(event_type: i32) -> &'static str {
    match EventType::try_from(event_type) {
        Ok(EventType::HttpStartStop) => "HttpStartStop",
        Ok(EventType::LogMessage) => "LogMessage",
        Ok(EventType::ValueMetric) => "ValueMetric",
        Ok(EventType::CounterEvent) => "CounterEvent",
        Ok(EventType::Error) => "Error",
        Ok(EventType::ContainerMetric) => "ContainerMetric",
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectors::{COUNTER_EVENT as COUNTER_EVENT_VECTOR, bytes};

    #[test]
    fn decodes_value_metric_vector() {
        let e = decode(&vectors::bytes(vectors::VALUE_METRIC)).unwrap();
        assert_eq!(e.origin, "rep");
        assert_eq!(e.event_type(), EventType::ValueMetric);
        assert_eq!(e.timestamp, Some(1_700_000_000_000_000_000));
        let m = e.value_metric.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.value, m.unit.as_str()),
            ("numCPUS", 4.0, "count")
        );
        assert_eq!(e.deployment.as_deref(), Some("cf"));
        assert_eq!(e.job.as_deref(), Some("diego-cell"));
        assert_eq!(e.index.as_deref(), Some("idx-1"));
        assert_eq!(e.ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(e.tags.len(), 1);
        assert_eq!(e.tags["source_id"], "rep");
    }

    #[test]
    fn decodes_container_metric_vector() {
        let e = decode(&vectors::bytes(vectors::CONTAINER_METRIC)).unwrap();
        let c = e.container_metric.as_ref().unwrap();
        assert_eq!(c.application_id, "f47ac10b-58cc-4372-a567-0e02b2c3d479");
        assert_eq!(c.instance_index, 0);
        assert_eq!(c.cpu_percentage, 1.5);
        assert_eq!(c.memory_bytes, 100 << 20);
        assert_eq!(c.disk_bytes, 200 << 20);
        assert_eq!(c.memory_bytes_quota, Some(1 << 30));
        assert_eq!(c.disk_bytes_quota, Some(1 << 30));
        assert_eq!(e.tags["app_name"], "myapp");
    }

    #[test]
    fn decodes_counter_event_vector() {
        let e = decode(&vectors::bytes(vectors::COUNTER_EVENT)).unwrap();
        assert_eq!(e.origin, "gorouter");
        let c = e.counter_event.as_ref().unwrap();
        assert_eq!(
            (c.name.as_str(), c.delta, c.total),
            ("requests", 5, Some(1234))
        );
    }

    #[test]
    fn rejects_missing_event_type_and_payload() {
        // prost decodes a missing proto2 enum as its first value (HttpStartStop),
        // whose payload is then missing too.
        let no_type = Envelope {
            origin: "x".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            decode(&[0x0a, 0x01, b'x']),
            Err(DecodeError::MissingField {
                event: EventType::HttpStartStop,
                field: "httpStartStop"
            })
        );
        assert_eq!(decode(&no_type).unwrap_err().reason(), "missing_field");
        let zero = Envelope {
            origin: "x".into(),
            event_type: 0,
            ..Default::default()
        };
        assert_eq!(
            decode(&zero.encode_to_vec()),
            Err(DecodeError::UnknownEventType(0))
        );
        let unknown = Envelope {
            origin: "x".into(),
            event_type: 42,
            ..Default::default()
        };
        assert_eq!(
            decode(&unknown.encode_to_vec()),
            Err(DecodeError::UnknownEventType(42))
        );
        let no_payload = Envelope {
            origin: "x".into(),
            event_type: 6,
            ..Default::default()
        };
        let err = decode(&no_payload.encode_to_vec()).unwrap_err();
        assert_eq!(err.reason(), "missing_field");
        let nameless = Envelope {
            event_type: 7,
            counter_event: Some(CounterEvent::default()),
            ..Default::default()
        };
        assert_eq!(
            decode(&nameless.encode_to_vec()),
            Err(DecodeError::MissingField {
                event: EventType::CounterEvent,
                field: "counterEvent.name"
            })
        );
    }

    #[test]
    fn the_view_reads_every_envelope_of_the_workload_as_prost_wrote_it() {
        let mut workload = crate::sim::workload::Workload::new(&crate::sim::args::WorkloadArgs {
            rate: 0,
            cells: 3,
            apps: 20,
            seed: 7,
        });
        for _ in 0..workload.round_len() * 2 {
            let envelope = workload.next_envelope();
            let frame = envelope.encode_to_vec();
            assert_eq!(decode(&frame).as_ref(), Ok(&envelope), "{envelope:?}");
        }
    }

    #[test]
    fn repeated_tag_keys_keep_the_last_value_as_a_map_does() {
        // Two entries for "a" and one for "b", in wire order b, a=1, a=2.
        let entry = |k: &str, v: &str| vectors::tag_field(k.as_bytes(), v.as_bytes());
        let mut frame = bytes(COUNTER_EVENT_VECTOR);
        for (k, v) in [("b", "x"), ("a", "1"), ("a", "2")] {
            frame.extend(entry(k, v));
        }
        let e = decode(&frame).unwrap();
        assert_eq!(e.tags.len(), 2);
        assert_eq!(e.tags["a"], "2");
        with_checked(&frame, |checked| {
            let checked = checked.unwrap();
            assert_eq!(checked.tags, vec![("a", "2"), ("b", "x")]);
            assert_eq!(checked.tag("b"), Some("x"));
            assert_eq!(checked.tag("c"), None);
        });
        // Left encoded, the entries come as sent, each one's own bytes.
        with_checked_wire(&frame, |wire| {
            let wire = wire.unwrap();
            let entries: Vec<&[u8]> = wire.tag_entries().collect();
            assert_eq!(entries.len(), 3);
            assert_eq!(entries[0], &entry("b", "x")[3..]);
            assert_eq!(entries[2], &entry("a", "2")[3..]);
            assert_eq!(wire.sorted().unwrap().tags, vec![("a", "2"), ("b", "x")]);
        });
    }

    /// A tag that does not decode or is not UTF-8 fails the envelope when the
    /// tags are decoded: at once with `with_checked`, at `sorted` when left
    /// encoded.
    #[test]
    fn bad_tags_fail_when_decoded() {
        let not_utf8 = vectors::tag_field(b"k", &[0xff]);
        let truncated = vectors::entry_field(&[0x0a, 0x05, b'k']);
        let check = |bad: Vec<u8>, same_kind: fn(&DecodeError) -> bool| {
            let mut frame = bytes(COUNTER_EVENT_VECTOR);
            frame.extend(bad);
            with_checked(&frame, |checked| {
                assert!(same_kind(&checked.unwrap_err()));
            });
            with_checked_wire(&frame, |wire| {
                let wire = wire.unwrap();
                assert_eq!(wire.fields().origin, "gorouter");
                assert!(same_kind(&wire.sorted().unwrap_err()));
            });
            assert!(same_kind(&decode(&frame).unwrap_err()));
        };
        check(not_utf8, |e| *e == DecodeError::InvalidUtf8("tag value"));
        check(truncated, |e| matches!(e, DecodeError::Malformed(_)));
    }

    #[test]
    fn tag_keys_compare_as_strings_do() {
        use proptest::prelude::*;
        let key = prop::sample::select(vec![
            "",
            "a",
            "ab",
            "organization",
            "organization_id",
            "organization_name",
            "organizatio",
            "\0",
            "a\0",
            "é",
            "zé",
            "process_instance_id",
            "process_id",
            "processX",
        ]);
        let any = "[a-c_\\x00é]{0,20}";
        proptest!(|(a in key.clone(), b in key, x in any, y in any)| {
            prop_assert_eq!(by_key(a, b), a.cmp(b));
            prop_assert_eq!(by_key(&x, &y), x.cmp(&y));
            let (xa, ya) = (format!("{a}{x}"), format!("{a}{y}"));
            prop_assert_eq!(by_key(&xa, &ya), xa.cmp(&ya));
        });
    }

    #[test]
    fn invalid_utf8_in_a_string_that_is_read_is_malformed() {
        let mut frame = bytes(COUNTER_EVENT_VECTOR);
        frame.extend_from_slice(&[0x8a, 0x01, 0x07, 0x0a, 0x01, b'k', 0x12, 0x02, 0xc3, 0x28]);
        let err = decode(&frame).unwrap_err();
        assert_eq!(err, DecodeError::InvalidUtf8("tag value"));
        assert_eq!(err.reason(), "malformed");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let err = decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.reason(), "malformed");
        // A truncated valid frame is malformed too.
        let mut frame = vectors::bytes(vectors::VALUE_METRIC);
        frame.truncate(frame.len() - 3);
        assert_eq!(decode(&frame).unwrap_err().reason(), "malformed");
    }
}
