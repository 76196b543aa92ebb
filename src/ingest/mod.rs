//! Ingestion: frames from a source are decoded, translated under the naming
//! scheme and applied to the store, with every rejection counted.

pub mod filter;
mod known;
mod tap;

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::envelope::v2::{Kind, WireV2};
use crate::envelope::{self, DecodeError, EnvelopeRef, Fields, Payload, WireEnvelope};
use crate::ingest::filter::Filters;
use crate::naming::NamingScheme;
use crate::naming::native::NativeScheme;
use crate::source::{FrameReceiver, Wire};
use crate::store::{FamilyCache, SeriesStore};
use crate::telemetry::{GoKind, Telemetry};
use known::{KnownEnvelopes, REMEMBERED_UPDATES_MAX, bit, known_values};
use tap::Tap;

/// Counters looked up once, not per envelope.
#[derive(Debug, Clone)]
struct Counters {
    /// By event type number 4..=9; index 0 for anything else.
    received: [Counter; 7],
    /// v2 envelopes by message, in the order of [`Kind::ALL`].
    received_v2: [Counter; 6],
    unknown_event_type: Counter,
    missing_field: Counter,
    decode_errors: Counter,
    /// Envelopes of each [`GoKind`] received when the last batch ended.
    seen: [u64; 4],
}

impl Counters {
    /// Counts a well-formed envelope, and reports a Doppler's alert that it
    /// drops messages for this consumer.
    fn received(&self, fields: &Fields<'_>, telemetry: &Telemetry) {
        let slot = match fields.event_type as i32 {
            n @ 4..=9 => (n - 3) as usize,
            _ => 0,
        };
        self.received[slot].inc();
        if fields.is_dropped_messages_alert() {
            telemetry.slow_consumer_alert();
            tracing::warn!(
                origin = %fields.origin,
                "Doppler reports dropping messages for this consumer: {}",
                crate::source::slow_consumer::ADVICE
            );
        }
    }

    fn new(t: &Telemetry) -> Self {
        let received =
            [0, 4, 5, 6, 7, 8, 9].map(|n| t.envelopes_received(envelope::event_type_name(n)));
        let received_v2 = Kind::ALL.map(|kind| t.envelopes_received(kind.name()));
        Self {
            received,
            received_v2,
            unknown_event_type: t.envelopes_dropped("unknown_event_type"),
            missing_field: t.envelopes_dropped("missing_field"),
            decode_errors: t.decode_errors.clone(),
            seen: [0; 4],
        }
    }

    /// Envelopes received of `kind`, by this and every other task.
    fn of_kind(&self, kind: GoKind) -> u64 {
        let v1 = |event_type: i32| self.received[(event_type - 3) as usize].get();
        let v2 = |kind: Kind| self.received_v2[kind.index()].get();
        match kind {
            GoKind::ContainerMetric => v1(9),
            GoKind::CounterEvent => v1(7) + v2(Kind::Counter),
            GoKind::ValueMetric => v1(6) + v2(Kind::Gauge),
            GoKind::HttpStartStop => v1(4) + v2(Kind::Timer),
        }
    }
}

/// Applies `update`, and hands what it set to the tap when it is on.
fn apply(
    store: &SeriesStore,
    update: &crate::naming::Update<'_>,
    now: tokio::time::Instant,
    families: &mut FamilyCache,
    tap: &mut Tap,
) {
    if !tap.on() {
        store.apply_cached(update, now, families);
    } else if let Ok(handle) = store.apply_tracked(update, now, families) {
        tap.record(&handle, update.value);
    }
}

/// Decodes, translates and stores frames under the naming scheme `S`.
/// Clones share the store and counters, so that several connections can
/// each have their own.
#[derive(Debug, Clone)]
pub struct Ingest<S = NativeScheme> {
    scheme: S,
    store: Arc<SeriesStore>,
    telemetry: Telemetry,
    counters: Counters,
    filters: Filters,
    families: FamilyCache,
    known: KnownEnvelopes,
    /// A v2 envelope of the gateway's, encoded again.
    encoded: Vec<u8>,
    /// Samples for remote-write.
    tap: Tap,
}

