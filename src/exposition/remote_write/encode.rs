//! A `WriteRequest` written straight from the samples: the protobuf prost
//! would write for the same request (byte for byte, a property test checks),
//! without building its owned strings first, then snappy's block format.

use prost::Message;

use super::{Sample, SeriesRef, proto};

/// A request's body: `request` in protobuf, compressed in snappy's block
/// format, as the protocol asks.
pub fn encode(request: &proto::WriteRequest) -> Vec<u8> {
    compress(&request.encode_to_vec())
}

/// `raw` compressed in snappy's block format.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("a request is far below snappy's 4 GiB limit")
}

/// Reads a body [`encode`] wrote: for tests and receivers.
pub fn decode(body: &[u8]) -> Result<proto::WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    proto::WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// One label as it is written: its value may come in two parts (a family
/// name and its suffix).
#[derive(Debug, Clone, Copy)]
struct LabelRef<'a> {
    name: &'a str,
    value: [&'a str; 2],
}

impl LabelRef<'_> {
    fn value_len(&self) -> usize {
        self.value[0].len() + self.value[1].len()
    }

    /// The length of its `Label` message.
    fn encoded_len(&self) -> usize {
        string_field_len(self.name.len()) + string_field_len(self.value_len())
    }
}

/// Appends to `out` the protobuf of a `WriteRequest` of one time series per
/// sample, in order, each with `external` added (sorted by name) where the
/// series has no label of that name.
pub fn write_request(batch: &[Sample], external: &[(String, String)], out: &mut Vec<u8>) {
    let mut labels: Vec<LabelRef<'_>> = Vec::with_capacity(16);
    for sample in batch {
        labels_of(&sample.series, external, &mut labels);
        let labels_len: usize = labels
            .iter()
            .map(|label| message_field_len(label.encoded_len()))
            .sum();
        let sample_len = sample_len(sample.value, sample.timestamp_ms);
        // TimeSeries: labels = 1, samples = 2.
        out.push(0x0a);
        put_varint(out, (labels_len + message_field_len(sample_len)) as u64);
        for label in &labels {
            out.push(0x0a);
            put_varint(out, label.encoded_len() as u64);
            put_string(out, 0x0a, &[label.name]);
            put_string(out, 0x12, &label.value);
        }
        // Sample: value = 1 (double), timestamp = 2 (int64); proto3 leaves
        // out zeros, as prost does.
        out.push(0x12);
        put_varint(out, sample_len as u64);
        if sample.value != 0.0 {
            out.push(0x09);
            out.extend_from_slice(&sample.value.to_le_bytes());
        }
        if sample.timestamp_ms != 0 {
            out.push(0x10);
            put_varint(out, sample.timestamp_ms as u64);
        }
    }
}

/// The labels of `series` with `external` merged in, sorted by name.
fn labels_of<'a>(
    series: &'a SeriesRef,
    external: &'a [(String, String)],
    out: &mut Vec<LabelRef<'a>>,
) {
    out.clear();
    match series {
        SeriesRef::Stored {
            family,
            suffix,
            labels,
        } => named(family, suffix, labels, out),
        SeriesRef::Aggregate(aggregate) => {
            named(&aggregate.family, aggregate.suffix, &aggregate.labels, out);
            if let Some(le) = &aggregate.le {
                // After a label of the series of that name, if it has one.
                let at = out.partition_point(|label| label.name <= "le");
                out.insert(
                    at,
                    LabelRef {
                        name: "le",
                        value: [le, ""],
                    },
                );
            }
            add_if_absent(out, &aggregate.shard.name, &aggregate.shard.value);
        }
        SeriesRef::Labels(labels) => out.extend(labels.iter().map(|label| LabelRef {
            name: &label.name,
            value: [&label.value, ""],
        })),
    }
    for (name, value) in external {
        add_if_absent(out, name, value);
    }
}

