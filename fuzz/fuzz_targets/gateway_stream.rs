//! Bytes of an RLP gateway response, in two chunks split where the input
//! says, through the event reader and each `data:` event's JSON into
//! ingestion. It must never panic; the events must not depend on where the
//! stream was split; and every event is counted exactly once: as a decode
//! error, or as the envelopes of its batch.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::envelope::v2::decode_batch_json;
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::source::Wire;
use cf_firehose_exporter::source::sse::{SseEvent, SseReader};
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use libfuzzer_sys::fuzz_target;

fn events(chunks: &[&[u8]]) -> Option<Vec<SseEvent>> {
    let mut reader = SseReader::default();
    let mut out = Vec::new();
    for chunk in chunks {
        reader.feed(chunk, &mut out).ok()?;
    }
    Some(out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, stream)) = input.split_first() else {
        return;
    };
    let at = usize::from(split).min(stream.len());
    let Some(whole) = events(&[stream]) else {
        return;
    };
    assert_eq!(events(&[&stream[..at], &stream[at..]]), Some(whole.clone()));
    let data: Vec<Bytes> = whole
        .into_iter()
        .filter_map(|e| match e {
            SseEvent::Data(data) => Some(data),
            _ => None,
        })
        .collect();
    let expected: u64 = data
        .iter()
        .map(|d| decode_batch_json(d).map_or(1, |b| b.batch.len() as u64))
        .sum();
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(Duration::from_secs(60), telemetry.clone()));
    let mut ingest = Ingest::new(NativeScheme::default(), store, telemetry.clone());
    ingest.batch_of(Wire::V2Json, &data);
    let counted: u64 = ["counter", "gauge", "timer", "log", "event", "none"]
        .iter()
        .map(|kind| telemetry.envelopes_received(kind).get())
        .sum::<u64>()
        + telemetry.decode_errors.get();
    assert_eq!(counted, expected);
});