impl<S: NamingScheme> Ingest<S> {
    /// Ingests into `store` under `scheme`.
    pub fn new(scheme: S, store: Arc<SeriesStore>, telemetry: Telemetry) -> Self {
        let counters = Counters::new(&telemetry);
        Self {
            scheme,
            store,
            telemetry,
            counters,
            filters: Filters::default(),
            families: FamilyCache::default(),
            known: KnownEnvelopes::default(),
            encoded: Vec::new(),
            tap: Tap::default(),
        }
    }

    /// Hands every value an envelope sets to `forwarding`, at the
    /// envelope's time.
    pub fn with_forwarding(
        mut self,
        forwarding: crate::exposition::remote_write::Forwarding,
    ) -> Self {
        self.tap = Tap::new(forwarding);
        self
    }

    /// Leaves out what `filters` exclude, before the store.
    pub fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Handles one frame: a malformed or unusable one is counted and skipped.
    /// The envelope's strings are read in place, not copied.
    pub fn frame(&mut self, frame: &[u8], now: tokio::time::Instant) {
        let result = envelope::with_checked_wire(frame, |checked| {
            checked.and_then(|envelope| self.envelope(envelope, now))
        });
        if let Err(error) = result {
            let counter = match error {
                DecodeError::Malformed(_)
                | DecodeError::Invalid(_)
                | DecodeError::InvalidUtf8(_) => &self.counters.decode_errors,
                DecodeError::UnknownEventType(_) => &self.counters.unknown_event_type,
                DecodeError::MissingField { .. } => &self.counters.missing_field,
            };
            counter.inc();
        }
    }

    /// Handles a checked envelope. An envelope known by its identity is
    /// applied without its tags being decoded: they are the bytes of tags
    /// that decoded before. Any other has its tags decoded and checked
    /// first, and is counted as received only if they are well formed.
    fn envelope(
        &mut self,
        wire: WireEnvelope<'_>,
        now: tokio::time::Instant,
    ) -> Result<(), DecodeError> {
        let fields = wire.fields();
        let kept = self.filters.keeps_envelope(fields);
        // Whether the envelope may be known, or remembered.
        let rememberable =
            kept && !self.filters.filters_names() && !matches!(fields.payload, Payload::Other);
        let (scheme, store, known) = (&self.scheme, &self.store, &mut self.known);
        let tap = &mut self.tap;
        tap.envelope(wire.timestamp().unwrap_or(0));
        let mut hash = None;
        // Updates whose series has expired since, by position.
        let mut stale = 0u64;
        if rememberable {
            known.follow(store.generation());
            scheme.identity(&wire, &mut known.identity);
            let identity = known.hash();
            hash = Some(identity);
            if let Some(entry) = known.get(identity) {
                self.counters.received(fields, &self.telemetry);
                let mut apply = known_values(store, entry, &mut stale, tap, now);
                scheme.values_each(fields, &mut apply);
                drop(apply);
                if stale == 0 {
                    return Ok(());
                }
                known.remove(identity);
            }
        }
        let envelope = match wire.sorted() {
            Ok(envelope) => envelope,
            // Counted as received already, with the same tags bytes that
            // decoded when the envelope was remembered: this cannot fail.
            Err(_) if stale != 0 => return Ok(()),
            Err(error) => return Err(error),
        };
        let families = &mut self.families;
        if stale != 0 {
            // Counted already: only the updates whose series went are left.
            let mut position = 0;
            scheme.translate_each(&envelope, |update| {
                if stale & bit(position) != 0 {
                    apply(store, &update, now, families, tap);
                }
                position += 1;
            });
            return Ok(());
        }
        self.counters.received(&envelope, &self.telemetry);
        if !kept {
            self.telemetry.envelopes_filtered.inc();
            let event_type = envelope::event_type_name(envelope.event_type as i32);
            self.telemetry.kinds.filtered(event_type);
            return Ok(());
        }
        if self.filters.filters_names() {
            self.translate_filtered(&envelope, now);
            return Ok(());
        }
        let Some(hash) = hash.filter(|_| known.has_room()) else {
            scheme.translate_each(&envelope, |update| {
                apply(store, &update, now, families, tap);
            });
            return Ok(());
        };
        let (mut series, mut complete) = (Vec::with_capacity(5), true);
        scheme.translate_each(&envelope, |update| {
            match store.apply_tracked(&update, now, families) {
                Ok(handle) => {
                    tap.record(&handle, update.value);
                    series.push(handle)
                }
                Err(_) => complete = false,
            }
        });
        if complete && !series.is_empty() && series.len() <= REMEMBERED_UPDATES_MAX {
            known.insert(hash, series);
        }
        Ok(())
    }

