//! The RLP Gateway's JSON form of an `EnvelopeBatch` (protojson): 64-bit
//! integers as strings (numbers accepted too), doubles as numbers or the
//! strings `NaN`, `Infinity` and `-Infinity`, bytes in standard base64,
//! enums by name or number, and the snake-case names of `source_id`,
//! `instance_id` and `deprecated_tags` or their older camel-case ones.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::proto;

/// Why a batch's JSON could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an envelope batch: {0}")]
pub struct JsonError(String);

/// Reads one `data:` line of the gateway: an `EnvelopeBatch` as JSON.
pub fn decode_batch_json(json: &[u8]) -> Result<proto::EnvelopeBatch, JsonError> {
    let batch: Batch = serde_json::from_slice(json).map_err(|e| JsonError(e.to_string()))?;
    Ok(proto::EnvelopeBatch {
        batch: batch
            .batch
            .into_iter()
            .map(JsonEnvelope::into_proto)
            .collect(),
    })
}

#[derive(Deserialize)]
struct Batch {
    #[serde(default, deserialize_with = "nullable")]
    batch: Vec<JsonEnvelope>,
}

#[derive(Deserialize)]
struct JsonEnvelope {
    #[serde(default, deserialize_with = "int64")]
    timestamp: i64,
    #[serde(default, alias = "sourceId", deserialize_with = "nullable")]
    source_id: String,
    #[serde(default, alias = "instanceId", deserialize_with = "nullable")]
    instance_id: String,
    #[serde(default, alias = "deprecatedTags", deserialize_with = "nullable")]
    deprecated_tags: BTreeMap<String, JsonValue>,
    #[serde(default, deserialize_with = "nullable")]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    log: Option<JsonLog>,
    #[serde(default)]
    counter: Option<JsonCounter>,
    #[serde(default)]
    gauge: Option<JsonGauge>,
    #[serde(default)]
    timer: Option<JsonTimer>,
    #[serde(default)]
    event: Option<JsonEvent>,
}

impl JsonEnvelope {
    fn into_proto(self) -> proto::Envelope {
        use proto::envelope::Message;
        let message = if let Some(counter) = self.counter {
            Some(Message::Counter(proto::Counter {
                name: counter.name,
                delta: counter.delta,
                total: counter.total,
            }))
        } else if let Some(gauge) = self.gauge {
            Some(Message::Gauge(proto::Gauge {
                metrics: gauge
                    .metrics
                    .into_iter()
                    .map(|(name, m)| {
                        let value = proto::GaugeValue {
                            unit: m.unit,
                            value: m.value,
                        };
                        (name, value)
                    })
                    .collect(),
            }))
        } else if let Some(timer) = self.timer {
            Some(Message::Timer(proto::Timer {
                name: timer.name,
                start: timer.start,
                stop: timer.stop,
            }))
        } else if let Some(log) = self.log {
            Some(Message::Log(proto::Log {
                payload: log.payload,
                r#type: log.kind,
            }))
        } else {
            self.event.map(|event| {
                Message::Event(proto::Event {
                    title: event.title,
                    body: event.body,
                })
            })
        };
        proto::Envelope {
            timestamp: self.timestamp,
            source_id: self.source_id,
            deprecated_tags: self
                .deprecated_tags
                .into_iter()
                .map(|(k, v)| (k, v.into_proto()))
                .collect(),
            message,
            instance_id: self.instance_id,
            tags: self.tags,
        }
    }
}

#[derive(Deserialize)]
struct JsonValue {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, deserialize_with = "option_int64")]
    integer: Option<i64>,
    #[serde(default, deserialize_with = "option_double")]
    decimal: Option<f64>,
}

impl JsonValue {
    fn into_proto(self) -> proto::Value {
        use proto::value::Data;
        let data = match (self.text, self.integer, self.decimal) {
            (Some(text), _, _) => Some(Data::Text(text)),
            (None, Some(n), _) => Some(Data::Integer(n)),
            (None, None, Some(d)) => Some(Data::Decimal(d)),
            (None, None, None) => None,
        };
        proto::Value { data }
    }
}

#[derive(Deserialize)]
struct JsonLog {
    #[serde(default, deserialize_with = "base64_bytes")]
    payload: Vec<u8>,
    #[serde(default, rename = "type", deserialize_with = "log_type")]
    kind: i32,
}

#[derive(Deserialize)]
struct JsonCounter {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "uint64")]
    delta: u64,
    #[serde(default, deserialize_with = "uint64")]
    total: u64,
}

#[derive(Deserialize)]
struct JsonGauge {
    #[serde(default, deserialize_with = "nullable")]
    metrics: BTreeMap<String, JsonGaugeValue>,
}

#[derive(Deserialize)]
struct JsonGaugeValue {
    #[serde(default, deserialize_with = "nullable")]
    unit: String,
    #[serde(default, deserialize_with = "double")]
    value: f64,
}

#[derive(Deserialize)]
struct JsonTimer {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "int64")]
    start: i64,
    #[serde(default, deserialize_with = "int64")]
    stop: i64,
}

#[derive(Deserialize)]
struct JsonEvent {
    #[serde(default, deserialize_with = "nullable")]
    title: String,
    #[serde(default, deserialize_with = "nullable")]
    body: String,
}

/// A number as protojson writes it: a JSON number or a string holding one.
/// Read by a visitor of its own, not an untagged enum, which would buffer
/// every value before trying each form.
enum Number<'a> {
    Int(i64),
    Uint(u64),
    Float(f64),
    Text(std::borrow::Cow<'a, str>),
}

struct NumberVisitor;

