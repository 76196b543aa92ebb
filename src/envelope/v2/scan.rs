//! The protobuf of v2 batches and envelopes read in place: each field a
//! slice of the bytes received, found with prost's own varint and key
//! decoding, nothing copied and nothing allocated but the positions of the
//! map entries, in lists reused from envelope to envelope. Faster than
//! decoding a generated view (which builds and drops a `Bytes` per string),
//! as `benches/pipeline.rs` measures.
//!
//! The rules are protobuf's: fields in any order, unknown ones skipped, the
//! last of a repeated scalar or string winning, the last message of the
//! oneof winning; a known field of the wrong wire type, a length past the
//! end or a bad varint is an error.

use prost::encoding::{WireType, decode_key, decode_varint};

use crate::envelope::DecodeError;

/// A field's value, as read.
#[derive(Debug, Clone, Copy)]
pub(in crate::envelope) enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(&'a [u8]),
}

/// Calls `f` with each field of the message `buf`, in order.
pub(in crate::envelope) fn fields<'a>(
    mut buf: &'a [u8],
    mut f: impl FnMut(u32, Field<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf)?;
        let field = match wire_type {
            WireType::Varint => Field::Varint(decode_varint(&mut buf)?),
            WireType::SixtyFourBit => {
                let (bytes, rest) = buf
                    .split_first_chunk::<8>()
                    .ok_or(DecodeError::Invalid("a fixed64 field past the end"))?;
                buf = rest;
                Field::Fixed64(u64::from_le_bytes(*bytes))
            }
            WireType::ThirtyTwoBit => {
                buf = buf
                    .get(4..)
                    .ok_or(DecodeError::Invalid("a fixed32 field past the end"))?;
                Field::Fixed32
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf)?)
                    .map_err(|_| DecodeError::Invalid("a length past the end"))?;
                if len > buf.len() {
                    return Err(DecodeError::Invalid("a length past the end"));
                }
                let (bytes, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(bytes)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(DecodeError::Invalid(
                    "a group, which v2 messages never hold",
                ));
            }
        };
        f(number, field)?;
    }
    Ok(())
}

/// The bytes of a length-delimited field.
pub(in crate::envelope) fn bytes<'a>(field: Field<'a>) -> Result<&'a [u8], DecodeError> {
    match field {
        Field::Bytes(bytes) => Ok(bytes),
        _ => Err(DecodeError::Invalid(
            "a string or message field of another wire type",
        )),
    }
}

/// The value of a varint field.
pub(in crate::envelope) fn varint(field: Field<'_>) -> Result<u64, DecodeError> {
    match field {
        Field::Varint(n) => Ok(n),
        _ => Err(DecodeError::Invalid(
            "an integer field of another wire type",
        )),
    }
}

/// Calls `f` with the encoding of each envelope of an `EnvelopeBatch`.
pub(super) fn batch<'a>(buf: &'a [u8], mut f: impl FnMut(&'a [u8])) -> Result<(), DecodeError> {
    fields(buf, |number, field| {
        if number == 1 {
            f(bytes(field)?);
        }
        Ok(())
    })
}

/// Where a part of an envelope is: a range of its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The span of `part`, a slice of `whole` (or empty).
    fn of(whole: &[u8], part: &[u8]) -> Self {
        if part.is_empty() {
            return Self::default();
        }
        Self {
            start: (part.as_ptr() as usize - whole.as_ptr() as usize) as u32,
            len: part.len() as u32,
        }
    }

    /// Its bytes in `whole`.
    pub(super) fn in_(self, whole: &[u8]) -> &[u8] {
        &whole[self.start as usize..][..self.len as usize]
    }
}

/// One entry of a map: all of it, its key and its value (a string's
/// bytes, or a message's encoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) all: Span,
    pub(super) key: Span,
    pub(super) value: Span,
}

/// The oneof `message` of an envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Message {
    #[default]
    None,
    /// The payload's length and the type (OUT = 0, ERR = 1).
    Log(u64, u64),
    /// The counter's name, delta and total.
    Counter(Span, u64, u64),
    /// The gauge's encoding.
    Gauge(Span),
    /// The timer's name, start and stop.
    Timer(Span, i64, i64),
    Event,
}

/// The parts of an envelope, as spans of its bytes; the lists are kept
/// from envelope to envelope.
#[derive(Debug, Default)]
pub(super) struct Parts {
    /// Nanoseconds since the Unix epoch; 0 when not sent.
    pub(super) timestamp: i64,
    pub(super) source_id: Span,
    pub(super) instance_id: Span,
    pub(super) message: Message,
    pub(super) tags: Vec<Entry>,
    pub(super) deprecated: Vec<Entry>,
    /// The gauge's metrics: the value is the `GaugeValue`'s encoding.
    pub(super) metrics: Vec<Entry>,
    /// The gauge's metrics read: name, unit, value.
    pub(super) readings: Vec<(Span, Span, f64)>,
}