    /// Handles one v2 `EnvelopeBatch` in JSON: one that does not decode is
    /// counted as a decode error and skipped. Each envelope is encoded and
    /// read as the RLP's are, so that both share one path.
    pub fn v2_json(&mut self, json: &[u8], now: tokio::time::Instant) {
        match envelope::v2::decode_batch_json(json) {
            Ok(batch) => {
                let mut encoded = std::mem::take(&mut self.encoded);
                for envelope in &batch.batch {
                    encoded.clear();
                    // A Vec grows as needed: encoding into one cannot fail.
                    let _ = prost::Message::encode(envelope, &mut encoded);
                    self.v2_encoded(&encoded, now);
                }
                self.encoded = encoded;
            }
            Err(_) => {
                self.counters.decode_errors.inc();
            }
        }
    }

    /// Handles one v2 `EnvelopeBatch` in protobuf, as the RLP sends it: one
    /// that does not decode is counted as a decode error and skipped.
    pub fn v2_proto(&mut self, frame: &[u8], now: tokio::time::Instant) {
        let decoded = envelope::v2::for_each_in_batch(frame, |envelope| {
            self.v2_encoded(envelope, now);
        });
        if decoded.is_err() {
            self.counters.decode_errors.inc();
        }
    }

    /// Handles one encoded v2 envelope: one that does not decode, or whose
    /// strings are not UTF-8, is counted as a decode error and skipped.
    pub fn v2_encoded(&mut self, encoded: &[u8], now: tokio::time::Instant) {
        let result = envelope::v2::with_wire(encoded, |wire| {
            wire.and_then(|wire| self.v2_envelope(&wire, now))
        });
        if result.is_err() {
            self.counters.decode_errors.inc();
        }
    }

