//! One frame through the whole ingestion entry point: decoding, translation
//! under the native naming scheme, and the store. It must never panic, and
//! must count the frame exactly once.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::envelope::EVENT_TYPE_NAMES;
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use libfuzzer_sys::fuzz_target;


fn counted(t: &Telemetry) -> u64 {
    EVENT_TYPE_NAMES
        .iter()
        .map(|e| t.envelopes_received(e).get())
        .sum::<u64>()
        + t.decode_errors.get()
        + t.envelopes_dropped("unknown_event_type").get()
        + t.envelopes_dropped("missing_field").get()
}

fuzz_target!(|data: &[u8]| {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(Duration::from_secs(600), telemetry.clone()));
    let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
    ingest.frame(data, tokio::time::Instant::now());
    assert_eq!(counted(&telemetry), 1);
    // The store must hold only what the exposition can write.
    for family in store.snapshot() {
        assert!(!family.name.is_empty());
        for (labels, _) in &family.series {
            for (name, value) in labels.iter() {
                assert!(!name.is_empty() && !value.is_empty());
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            }
        }
    }
});