/// A map entry: key field 1, value field 2, both length-delimited.
fn entry(whole: &[u8], encoded: &[u8]) -> Result<Entry, DecodeError> {
    // As every encoder writes a short entry: the key, then the value, each
    // under 128 bytes, nothing else.
    if let [0x0a, key_len, rest @ ..] = encoded
        && *key_len < 0x80
        && let Some((key, [0x12, value_len, value @ ..])) =
            rest.split_at_checked(usize::from(*key_len))
        && *value_len < 0x80
        && usize::from(*value_len) == value.len()
    {
        return Ok(Entry {
            all: Span::of(whole, encoded),
            key: Span::of(whole, key),
            value: Span::of(whole, value),
        });
    }
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    fields(encoded, |number, field| {
        match number {
            1 => key = bytes(field)?,
            2 => value = bytes(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Entry {
        all: Span::of(whole, encoded),
        key: Span::of(whole, key),
        value: Span::of(whole, value),
    })
}

impl Parts {
    /// Reads the envelope `whole` into these parts, the gauge's metrics
    /// too.
    pub(super) fn read(&mut self, whole: &[u8]) -> Result<(), DecodeError> {
        self.timestamp = 0;
        self.source_id = Span::default();
        self.instance_id = Span::default();
        self.message = Message::None;
        self.tags.clear();
        self.deprecated.clear();
        self.metrics.clear();
        self.readings.clear();
        fields(whole, |number, field| {
            match number {
                1 => self.timestamp = varint(field)? as i64,
                2 => self.source_id = Span::of(whole, bytes(field)?),
                3 => self.deprecated.push(entry(whole, bytes(field)?)?),
                4 => {
                    let (mut len, mut kind) = (0, 0);
                    fields(bytes(field)?, |number, field| {
                        match number {
                            1 => len = bytes(field)?.len() as u64,
                            2 => kind = varint(field)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    self.message = Message::Log(len, kind);
                }
                5 => {
                    let counter = bytes(field)?;
                    let (mut name, mut delta, mut total): (&[u8], u64, u64) = (&[], 0, 0);
                    fields(counter, |number, field| {
                        match number {
                            1 => name = bytes(field)?,
                            2 => delta = varint(field)?,
                            3 => total = varint(field)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    self.message = Message::Counter(Span::of(whole, name), delta, total);
                }
                6 => self.message = Message::Gauge(Span::of(whole, bytes(field)?)),
                7 => {
                    let (mut name, mut start, mut stop): (&[u8], i64, i64) = (&[], 0, 0);
                    fields(bytes(field)?, |number, field| {
                        match number {
                            1 => name = bytes(field)?,
                            2 => start = varint(field)? as i64,
                            3 => stop = varint(field)? as i64,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    self.message = Message::Timer(Span::of(whole, name), start, stop);
                }
                8 => self.instance_id = Span::of(whole, bytes(field)?),
                9 => self.tags.push(entry(whole, bytes(field)?)?),
                10 => {
                    bytes(field)?;
                    self.message = Message::Event;
                }
                _ => {}
            }
            Ok(())
        })?;
        if let Message::Gauge(gauge) = self.message {
            let metrics = &mut self.metrics;
            fields(gauge.in_(whole), |number, field| {
                if number == 1 {
                    metrics.push(entry(whole, bytes(field)?)?);
                }
                Ok(())
            })?;
            for metric in &self.metrics {
                let (unit, value) = gauge_value(metric.value.in_(whole))?;
                self.readings
                    .push((metric.key, Span::of(whole, unit), value));
            }
        }
        Ok(())
    }
}

/// A `GaugeValue`'s unit and value.
fn gauge_value(encoded: &[u8]) -> Result<(&[u8], f64), DecodeError> {
    let (mut unit, mut value): (&[u8], f64) = (&[], 0.0);
    fields(encoded, |number, field| {
        match (number, field) {
            (1, field) => unit = bytes(field)?,
            (2, Field::Fixed64(bits)) => value = f64::from_bits(bits),
            (2, _) => return Err(DecodeError::Invalid("a double field of another wire type")),
            _ => {}
        }
        Ok(())
    })?;
    Ok((unit, value))
}

/// A deprecated tag's `Value`: text, integer or decimal, if any.
pub(super) enum TypedValue<'a> {
    Text(&'a [u8]),
    Integer(i64),
    Decimal(f64),
}

/// Reads a `Value` message.
pub(super) fn typed_value(encoded: &[u8]) -> Result<Option<TypedValue<'_>>, DecodeError> {
    let mut value = None;
    fields(encoded, |number, field| {
        match (number, field) {
            (1, field) => value = Some(TypedValue::Text(bytes(field)?)),
            (2, field) => value = Some(TypedValue::Integer(varint(field)? as i64)),
            (3, Field::Fixed64(bits)) => value = Some(TypedValue::Decimal(f64::from_bits(bits))),
            (3, _) => return Err(DecodeError::Invalid("a double field of another wire type")),
            _ => {}
        }
        Ok(())
    })?;
    Ok(value)
}
