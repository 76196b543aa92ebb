//! Property tests of the ingestion entry point (decode, translate, store):
//! random bytes and mutations of the protocol vectors never panic, and every
//! frame is counted exactly once, as received or as the rejection it is.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::envelope;
use cf_firehose_exporter::envelope::EVENT_TYPE_NAMES;
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use common::{CONTAINER_METRIC, COUNTER_EVENT, VALUE_METRIC, hex};
use proptest::prelude::*;

struct Counts {
    received: u64,
    malformed: u64,
    unknown_event_type: u64,
    missing_field: u64,
}

fn counts(t: &Telemetry) -> Counts {
    Counts {
        received: EVENT_TYPE_NAMES
            .iter()
            .map(|e| t.envelopes_received(e).get())
            .sum(),
        malformed: t.decode_errors.get(),
        unknown_event_type: t.envelopes_dropped("unknown_event_type").get(),
        missing_field: t.envelopes_dropped("missing_field").get(),
    }
}

/// A mutation of a frame: flip a bit, insert or remove a byte, or cut it.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut frame: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = frame.len();
        match *m {
            Mutation::Flip(i, bit) if len > 0 => frame[i % len] ^= 1 << bit,
            Mutation::Insert(i, byte) => frame.insert(i % (len + 1), byte),
            Mutation::Remove(i) if len > 0 => {
                frame.remove(i % len);
            }
            Mutation::Truncate(i) => frame.truncate(i % (len + 1)),
            _ => {}
        }
    }
    frame
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    let vectors: Vec<Vec<u8>> = [VALUE_METRIC, CONTAINER_METRIC, COUNTER_EVENT]
        .iter()
        .map(|v| hex(v).to_vec())
        .collect();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            proptest::sample::select(vectors),
            proptest::collection::vec(mutation(), 1..6)
        )
            .prop_map(|(v, ms)| mutate(v, &ms)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_frame_is_counted_once_as_what_it_is(frames in proptest::collection::vec(frame(), 1..20)) {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(Duration::from_secs(600), telemetry.clone()));
        let mut ingest = Ingest::new(NativeScheme::default(), store, telemetry.clone());
        let now = tokio::time::Instant::now();
        for frame in &frames {
            let before = counts(&telemetry);
            ingest.frame(&bytes::Bytes::from(frame.clone()), now);
            let after = counts(&telemetry);
            let moved = (
                after.received - before.received,
                after.malformed - before.malformed,
                after.unknown_event_type - before.unknown_event_type,
                after.missing_field - before.missing_field,
            );
            let expected = match envelope::decode(frame).map_err(|e| e.reason()) {
                Ok(_) => (1, 0, 0, 0),
                Err("malformed") => (0, 1, 0, 0),
                Err("unknown_event_type") => (0, 0, 1, 0),
                Err(_) => (0, 0, 0, 1),
            };
            prop_assert_eq!(moved, expected);
        }
    }
}

#[test]
fn the_vectors_themselves_are_received() {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
    for v in [VALUE_METRIC, CONTAINER_METRIC, COUNTER_EVENT] {
        ingest.frame(&hex(v), tokio::time::Instant::now());
    }
    assert_eq!(counts(&telemetry).received, 3);
    assert_eq!(store.len(), 7);
}