impl<'de> de::Visitor<'de> for NumberVisitor {
    type Value = Option<Number<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number, or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Some(Number::Int(n)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Some(match i64::try_from(n) {
            Ok(n) => Number::Int(n),
            Err(_) => Number::Uint(n),
        }))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
        Ok(Some(Number::Float(f)))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Number::Text(std::borrow::Cow::Borrowed(s))))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Number::Text(std::borrow::Cow::Owned(s.to_owned()))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A number or `null`.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Number<'de>>, D::Error> {
    d.deserialize_any(NumberVisitor)
}

/// `null` as the default, as protojson reads it.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(option_int64(d)?.unwrap_or_default())
}

fn option_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match number(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{text:?} is not a 64-bit integer"))),
        Some(_) => Err(de::Error::custom("not a 64-bit integer")),
    }
}

fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match number(d)? {
        None => Ok(0),
        Some(Number::Uint(n)) => Ok(n),
        Some(Number::Int(n)) => {
            u64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is not unsigned")))
        }
        Some(Number::Text(text)) => text
            .parse()
            .map_err(|_| de::Error::custom(format!("{text:?} is not an unsigned 64-bit integer"))),
        Some(Number::Float(_)) => Err(de::Error::custom("not an unsigned 64-bit integer")),
    }
}

fn double<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(option_double(d)?.unwrap_or_default())
}

fn option_double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match number(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n as f64)),
        Some(Number::Uint(n)) => Ok(Some(n as f64)),
        Some(Number::Float(f)) => Ok(Some(f)),
        Some(Number::Text(text)) => match text.as_ref() {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            other => other
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("{other:?} is not a number"))),
        },
    }
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text: String = nullable(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| de::Error::custom(format!("payload is not base64: {e}")))
}

fn log_type<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Kind {
        Number(i32),
        Name(String),
    }
    match Option::<Kind>::deserialize(d)? {
        None => Ok(0),
        Some(Kind::Number(n)) => Ok(n),
        Some(Kind::Name(name)) => match name.as_str() {
            "OUT" => Ok(0),
            "ERR" => Ok(1),
            other => Err(de::Error::custom(format!("{other:?} is not a log type"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envelope::Message;

    #[test]
    fn a_gateway_batch_line_decodes_with_its_integers_as_strings() {
        let json = br#"{"batch":[{"timestamp":"1700000000000000000","source_id":"doppler","instance_id":"","deprecated_tags":{},"tags":{"deployment":"cf","job":"doppler","index":"0a1b","ip":"10.0.1.5","origin":"loggregator.doppler","metric_version":"2.0"},"counter":{"name":"egress","delta":"9","total":"1462"}}]}"#;
        let batch = decode_batch_json(json).unwrap();
        assert_eq!(batch.batch.len(), 1);
        let e = &batch.batch[0];
        assert_eq!(e.timestamp, 1_700_000_000_000_000_000);
        assert_eq!(e.source_id, "doppler");
        assert_eq!(e.tags["origin"], "loggregator.doppler");
        assert_eq!(
            e.message,
            Some(Message::Counter(proto::Counter {
                name: "egress".into(),
                delta: 9,
                total: 1462
            }))
        );
    }

    #[test]
    fn camel_case_names_special_doubles_logs_and_typed_tags_decode() {
        let json = br#"{ "batch" : [
            {"sourceId":"app","instanceId":"3","deprecatedTags":{"a":{"integer":"7"},"b":{"decimal":1.5},"c":{"text":"x"}},
             "gauge":{"metrics":{"cpu":{"unit":"percentage","value":"NaN"},"up":{"unit":"","value":"-Infinity"},"n":{"value":2}}}},
            {"timestamp":12,"log":{"payload":"aGVsbG8=","type":"ERR"}},
            {"timer":{"name":"http","start":"1","stop":"3"}},
            {"event":{"title":"t","body":"b"}},
            {"source_id":null,"tags":null}
        ]}"#;
        let batch = decode_batch_json(json).unwrap();
        let [gauge, log, timer, event, empty] = &batch.batch[..] else {
            panic!("five envelopes")
        };
        assert_eq!(
            (gauge.source_id.as_str(), gauge.instance_id.as_str()),
            ("app", "3")
        );
        let Some(Message::Gauge(g)) = &gauge.message else {
            panic!()
        };
        assert!(g.metrics["cpu"].value.is_nan());
        assert_eq!(g.metrics["up"].value, f64::NEG_INFINITY);
        assert_eq!(g.metrics["n"].value, 2.0);
        use proto::value::Data;
        assert_eq!(gauge.deprecated_tags["a"].data, Some(Data::Integer(7)));
        assert_eq!(gauge.deprecated_tags["b"].data, Some(Data::Decimal(1.5)));
        assert_eq!(
            gauge.deprecated_tags["c"].data,
            Some(Data::Text("x".into()))
        );
        assert_eq!(
            log.message,
            Some(Message::Log(proto::Log {
                payload: b"hello".to_vec(),
                r#type: 1
            }))
        );
        assert_eq!(log.timestamp, 12);
        assert!(matches!(&timer.message, Some(Message::Timer(t)) if t.stop == 3));
        assert!(matches!(&event.message, Some(Message::Event(e)) if e.title == "t"));
        assert_eq!(empty.message, None);
    }

    #[test]
    fn bad_json_is_an_error_that_says_where() {
        for bad in [
            &br#"{"batch":[{"counter":{"delta":"nine"}}]}"#[..],
            br#"{"batch":[{"counter":{"delta":"-1"}}]}"#,
            br#"{"batch":[{"log":{"payload":"***"}}]}"#,
            br#"{"batch":"#,
            b"heartbeat",
        ] {
            let error = decode_batch_json(bad).unwrap_err();
            assert!(
                error.to_string().starts_with("not an envelope batch: "),
                "{error}"
            );
        }
    }
}