/// Adds `name` with `value` in its place among the sorted `out`, unless a
/// label of that name is there: the series' own wins.
fn add_if_absent<'a>(out: &mut Vec<LabelRef<'a>>, name: &'a str, value: &'a str) {
    if let Err(at) = out.binary_search_by(|label| label.name.cmp(name)) {
        out.insert(
            at,
            LabelRef {
                name,
                value: [value, ""],
            },
        );
    }
}

/// `labels` (sorted) with `__name__`, `family` and `suffix`, in its place.
fn named<'a>(
    family: &'a str,
    suffix: &'a str,
    labels: &'a crate::store::StoredLabels,
    out: &mut Vec<LabelRef<'a>>,
) {
    let name = LabelRef {
        name: "__name__",
        value: [family, suffix],
    };
    let mut named = false;
    for (label, value) in labels.iter() {
        if !named && &**label > "__name__" {
            out.push(name);
            named = true;
        }
        out.push(LabelRef {
            name: label,
            value: [value, ""],
        });
    }
    if !named {
        out.push(name);
    }
}

fn sample_len(value: f64, timestamp_ms: i64) -> usize {
    let value = if value != 0.0 { 9 } else { 0 };
    let timestamp = if timestamp_ms != 0 {
        1 + varint_len(timestamp_ms as u64)
    } else {
        0
    };
    value + timestamp
}

/// The length of a string field of `len` bytes: nothing when empty, as
/// proto3 leaves out empty strings.
fn string_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { message_field_len(len) }
}

/// The length of a length-delimited field of `len` bytes with a one-byte tag.
fn message_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_string(out: &mut Vec<u8>, tag: u8, parts: &[&str]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len == 0 {
        return;
    }
    out.push(tag);
    put_varint(out, len as u64);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
}