    /// Handles a checked v2 envelope: counted by its kind of message, then
    /// each metric it carries filtered, translated and stored as a v1
    /// metric is. An envelope known by its identity is applied without its
    /// tags being decoded, as for v1 ([`Ingest::envelope`]).
    fn v2_envelope(
        &mut self,
        wire: &WireV2<'_>,
        now: tokio::time::Instant,
    ) -> Result<(), DecodeError> {
        let received = &self.counters.received_v2[wire.kind().index()];
        if !wire.gives_series() {
            received.inc();
            return Ok(());
        }
        let (scheme, store, known) = (&self.scheme, &self.store, &mut self.known);
        let tap = &mut self.tap;
        tap.envelope(wire.timestamp());
        // Only metrics are remembered: a timer's tags name its request (its
        // id, its URI), never the same twice, and a log's stream is not in
        // the identity; both go the long way.
        let rememberable = wire.carries_metrics() && !self.filters.filters_names();
        let mut hash = None;
        // Updates whose series has expired since, by position.
        let mut stale = 0u64;
        if rememberable {
            known.follow(store.generation());
            let hashers = &known.hashers;
            wire.identity(&mut known.identity, |entry| {
                [hashers.0.hash_one(entry), hashers.1.hash_one(entry)]
            });
            let identity = known.hash();
            hash = Some(identity);
            if let Some(entry) = known.get(identity) {
                let mut apply = known_values(store, entry, &mut stale, tap, now);
                wire.payloads(|event_type, payload| {
                    scheme.values_each(&Fields::of_payload(event_type, payload), &mut apply);
                });
                drop(apply);
                received.inc();
                if stale == 0 {
                    return Ok(());
                }
                known.remove(identity);
            }
        }
        let (filters, families) = (&self.filters, &mut self.families);
        let remember = hash.filter(|_| stale == 0 && known.has_room() && !wire.repeats_a_key());
        let (mut metrics, mut kept, mut position) = (0, 0, 0);
        let (mut series, mut complete) = (Vec::new(), true);
        wire.metrics(|metric| {
            metrics += 1;
            if !filters.keeps_envelope(metric) {
                complete = false;
                return;
            }
            let mut names_kept = !filters.filters_names();
            scheme.translate_each(metric, |update| {
                let at = position;
                position += 1;
                if stale != 0 {
                    // Applied already but for the series that went.
                    if stale & bit(at) != 0 {
                        apply(store, &update, now, families, tap);
                    }
                    return;
                }
                if filters.filters_names() && !filters.keeps_name(&update.sample_name()) {
                    return;
                }
                names_kept = true;
                if remember.is_none() {
                    apply(store, &update, now, families, tap);
                    return;
                }
                match store.apply_tracked(&update, now, families) {
                    Ok(handle) => {
                        tap.record(&handle, update.value);
                        series.push(handle)
                    }
                    Err(_) => complete = false,
                }
            });
            kept += usize::from(names_kept);
        })?;
        if stale != 0 {
            // Counted already.
            return Ok(());
        }
        received.inc();
        if metrics > 0 && kept == 0 {
            self.telemetry.envelopes_filtered.inc();
            self.telemetry.kinds.filtered(wire.kind().name());
        }
        if let Some(hash) = remember
            && complete
            && !series.is_empty()
            && series.len() <= REMEMBERED_UPDATES_MAX
        {
            known.insert(hash, series);
        }
        Ok(())
    }

    /// Translates and stores an envelope when metric names are filtered.
    fn translate_filtered(&mut self, envelope: &EnvelopeRef<'_>, now: tokio::time::Instant) {
        let (filters, store, families) = (&self.filters, &self.store, &mut self.families);
        let tap = &mut self.tap;
        let (mut yielded, mut kept) = (0, 0);
        self.scheme.translate_each(envelope, |update| {
            yielded += 1;
            if !filters.keeps_name(&update.sample_name()) {
                return;
            }
            kept += 1;
            apply(store, &update, now, families, tap);
        });
        if yielded > 0 && kept == 0 {
            self.telemetry.envelopes_filtered.inc();
            let event_type = envelope::event_type_name(envelope.event_type as i32);
            self.telemetry.kinds.filtered(event_type);
        }
    }

    /// Handles a batch of v1 frames and records the time of its arrival.
    pub fn batch(&mut self, batch: &[Bytes]) {
        self.batch_of(Wire::V1, batch);
    }

    /// Handles a batch of frames of `wire` and records the time of its arrival.
    pub fn batch_of(&mut self, wire: Wire, batch: &[Bytes]) {
        let now = tokio::time::Instant::now();
        self.tap.batch();
        for frame in batch {
            match wire {
                Wire::V1 => self.frame(frame, now),
                Wire::V2Json => self.v2_json(frame, now),
                Wire::V2Proto => self.v2_proto(frame, now),
            }
        }
        self.tap.flush();
        let unix = crate::telemetry::unix_now();
        self.telemetry.last_envelope_timestamp.set(unix);
        // The kinds that arrived in this batch, for the Go exporter's
        // self metrics: a few loads per batch, not a clock per envelope.
        for kind in GoKind::ALL {
            let seen = self.counters.of_kind(kind);
            if seen != self.counters.seen[kind.index()] {
                self.counters.seen[kind.index()] = seen;
                self.telemetry.kinds.received_at(kind, unix);
            }
        }
    }

