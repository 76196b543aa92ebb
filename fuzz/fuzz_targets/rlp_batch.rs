//! Bytes of an RLP message, as one `EnvelopeBatch` into ingestion, which
//! reads it in place. It must never panic; every envelope read is counted
//! exactly once, as what it carries or as a decode error, and a batch that
//! breaks after them once more; and the batch read a second time (now
//! known) stores the same series.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::envelope::v2::{Kind, for_each_in_batch};
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::source::Wire;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut envelopes = 0u64;
    let scans = for_each_in_batch(input, |_| envelopes += 1).is_ok();
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
    let batch = [Bytes::copy_from_slice(input)];
    ingest.batch_of(Wire::V2Proto, &batch);
    let received = || -> u64 {
        Kind::ALL
            .iter()
            .map(|kind| telemetry.envelopes_received(kind.name()).get())
            .sum()
    };
    let errors = telemetry.decode_errors.get();
    // The envelopes read before a batch breaks are kept; the break is
    // counted once more.
    assert_eq!(received() + errors, envelopes + u64::from(!scans));
    let first = store.snapshot();
    ingest.batch_of(Wire::V2Proto, &batch);
    assert_eq!(store.snapshot().len(), first.len());
    assert_eq!(telemetry.decode_errors.get(), 2 * errors);
});