fn varint_len(n: u64) -> usize {
    // 7 bits a byte; 0 takes one.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::Text;

    /// The request prost would encode for `batch`.
    fn prost_request(batch: &[Sample], external: &[(String, String)]) -> proto::WriteRequest {
        let mut labels = Vec::new();
        proto::WriteRequest {
            timeseries: batch
                .iter()
                .map(|sample| {
                    labels_of(&sample.series, external, &mut labels);
                    proto::TimeSeries {
                        labels: labels
                            .iter()
                            .map(|label| proto::Label {
                                name: label.name.into(),
                                value: label.value.concat(),
                            })
                            .collect(),
                        samples: vec![proto::Sample {
                            value: sample.value,
                            timestamp: sample.timestamp_ms,
                        }],
                    }
                })
                .collect(),
        }
    }

    fn stored(family: &str, suffix: &'static str, labels: &[(&str, &str)]) -> SeriesRef {
        SeriesRef::Stored {
            family: Text::new(family),
            suffix,
            labels: labels
                .iter()
                .map(|(k, v)| (Text::new(k), Text::new(v)))
                .collect::<Vec<_>>()
                .into(),
        }
    }

    #[test]
    fn the_name_and_external_labels_take_their_places_and_a_series_label_wins() {
        let series = stored(
            "requests",
            "_total",
            &[("Zone", "z1"), ("deployment", "cf"), ("origin", "gorouter")],
        );
        let external = [
            ("aa".to_string(), "x".to_string()),
            ("deployment".to_string(), "not this".to_string()),
            ("foundation".to_string(), "prod".to_string()),
        ];
        let mut labels = Vec::new();
        labels_of(&series, &external, &mut labels);
        let got: Vec<(&str, String)> = labels.iter().map(|l| (l.name, l.value.concat())).collect();
        assert_eq!(
            got,
            [
                ("Zone", "z1".to_string()),
                ("__name__", "requests_total".to_string()),
                ("aa", "x".to_string()),
                ("deployment", "cf".to_string()),
                ("foundation", "prod".to_string()),
                ("origin", "gorouter".to_string()),
            ]
        );
    }

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let batch = [
            Sample {
                series: stored("CapacityRemainingMemory", "", &[("origin", "rep")]),
                value: 1024.5,
                timestamp_ms: 1_700_000_000_123,
            },
            Sample::with_labels(
                &[("__name__", "total_requests_total")],
                7.0,
                1_700_000_000_456,
            ),
        ];
        let mut raw = Vec::new();
        write_request(&batch, &[], &mut raw);
        let body = compress(&raw);
        // Snappy's block format starts with the raw length as a varint.
        assert_eq!(usize::from(body[0] & 0x7f), raw.len() & 0x7f);
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.timeseries.len(), 2);
        let first = &decoded.timeseries[0];
        assert_eq!(
            (
                first.labels[0].name.as_str(),
                first.labels[0].value.as_str()
            ),
            ("__name__", "CapacityRemainingMemory")
        );
        assert_eq!(first.labels[1].value, "rep");
        assert_eq!(first.samples[0].value, 1024.5);
        assert_eq!(
            decoded.timeseries[1].samples[0].timestamp,
            1_700_000_000_456
        );
        assert!(decode(b"not snappy").is_err());
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            proptest::collection::btree_map("[A-Za-z_][a-z_0-9]{0,12}", "(|[ -~é]{1,150})", 0..12),
            "[a-z_]{1,40}",
            prop_oneof![Just(""), Just("_total"), Just("_bucket")],
            0..3u8,
            (
                proptest::option::of(prop_oneof![Just("0.1"), Just("+Inf"), Just("10.0")]),
                "[A-Za-z_][a-z_]{0,10}",
                "[ -~]{0,20}",
            ),
            prop_oneof![Just(0.0), Just(-0.0), any::<f64>()],
            prop_oneof![
                Just(0i64),
                any::<i64>(),
                1_600_000_000_000i64..1_900_000_000_000
            ],
        )
            .prop_map(
                |(
                    labels,
                    family,
                    suffix,
                    variant,
                    (le, shard, shard_value),
                    value,
                    timestamp_ms,
                )| {
                    let labels: Vec<(String, String)> = labels
                        .into_iter()
                        .filter(|(k, _)| k != "__name__" && k != "le")
                        .collect();
                    let stored: crate::store::StoredLabels = labels
                        .iter()
                        .map(|(k, v)| (Text::new(k), Text::new(v)))
                        .collect::<Vec<_>>()
                        .into();
                    let series = if variant == 0 {
                        SeriesRef::Stored {
                            family: Text::new(&family),
                            suffix,
                            labels: stored,
                        }
                    } else if variant == 1 && shard != "__name__" && shard != "le" {
                        SeriesRef::Aggregate(Box::new(super::super::AggregateRef {
                            family: family.as_str().into(),
                            suffix,
                            labels: stored,
                            le: le.map(Into::into),
                            shard: std::sync::Arc::new(super::super::ShardLabel {
                                name: shard,
                                value: shard_value,
                            }),
                        }))
                    } else {
                        let name = format!("{family}{suffix}");
                        let mut all: Vec<(&str, &str)> = labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        all.push(("__name__", &name));
                        return Sample::with_labels(&all, value, timestamp_ms);
                    };
                    Sample {
                        series,
                        value,
                        timestamp_ms,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_request_is_the_one_prost_writes(
            batch in proptest::collection::vec(sample(), 0..20),
            external in proptest::collection::btree_map("[a-z_]{1,10}", "[ -~]{1,20}", 0..3),
        ) {
            let external: Vec<(String, String)> = external.into_iter().collect();
            let mut ours = Vec::new();
            write_request(&batch, &external, &mut ours);
            let theirs = prost_request(&batch, &external);
            prop_assert_eq!(&ours, &theirs.encode_to_vec());
            // And it reads back as the labels it was given, sorted.
            let decoded = proto::WriteRequest::decode(ours.as_slice()).unwrap();
            for series in &decoded.timeseries {
                prop_assert!(series.labels.windows(2).all(|w| w[0].name < w[1].name));
            }
            prop_assert_eq!(decoded.timeseries.len(), batch.len());
        }
    }

    #[test]
    fn varints_have_their_length() {
        for n in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
        }
    }
}