    /// Consumes batches until every sender is gone.
    pub async fn run(mut self, mut frames: FrameReceiver) {
        while let Some(batch) = frames.recv().await {
            self.batch_of(batch.wire, &batch.frames);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::envelope::events::{ContainerMetric, CounterEvent, ValueMetric};
    use crate::envelope::vectors::tag_field;
    use crate::envelope::{Envelope, with_checked};
    use crate::naming::{LabelSet, MetricKind, Update, Value};
    use prost::Message;

    /// One tag as a map entry on the wire, to be appended to a frame.
    fn tag_entry(key: &str, value: &str) -> Vec<u8> {
        tag_field(key.as_bytes(), value.as_bytes())
    }

    /// What a test stream does next.
    #[derive(Debug, Clone)]
    enum Step {
        /// A frame and how many seconds pass before it.
        Frame(Vec<u8>, u64),
        /// The sweeper runs.
        Sweep,
    }

    fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
        use proptest::prelude::*;
        let pick = |values: &'static [&'static str]| prop::sample::select(values.to_vec());
        let tags = prop::collection::vec(
            (
                pick(&[
                    "a",
                    "b",
                    "source_id",
                    "instance_id",
                    "origin",
                    "__x",
                    "bad.key",
                    "unit",
                ]),
                pick(&["1", "2", "", "\u{ff}"]),
            ),
            0..5,
        );
        let payload = prop_oneof![
            (pick(&["m1", "m.2"]), -5.0..5.0f64, pick(&["", "B"])).prop_map(
                |(name, value, unit)| {
                    (
                        6,
                        Some(ValueMetric {
                            name: name.into(),
                            value,
                            unit: unit.into(),
                        }),
                        None,
                        None,
                    )
                }
            ),
            (
                pick(&["c1", "c1_total", "m1"]),
                0..100u64,
                prop::option::of(0..1000u64)
            )
                .prop_map(|(name, delta, total)| {
                    (
                        7,
                        None,
                        Some(CounterEvent {
                            name: name.into(),
                            delta,
                            total,
                        }),
                        None,
                    )
                }),
            (
                pick(&["app1", "app2"]),
                0..2i32,
                prop::option::of(1..10u64),
                prop::option::of(1..10u64)
            )
                .prop_map(|(app, instance, memory_quota, disk_quota)| {
                    (
                        9,
                        None,
                        None,
                        Some(ContainerMetric {
                            application_id: app.into(),
                            instance_index: instance,
                            cpu_percentage: f64::from(instance) + 0.5,
                            memory_bytes: 7,
                            disk_bytes: 9,
                            memory_bytes_quota: memory_quota,
                            disk_bytes_quota: disk_quota,
                        }),
                    )
                }),
        ];
        let frame = (
            pick(&["rep", "gorouter"]),
            prop::option::of(pick(&["cf", ""])),
            pick(&["z1/0", "z1/1"]),
            payload,
            tags,
            0..400u64,
        )
            .prop_map(|(origin, deployment, index, payload, tags, after)| {
                let (event_type, value_metric, counter_event, container_metric) = payload;
                let envelope = Envelope {
                    origin: origin.into(),
                    event_type,
                    deployment: deployment.map(Into::into),
                    index: Some(index.into()),
                    value_metric,
                    counter_event,
                    container_metric,
                    ..Default::default()
                };
                let mut frame = envelope.encode_to_vec();
                for (key, value) in tags {
                    // "\u{ff}" stands for a value that is not UTF-8.
                    frame.extend(match value {
                        "\u{ff}" => tag_field(key.as_bytes(), &[0xff]),
                        _ => tag_entry(key, value),
                    });
                }
                Step::Frame(frame, after)
            });
        let step = prop_oneof![10 => frame, 1 => Just(Step::Sweep)];
        prop::collection::vec(step, 1..60)
    }

