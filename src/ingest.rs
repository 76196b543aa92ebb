//! Ingestion: frames from a source are decoded, translated under the naming
//! scheme and applied to the store, with every rejection counted.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::envelope::{self, DecodeError, EnvelopeRef};
use crate::filter::Filters;
use crate::naming::native::NativeScheme;
use crate::source::FrameReceiver;
use crate::store::{FamilyCache, SeriesStore};
use crate::telemetry::Telemetry;

/// Counters looked up once, not per envelope.
#[derive(Debug, Clone)]
struct Counters {
    /// By event type number 4..=9; index 0 for anything else.
    received: [Counter; 7],
    unknown_event_type: Counter,
    missing_field: Counter,
    decode_errors: Counter,
}

impl Counters {
    fn new(t: &Telemetry) -> Self {
        let received =
            [0, 4, 5, 6, 7, 8, 9].map(|n| t.envelopes_received(envelope::event_type_name(n)));
        Self {
            received,
            unknown_event_type: t.envelopes_dropped("unknown_event_type"),
            missing_field: t.envelopes_dropped("missing_field"),
            decode_errors: t.decode_errors.clone(),
        }
    }
}

/// Decodes, translates and stores frames. Clones share the store and
/// counters, so that several connections can each have their own.
#[derive(Debug, Clone)]
pub struct Ingest {
    scheme: NativeScheme,
    store: Arc<SeriesStore>,
    telemetry: Telemetry,
    counters: Counters,
    filters: Filters,
    families: FamilyCache,
}

impl Ingest {
    /// Ingests into `store` under `scheme`.
    pub fn new(scheme: NativeScheme, store: Arc<SeriesStore>, telemetry: Telemetry) -> Self {
        let counters = Counters::new(&telemetry);
        Self {
            scheme,
            store,
            telemetry,
            counters,
            filters: Filters::default(),
            families: FamilyCache::default(),
        }
    }

    /// Leaves out what `filters` exclude, before the store.
    pub fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Handles one frame: a malformed or unusable one is counted and skipped.
    /// The envelope's strings are read in place, not copied.
    pub fn frame(&mut self, frame: &[u8], now: tokio::time::Instant) {
        envelope::with_checked(frame, |checked| match checked {
            Ok(envelope) => self.envelope(&envelope, now),
            Err(error) => {
                let counter = match error {
                    DecodeError::Malformed(_) | DecodeError::InvalidUtf8(_) => {
                        &self.counters.decode_errors
                    }
                    DecodeError::UnknownEventType(_) => &self.counters.unknown_event_type,
                    DecodeError::MissingField { .. } => &self.counters.missing_field,
                };
                counter.inc();
            }
        })
    }

    fn envelope(&mut self, envelope: &EnvelopeRef<'_>, now: tokio::time::Instant) {
        let slot = match envelope.event_type as i32 {
            n @ 4..=9 => (n - 3) as usize,
            _ => 0,
        };
        self.counters.received[slot].inc();
        if envelope.is_dropped_messages_alert() {
            self.telemetry.slow_consumer_alerts.inc();
            tracing::warn!(
                origin = %envelope.origin,
                "Doppler reports dropping messages for this consumer: {}",
                crate::source::slow_consumer::ADVICE
            );
        }
        if !self.filters.keeps_envelope(envelope) {
            self.telemetry.envelopes_filtered.inc();
            return;
        }
        let (filters, store, families) = (&self.filters, &self.store, &mut self.families);
        let (mut yielded, mut kept) = (0, 0);
        self.scheme.translate_each(envelope, |update| {
            yielded += 1;
            if filters.filters_names() && !filters.keeps_name(&update.sample_name()) {
                return;
            }
            kept += 1;
            store.apply_cached(&update, now, families);
        });
        if yielded > 0 && kept == 0 {
            self.telemetry.envelopes_filtered.inc();
        }
    }

    /// Handles a batch and records the time of its arrival.
    pub fn batch(&mut self, batch: &[Bytes]) {
        let now = tokio::time::Instant::now();
        for frame in batch {
            self.frame(frame, now);
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.telemetry
            .last_envelope_timestamp
            .set(unix.as_secs_f64());
    }

    /// Consumes batches until every sender is gone.
    pub async fn run(mut self, mut frames: FrameReceiver) {
        while let Some(batch) = frames.recv().await {
            self.batch(&batch.frames);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::envelope::events::ValueMetric;
    use crate::envelope::{Envelope, with_checked};
    use prost::Message;

    /// Decoding borrows the frame's bytes for one call only: what the store
    /// keeps is its own, and overwriting or freeing the frame afterwards
    /// changes nothing in it.
    #[test]
    fn the_store_keeps_nothing_of_the_frame() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry);
        let mut envelope = Envelope {
            origin: "rep".into(),
            event_type: 6,
            deployment: Some("cf".into()),
            value_metric: Some(ValueMetric {
                name: "CapacityRemainingMemory".into(),
                value: 42.0,
                unit: "MiB".into(),
            }),
            ..Default::default()
        };
        envelope.tags.insert("zone".into(), "z1".into());
        let mut frame = envelope.encode_to_vec();
        ingest.frame(&frame, tokio::time::Instant::now());
        frame.iter_mut().for_each(|b| *b = b'#');
        drop(frame);
        // Reuse the freed memory with other bytes of the same size.
        let _other = vec![b'!'; envelope.encoded_len()];

        let families = store.snapshot();
        assert_eq!(families.len(), 1);
        assert_eq!(&*families[0].name, "CapacityRemainingMemory");
        let (labels, value) = &families[0].series[0];
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            labels,
            [
                ("bosh_deployment", "cf"),
                ("origin", "rep"),
                ("unit", "MiB"),
                ("zone", "z1")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(*value, 42.0);
        // And a frame decoded twice gives the same envelope both times.
        let frame = envelope.encode_to_vec();
        let first = with_checked(&frame, |e| format!("{:?}", e.unwrap()));
        let second = with_checked(&frame, |e| format!("{:?}", e.unwrap()));
        assert_eq!(first, second);
    }
}
