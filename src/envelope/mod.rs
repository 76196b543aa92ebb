//! Dropsonde v1 envelopes: the types generated from `proto/` and the checks
//! that turn a frame's bytes into an envelope the translator can trust.

/// Types generated from `proto/events/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

use events::envelope::EventType;
pub use events::{ContainerMetric, CounterEvent, Envelope, ValueMetric};
use prost::Message;

/// Why a frame did not yield a usable envelope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a protobuf `Envelope`.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] prost::DecodeError),
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
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::MissingField { .. } => "missing_field",
        }
    }
}

/// Decodes one frame into an envelope and checks that the event its type names
/// is present with the fields translation needs.
///
/// prost fills a missing proto2 `required` scalar with its default, so absence
/// shows as an empty name or application id; those are rejected here rather
/// than turned into nameless series.
pub fn decode(frame: &[u8]) -> Result<Envelope, DecodeError> {
    let envelope = Envelope::decode(frame)?;
    validate(&envelope)?;
    Ok(envelope)
}

fn validate(envelope: &Envelope) -> Result<(), DecodeError> {
    let event = EventType::try_from(envelope.event_type)
        .map_err(|_| DecodeError::UnknownEventType(envelope.event_type))?;
    let missing = |field| Err(DecodeError::MissingField { event, field });
    match event {
        EventType::ValueMetric => match &envelope.value_metric {
            None => missing("valueMetric"),
            Some(m) if m.name.is_empty() => missing("valueMetric.name"),
            Some(_) => Ok(()),
        },
        EventType::CounterEvent => match &envelope.counter_event {
            None => missing("counterEvent"),
            Some(c) if c.name.is_empty() => missing("counterEvent.name"),
            Some(_) => Ok(()),
        },
        EventType::ContainerMetric => match &envelope.container_metric {
            None => missing("containerMetric"),
            Some(c) if c.application_id.is_empty() => missing("containerMetric.applicationId"),
            Some(_) => Ok(()),
        },
        EventType::HttpStartStop => match envelope.http_start_stop {
            None => missing("httpStartStop"),
            Some(_) => Ok(()),
        },
        EventType::LogMessage => match envelope.log_message {
            None => missing("logMessage"),
            Some(_) => Ok(()),
        },
        EventType::Error => match envelope.error {
            None => missing("error"),
            Some(_) => Ok(()),
        },
    }
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
pub(crate) mod vectors {
    //! The hex test vectors of the protocol brief (§1.11).
    pub const VALUE_METRIC: &str = "0a037265701006308080a8b1e39fe7cb174a190a076e756d435055531100000000000010401a05636f756e746a026366720a646965676f2d63656c6c7a056964782d3182010831302e302e302e358a01100a09736f757263655f69641203726570";
    pub const CONTAINER_METRIC: &str = "0a037265701009308080a8b1e39fe7cb1762470a2466343761633130622d353863632d343337322d613536372d306530326232633364343739100019000000000000f83f208080803228808080643080808080043880808080048a01110a086170705f6e616d6512056d79617070";
    pub const COUNTER_EVENT: &str =
        "0a08676f726f757465721007308080a8b1e39fe7cb17520f0a087265717565737473100518d209";

    pub fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rejects_garbage_without_panicking() {
        let err = decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.reason(), "malformed");
        // A truncated valid frame is malformed too.
        let mut frame = vectors::bytes(vectors::VALUE_METRIC);
        frame.truncate(frame.len() - 3);
        assert_eq!(decode(&frame).unwrap_err().reason(), "malformed");
    }
}
