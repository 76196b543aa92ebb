//! One frame through the whole ingestion entry point: decoding, translation
//! under the native naming scheme, and the store. It must never panic, must
//! count the frame exactly once, and the second time, when the envelope is
//! known, must update what a fresh translation would.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::envelope::{EVENT_TYPE_NAMES, decode};
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::NamingScheme;
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

/// Each family's name and its series' labels and value bits, in order.
fn contents(store: &SeriesStore) -> Vec<(String, Vec<(Vec<(String, String)>, u64)>)> {
    store
        .snapshot()
        .into_iter()
        .map(|family| {
            let series = family
                .series
                .iter()
                .map(|(labels, value)| {
                    let labels = labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (labels, value.to_bits())
                })
                .collect();
            (family.name.to_string(), series)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
    let now = tokio::time::Instant::now();
    ingest.frame(data, now);
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
    // The second time the envelope is known: it must land where a fresh
    // translation puts it, counted once more.
    ingest.frame(data, now);
    assert_eq!(counted(&telemetry), 2);
    let fresh = SeriesStore::new(Duration::from_secs(600), Telemetry::new());
    if let Ok(envelope) = decode(data) {
        let mut updates = Vec::new();
        for _ in 0..2 {
            updates.clear();
            NativeScheme::default().translate(&envelope, &mut updates);
            for update in updates.drain(..) {
                fresh.apply(update, now);
            }
        }
    }
    assert_eq!(contents(&store), contents(&fresh));
});