    /// Envelopes seen before go to the series they went to, without their
    /// labels being built again: whatever the stream (tags in any order or
    /// sent twice, counters with and without totals, container metrics with
    /// and without quotas, names taken by another type, series expiring in
    /// between, tags that are not UTF-8), the store ends as when every update
    /// is translated afresh, and every frame is counted as what it is.
    #[test]
    fn known_envelopes_update_the_series_a_fresh_translation_would() {
        use proptest::prelude::*;
        let runner_config = ProptestConfig {
            cases: 500,
            ..ProptestConfig::default()
        };
        proptest!(runner_config, |(steps in steps(), environment in any::<bool>())| {
            let scheme = NativeScheme::new(environment.then(|| "prod".to_string()))
                .with_drop_tags(["b".to_string()]);
            let telemetry = Telemetry::new();
            let expiration = Duration::from_secs(600);
            let store = Arc::new(SeriesStore::new(expiration, telemetry.clone()));
            let fresh = SeriesStore::new(expiration, Telemetry::new());
            let mut ingest = Ingest::new(scheme.clone(), store.clone(), telemetry);
            let mut now = tokio::time::Instant::now();
            let mut updates = Vec::new();
            let (mut received, mut malformed) = (0, 0);
            for step in steps {
                match step {
                    Step::Frame(frame, after) => {
                        now += Duration::from_secs(after);
                        ingest.frame(&frame, now);
                        match envelope::decode(&frame) {
                            Ok(_) => received += 1,
                            Err(_) => malformed += 1,
                        }
                        if let Ok(envelope) = envelope::decode(&frame) {
                            updates.clear();
                            scheme.translate(&envelope, &mut updates);
                            for update in updates.drain(..) {
                                fresh.apply(update, now);
                            }
                        }
                    }
                    Step::Sweep => {
                        prop_assert_eq!(store.sweep(now), fresh.sweep(now));
                    }
                }
            }
            prop_assert_eq!(store.snapshot(), fresh.snapshot());
            prop_assert_eq!(store.len(), fresh.len());
            let received_total: u64 = ingest.counters.received.iter().map(Counter::get).sum();
            prop_assert_eq!(received_total, received);
            prop_assert_eq!(ingest.counters.decode_errors.get(), malformed);
        });
    }

    /// A scheme that makes [`MANY`] gauges of each value metric, to try
    /// envelopes that yield more updates than a byte has bits.
    #[derive(Debug, Clone, Default)]
    struct Many;

    const MANY: usize = 12;

    const MANY_NAMES: [&str; MANY] = [
        "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11",
    ];

    impl NamingScheme for Many {
        fn translate_each(&self, envelope: &EnvelopeRef<'_>, mut apply: impl FnMut(Update<'_>)) {
            let Payload::Value { name, value, .. } = envelope.payload else {
                return;
            };
            let labels = LabelSet::from_sorted(Vec::new());
            for (i, family) in MANY_NAMES.iter().enumerate() {
                apply(Update {
                    family,
                    kind: MetricKind::Gauge,
                    original: name,
                    labels: &labels,
                    value: Value::Set(value + i as f64),
                    buckets: &[],
                });
            }
        }

        fn values_each(&self, fields: &Fields<'_>, mut apply: impl FnMut(Value)) {
            if let Payload::Value { value, .. } = fields.payload {
                (0..MANY).for_each(|i| apply(Value::Set(value + i as f64)));
            }
        }

        fn identity(&self, envelope: &WireEnvelope<'_>, out: &mut Vec<u8>) {
            NativeScheme::default().identity(envelope, out);
        }
    }

    /// An envelope of more than eight updates is remembered, and when all
    /// its series went while it was known, every one is created again.
    #[test]
    fn an_envelope_may_yield_more_updates_than_a_byte_has_bits() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let mut ingest = Ingest::new(Many, store.clone(), telemetry);
        let frame = |value: f64| {
            Envelope {
                origin: "o".into(),
                event_type: 6,
                value_metric: Some(ValueMetric {
                    name: "v".into(),
                    value,
                    unit: String::new(),
                }),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let values = |store: &SeriesStore| -> Vec<(String, f64)> {
            store
                .snapshot()
                .iter()
                .map(|f| (f.name.to_string(), f.series[0].1))
                .collect()
        };
        let expected = |base: f64| -> Vec<(String, f64)> {
            let mut all: Vec<_> = (0..MANY)
                .map(|i| (MANY_NAMES[i].to_string(), base + i as f64))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        let start = tokio::time::Instant::now();
        ingest.frame(&frame(1.0), start);
        assert_eq!(ingest.known.entries.len(), 1, "remembered");
        ingest.frame(&frame(10.0), start);
        assert_eq!(values(&store), expected(10.0));
        // Every series goes while the task still holds the generation.
        let later = start + Duration::from_secs(601);
        assert_eq!(store.sweep(later), MANY);
        ingest.known.generation = store.generation();
        ingest.frame(&frame(20.0), later);
        assert_eq!(store.len(), MANY);
        assert_eq!(values(&store), expected(20.0));
        ingest.frame(&frame(30.0), later);
        assert_eq!(values(&store), expected(30.0));
        assert_eq!(ingest.known.entries.len(), 1, "remembered again");
    }

    /// A v2 batch from the gateway stores what the v1 envelopes Doppler
    /// makes of it store, and every envelope and bad line is counted.
    #[test]
    fn v2_json_batches_store_what_their_v1_conversions_store() {
        let json = br#"{"batch":[
            {"timestamp":"1","source_id":"gorouter","instance_id":"i-1","tags":{"origin":"gorouter","deployment":"cf","job":"router","index":"r0","ip":"10.0.0.1"},"counter":{"name":"total_requests","delta":"3","total":"120"}},
            {"source_id":"f47ac10b-58cc-4372-a567-0e02b2c3d479","instance_id":"1","tags":{"origin":"rep","app_name":"web"},"gauge":{"metrics":{"cpu":{"unit":"percentage","value":3.5},"memory":{"unit":"bytes","value":1000},"disk":{"unit":"bytes","value":2000},"memory_quota":{"unit":"bytes","value":4000},"disk_quota":{"unit":"bytes","value":8000}}}},
            {"source_id":"rep","tags":{"origin":"rep"},"gauge":{"metrics":{"CapacityRemainingMemory":{"unit":"MiB","value":1024},"numGoRoutines":{"unit":"","value":50}}}},
            {"source_id":"gorouter","timer":{"name":"http","start":"1","stop":"2"}}
        ]}"#;
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
        let frames = [Bytes::from_static(json), Bytes::from_static(b"not json")];
        ingest.batch_of(Wire::V2Json, &frames);
        assert_eq!(telemetry.envelopes_received("counter").get(), 1);
        assert_eq!(telemetry.envelopes_received("gauge").get(), 2);
        assert_eq!(telemetry.envelopes_received("timer").get(), 1);
        assert_eq!(ingest.counters.decode_errors.get(), 1);
        assert_eq!(store.len(), 1 + 5 + 2);

        let v1_telemetry = Telemetry::new();
        let v1_store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            v1_telemetry.clone(),
        ));
        let mut v1 = Ingest::new(NativeScheme::default(), v1_store.clone(), v1_telemetry);
        let batch = envelope::v2::decode_batch_json(json).unwrap();
        let frames: Vec<Bytes> = batch
            .batch
            .iter()
            .flat_map(envelope::v2::to_v1)
            .map(|e| Bytes::from(e.encode_to_vec()))
            .collect();
        assert_eq!(
            frames.len(),
            5,
            "a counter, a container metric, two value metrics, an HTTP event \
             (not counted: it names no method or status)"
        );
        v1.batch(&frames);
        assert_eq!(store.snapshot(), v1_store.snapshot());
    }

    /// A counter whose series expired while its envelope was known starts a
    /// new series at its delta: the update is applied once, not twice, and
    /// the envelope is known again from then on.
    #[test]
    fn an_expired_series_is_created_again_once() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry);
        let counter = |delta| {
            let mut frame = Envelope {
                origin: "gorouter".into(),
                event_type: 7,
                counter_event: Some(CounterEvent {
                    name: "requests".into(),
                    delta,
                    total: None,
                }),
                ..Default::default()
            }
            .encode_to_vec();
            frame.extend(tag_entry("component", "route-emitter"));
            frame
        };
        let start = tokio::time::Instant::now();
        ingest.frame(&counter(5), start);
        ingest.frame(&counter(2), start);
        let value = |store: &SeriesStore| store.snapshot()[0].series[0].1;
        assert_eq!(value(&store), 7.0);
        let later = start + Duration::from_secs(601);
        assert_eq!(store.sweep(later), 1);
        assert!(store.is_empty());
        ingest.frame(&counter(3), later);
        assert_eq!(store.len(), 1);
        assert_eq!(value(&store), 3.0);
        ingest.frame(&counter(4), later);
        assert_eq!(value(&store), 7.0);
        // The same when the sweeper runs between the task's look at the
        // store's generation and its update: the handle finds no series.
        let latest = later + Duration::from_secs(601);
        assert_eq!(store.sweep(latest), 1);
        ingest.known.generation = store.generation();
        ingest.frame(&counter(6), latest);
        assert_eq!(store.len(), 1);
        assert_eq!(value(&store), 6.0);
        ingest.frame(&counter(1), latest);
        assert_eq!(value(&store), 7.0);
    }

    /// Two tasks (two connections) remember the same envelopes and add to
    /// the same counters at once: no increment is lost.
    #[test]
    fn two_tasks_add_to_the_same_counters_exactly() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry);
        let frames: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let mut frame = Envelope {
                    origin: "gorouter".into(),
                    event_type: 7,
                    counter_event: Some(CounterEvent {
                        name: "requests".into(),
                        delta: 1,
                        total: None,
                    }),
                    ..Default::default()
                }
                .encode_to_vec();
                frame.extend(tag_entry("route", &format!("r{i}")));
                frame
            })
            .collect();
        let now = tokio::time::Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let mut ingest = ingest.clone();
                let frames = &frames;
                scope.spawn(move || {
                    for _ in 0..5_000 {
                        for frame in frames {
                            ingest.frame(frame, now);
                        }
                    }
                });
            }
        });
        let families = store.snapshot();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].series.len(), 8);
        for (_, value) in &families[0].series {
            assert_eq!(*value, 10_000.0);
        }
    }

    /// A task remembers envelopes up to its budget and then no more, while
    /// every envelope, remembered or not, still reaches its series.
    #[test]
    fn remembering_stops_at_the_budget() {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(
            Duration::from_secs(600),
            telemetry.clone(),
        ));
        let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry);
        let gauge = |name: &str, value| {
            Envelope {
                origin: "rep".into(),
                event_type: 6,
                value_metric: Some(ValueMetric {
                    name: name.into(),
                    value,
                    unit: "B".into(),
                }),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let now = tokio::time::Instant::now();
        ingest.frame(&gauge("g0", 0.0), now);
        let one = ingest.known.bytes;
        assert!(one > 0);
        ingest.known.budget = 3 * one;
        for round in 1..=2 {
            for i in 0..10 {
                ingest.frame(&gauge(&format!("g{i}"), f64::from(round * 100 + i)), now);
            }
        }
        assert_eq!(ingest.known.entries.len(), 3);
        assert!(ingest.known.bytes <= ingest.known.budget);
        let families = store.snapshot();
        assert_eq!(families.len(), 10);
        for (i, family) in families.iter().enumerate() {
            assert_eq!(&*family.name, format!("g{i}"));
            assert_eq!(family.series[0].1, f64::from(200 + i as u32));
        }
    }

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
