//! The series store: the only shared mutable state. One entry per series
//! (family name plus whole label set) with its value and last update; a
//! family registry that keeps the exposition valid; expiry by age.
//!
//! Series are found by a hash of their family and label set, computed from
//! the envelope's borrowed data, so that updating an existing series
//! allocates nothing; label sets, and the names and values in them, are
//! interned when a series is created, so that series share them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use tokio::time::Instant;

use crate::naming::{LabelSet, MetricKind, SeriesUpdate, Update, Value, hash_family};
use crate::telemetry::{PREFIX, Telemetry};

mod expiry;
mod family;
mod handle;
mod histogram;
mod intern;
mod limits;
mod snapshot;

pub use family::FamilyCache;
use family::{FAMILY_CACHE_MAX, FamilyMeta, FamilyRef};
pub use handle::SeriesHandle;
use histogram::Histogram;
pub use histogram::{Bounds, HistogramSnapshot};
pub use intern::{StoredLabels, Text};
pub use limits::{SeriesLimits, bounded};
pub use snapshot::{FamilySnapshot, Sample, SampleValue, SnapshotVisitor, visit};

/// Shards of the series map. Few enough that their locks and the tables'
/// control bytes stay in the cache of a core that updates series, which
/// leaves one miss per update, on the series itself (with 4096 shards there
/// were three, and they took a quarter of ingestion's time). Ingestion and
/// scrapes contend per shard: at a million series a scrape holds each lock
/// while it copies some 16,000 pointers.
const SHARDS: usize = 64;

/// For maps whose keys are already hashes: uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One series: 40 bytes besides its shared family name and label set (a
/// histogram's buckets live behind a pointer).
#[derive(Debug, Clone)]
struct Series {
    family: Text,
    labels: StoredLabels,
    reading: Reading,
}

/// A series' value and the time of its last update, in whole seconds since
/// the store's epoch (expiry needs no finer time). The time is in each
/// variant so that it shares the tag's word.
#[derive(Debug, Clone)]
enum Reading {
    /// A gauge's or a counter's value; `summed` when its last update
    /// added to it rather than set it.
    Number {
        value: f64,
        updated: u32,
        summed: bool,
    },
    /// A histogram's buckets, sum and count.
    Histogram { value: Box<Histogram>, updated: u32 },
}

const _: () = assert!(std::mem::size_of::<Series>() == 40);

impl Reading {
    /// The first reading of a series of `kind` with `bounds` (histograms).
    fn new(kind: MetricKind, bounds: &Bounds, value: Value, now: u32) -> Self {
        let mut reading = match kind {
            MetricKind::Gauge | MetricKind::Counter => Reading::Number {
                value: 0.0,
                updated: now,
                summed: false,
            },
            MetricKind::Histogram => Reading::Histogram {
                value: Box::new(Histogram::new(bounds.clone())),
                updated: now,
            },
        };
        reading.set(value, now);
        reading
    }

    /// Applies `value`. A value that does not fit the reading (an
    /// observation for a gauge, say) changes nothing but the time: the
    /// family's kind was checked, and a scheme yields values of its kind.
    fn set(&mut self, value: Value, now: u32) {
        match (self, value) {
            (
                Reading::Number {
                    value: v,
                    updated,
                    summed,
                },
                Value::Set(new),
            ) => {
                *v = new;
                *updated = now;
                *summed = false;
            }
            (
                Reading::Number {
                    value: v,
                    updated,
                    summed,
                },
                Value::Add(delta),
            ) => {
                *v += delta;
                *updated = now;
                *summed = true;
            }
            (Reading::Histogram { value: h, updated }, Value::Observe(observed)) => {
                h.observe(observed);
                *updated = now;
            }
            (Reading::Number { updated, .. } | Reading::Histogram { updated, .. }, _) => {
                debug_assert!(false, "a value that does not fit its series: {value:?}");
                *updated = now;
            }
        }
    }

    fn updated(&self) -> u32 {
        match self {
            Reading::Number { updated, .. } | Reading::Histogram { updated, .. } => *updated,
        }
    }
}

impl Series {
    fn set(&mut self, value: Value, now: u32) {
        self.reading.set(value, now);
    }

    fn is(&self, family: &str, labels: &LabelSet<'_>) -> bool {
        *self.family == *family && same_labels(&self.labels, labels)
    }
}

/// The things that share one hash in a table: almost always one, so one
/// is kept without a vector. Not `smallvec::SmallVec<[T; 1]>`: that keeps
/// its capacity beside the inline item, which makes a table slot of a
/// series 56 bytes instead of 48, and updating existing series some 13 to
/// 18 % slower (`cargo bench --bench pipeline -- ingest`, A/B).
#[derive(Debug, Clone)]
pub(crate) enum Chain<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> From<Vec<T>> for Chain<T> {
    fn from(mut all: Vec<T>) -> Self {
        if all.len() == 1
            && let Some(one) = all.pop()
        {
            return Chain::One(one);
        }
        Chain::Many(all)
    }
}

impl<T> Chain<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Chain::One(item) => std::slice::from_ref(item),
            Chain::Many(all) => all,
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Chain::One(item) => std::slice::from_mut(item),
            Chain::Many(all) => all,
        }
    }

    fn push(&mut self, item: T) {
        *self = match std::mem::replace(self, Chain::Many(Vec::new())) {
            Chain::One(first) => Chain::Many(vec![first, item]),
            Chain::Many(mut all) => {
                all.push(item);
                Chain::Many(all)
            }
        };
    }

    /// Keeps the items `keep` approves; true when some are left.
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> bool {
        match self {
            Chain::One(item) => keep(item),
            Chain::Many(all) => {
                all.retain(|item| keep(item));
                !all.is_empty()
            }
        }
    }
}

/// The series that share one hash.
type Bucket = Chain<Series>;

/// The stored label sets that share one hash.
type LabelSets = Chain<StoredLabels>;

/// The series of `bucket` that `update` is for.
fn find<'a>(bucket: &'a mut Bucket, update: &Update<'_>) -> Option<&'a mut Series> {
    bucket
        .as_mut_slice()
        .iter_mut()
        .find(|s| s.is(update.family, update.labels))
}

/// Whether a stored label set holds exactly the labels of `labels`.
fn same_labels(stored: &[(Text, Text)], labels: &LabelSet<'_>) -> bool {
    stored.len() == labels.len()
        && stored
            .iter()
            .zip(labels.iter())
            .all(|((k, v), (k2, v2))| **k == *k2 && **v == *v2)
}

/// What became of one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// An existing series took the new value.
    Updated,
    /// A new series was created.
    Created,
    /// The family name is taken by another type, or its samples would clash
    /// with another family's; the update was dropped.
    Conflict,
    /// The update would have created a series beyond the cap; it was dropped.
    OverCap,
    /// The name or labels exceed the [`SeriesLimits`]; the update was dropped.
    OverLimit,
}

/// Concurrent store of relayed series.
#[derive(Debug)]
pub struct SeriesStore {
    series: DashMap<u64, Bucket, BuildHasherDefault<KeyHasher>>,
    families: DashMap<Arc<str>, FamilyMeta, foldhash::fast::RandomState>,
    /// Label names and values, shared by the series that carry them.
    strings: DashSet<Text, foldhash::fast::RandomState>,
    /// Label sets by hash, shared by the series that carry them (the five
    /// gauges of a container, say).
    label_sets: DashMap<u64, LabelSets, BuildHasherDefault<KeyHasher>>,
    /// The instant from which series count their last update, in seconds.
    epoch: Instant,
    /// Serialises the creation of families so that the clash check and the
    /// insert are one step.
    family_creation: Mutex<()>,
    /// Hashes of the names already reported as conflicting, so each is
    /// logged once.
    conflicts_logged: DashMap<u64, (), BuildHasherDefault<KeyHasher>>,
    limits: SeriesLimits,
    /// Reasons of limit rejections already logged, as bits.
    limits_logged: AtomicUsize,
    len: AtomicUsize,
    /// Bumped each time families are forgotten, to empty the tasks' caches.
    generation: std::sync::atomic::AtomicU64,
    max_series: usize,
    cap_logged: AtomicBool,
    expiration: Duration,
    telemetry: Telemetry,
}

impl SeriesStore {
    /// An empty store whose series expire after `expiration` without update.
    pub fn new(expiration: Duration, telemetry: Telemetry) -> Self {
        Self {
            series: DashMap::with_hasher_and_shard_amount(Default::default(), SHARDS),
            families: DashMap::default(),
            strings: DashSet::default(),
            label_sets: DashMap::default(),
            epoch: Instant::now(),
            family_creation: Mutex::new(()),
            conflicts_logged: DashMap::default(),
            limits: SeriesLimits::default(),
            limits_logged: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
            max_series: usize::MAX,
            cap_logged: AtomicBool::new(false),
            expiration,
            telemetry,
        }
    }

    /// Holds at most `max_series` series: updates that would create more are
    /// rejected and counted, existing series keep updating.
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// Refuses new series and families beyond `limits`.
    pub fn with_limits(mut self, limits: SeriesLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Takes a slot for a new series, or refuses at the cap.
    fn reserve(&self) -> bool {
        let taken = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.telemetry.series_rejected("cap").inc();
            if !self.cap_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_series = self.max_series,
                    "series cap reached: new series are dropped until old ones expire \
                     (--metrics.max-series)"
                );
            }
        }
        taken
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of families held.
    pub fn families(&self) -> usize {
        self.families.len()
    }

    /// The expiration this store was built with.
    pub fn expiration(&self) -> Duration {
        self.expiration
    }

    /// A number that changes whenever series or families have been
    /// forgotten: what a task remembers of the store from before a change
    /// may be stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies one owned update at time `now`.
    pub fn apply(&self, update: SeriesUpdate, now: Instant) -> Applied {
        let labels = LabelSet::from_labels(&update.labels);
        let update = Update {
            family: &update.family,
            kind: update.kind,
            original: &update.original,
            labels: &labels,
            value: update.value,
            buckets: &update.buckets,
        };
        self.apply_cached(&update, now, &mut FamilyCache::default())
    }

    /// Applies one update at time `now`, checking its family against the
    /// caller's own cache of the registry: updating an existing series
    /// allocates nothing and touches no memory that other ingestion tasks
    /// write, but the series' shard.
    pub fn apply_cached(
        &self,
        update: &Update<'_>,
        now: Instant,
        cache: &mut FamilyCache,
    ) -> Applied {
        self.apply_inner::<false>(update, now, cache).0
    }

    /// As [`SeriesStore::apply_cached`], and when the update reached a series,
    /// a handle on it for [`SeriesStore::apply_known`].
    pub fn apply_tracked(
        &self,
        update: &Update<'_>,
        now: Instant,
        cache: &mut FamilyCache,
    ) -> Result<SeriesHandle, Applied> {
        match self.apply_inner::<true>(update, now, cache) {
            (_, Some(handle)) => Ok(handle),
            (applied, None) => Err(applied),
        }
    }

    /// Sets the value of the series `handle` is on, if it is still stored:
    /// false when it has expired since, and the update needs its labels.
    /// Neither the family nor the labels are read: the series is the one in
    /// its bucket with the same shared name and label set.
    /// The handle's address hint follows the series when the table has moved it.
    pub fn apply_known(&self, handle: &mut SeriesHandle, value: Value, now: Instant) -> bool {
        let now = self.seconds(now);
        let Some(mut bucket) = self.series.get_mut(&handle.key) else {
            return false;
        };
        match bucket.as_mut_slice().iter_mut().find(|s| {
            Arc::ptr_eq(&s.labels, &handle.labels) && Arc::ptr_eq(&s.family.0, &handle.family.0)
        }) {
            Some(series) => {
                series.set(value, now);
                handle.hint = series as *const Series as usize;
                true
            }
            None => false,
        }
    }

    fn apply_inner<const TRACK: bool>(
        &self,
        update: &Update<'_>,
        now: Instant,
        cache: &mut FamilyCache,
    ) -> (Applied, Option<SeriesHandle>) {
        let generation = self.generation.load(Ordering::Acquire);
        if cache.generation != generation || cache.kinds.len() >= FAMILY_CACHE_MAX {
            cache.kinds.clear();
            cache.generation = generation;
        }
        let family_hash = match cache.kinds.get(update.family) {
            Some(&(kind, hash)) if kind == update.kind => hash,
            _ => {
                if self.family_over_limit(update) {
                    return (Applied::OverLimit, None);
                }
                if self.family(update).is_none() {
                    return (Applied::Conflict, None);
                }
                let hash = hash_family(update.family);
                cache
                    .kinds
                    .insert(update.family.into(), (update.kind, hash));
                hash
            }
        };
        let now = self.seconds(now);
        let key = series_key(family_hash, update.labels);
        let handle = |series: &Series| {
            TRACK.then(|| SeriesHandle {
                key,
                kind: update.kind,
                family: series.family.clone(),
                labels: series.labels.clone(),
                hint: series as *const Series as usize,
            })
        };
        if let Some(mut bucket) = self.series.get_mut(&key)
            && let Some(series) = find(&mut bucket, update)
        {
            series.set(update.value, now);
            return (Applied::Updated, handle(series));
        }
        // A new series. The family's shared name is taken before the shard's
        // lock, never under it: the sweeper takes them in that order.
        if self.labels_over_limit(update) {
            return (Applied::OverLimit, None);
        }
        if update.kind == MetricKind::Histogram && update.labels.iter().any(|(k, _)| k == "le") {
            // Its buckets' own label would be there twice.
            self.conflict(update, "a histogram's series cannot have a label le");
            return (Applied::Conflict, None);
        }
        let Some(family) = self.family(update) else {
            return (Applied::Conflict, None);
        };
        let created = match self.series.entry(key) {
            dashmap::Entry::Occupied(mut entry) => {
                let bucket = entry.get_mut();
                // Another task may have created it meanwhile.
                if let Some(series) = find(bucket, update) {
                    series.set(update.value, now);
                    return (Applied::Updated, handle(series));
                }
                if !self.reserve() {
                    return (Applied::OverCap, None);
                }
                let series = self.new_series(family, update, now);
                let created = handle(&series);
                bucket.push(series);
                created
            }
            dashmap::Entry::Vacant(entry) => {
                if !self.reserve() {
                    return (Applied::OverCap, None);
                }
                let series = self.new_series(family, update, now);
                let created = handle(&series);
                entry.insert(Chain::One(series));
                created
            }
        };
        self.telemetry.series.set(self.len() as i64);
        (Applied::Created, created)
    }

    /// `at` in whole seconds since the epoch.
    fn seconds(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn new_series(&self, family: FamilyRef, update: &Update<'_>, now: u32) -> Series {
        let labels = self.intern_labels(update.labels);
        Series {
            reading: Reading::new(update.kind, &family.bounds, update.value, now),
            family: family.text,
            labels,
        }
    }

    /// Runs [`SeriesStore::sweep`] periodically until the task is dropped.
    /// Sweeps every tenth of the expiration, between 1 s and 30 s.
    pub async fn run_sweeper(self: Arc<Self>) {
        let period = (self.expiration / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let removed = self.sweep(Instant::now());
            if removed > 0 {
                tracing::debug!(removed, "expired series removed");
            }
        }
    }
}

/// Where a series lives in the map: its family's and label set's hashes mixed.
fn series_key(family_hash: u64, labels: &LabelSet<'_>) -> u64 {
    static MIX: std::sync::LazyLock<foldhash::fast::FixedState> =
        std::sync::LazyLock::new(|| foldhash::fast::FixedState::with_seed(rand::random()));
    MIX.hash_one((family_hash, labels.hash_value()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(
        family: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: Value,
    ) -> SeriesUpdate {
        SeriesUpdate {
            family: family.into(),
            kind,
            original: family.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            buckets: Vec::new(),
        }
    }

    fn gauge(family: &str, labels: &[(&str, &str)], v: f64) -> SeriesUpdate {
        update(family, MetricKind::Gauge, labels, Value::Set(v))
    }

    fn store() -> SeriesStore {
        SeriesStore::new(Duration::from_secs(600), Telemetry::new())
    }

    #[test]
    fn names_values_and_label_counts_beyond_the_limits_are_refused_and_counted() {
        let t = Telemetry::new();
        let limits = SeriesLimits {
            max_name_length: 32,
            max_label_value_length: 64,
            max_labels: 4,
        };
        let s = SeriesStore::new(Duration::from_secs(600), t.clone()).with_limits(limits);
        let now = Instant::now();
        let long_name = "n".repeat(33);
        let long_value = "v".repeat(65);
        assert_eq!(
            s.apply(gauge(&long_name, &[], 1.0), now),
            Applied::OverLimit
        );
        assert_eq!(
            s.apply(gauge("g", &[(long_name.as_str(), "x")], 1.0), now),
            Applied::OverLimit
        );
        assert_eq!(
            s.apply(gauge("g", &[("a", long_value.as_str())], 1.0), now),
            Applied::OverLimit
        );
        let five = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")];
        assert_eq!(s.apply(gauge("g", &five, 1.0), now), Applied::OverLimit);
        assert_eq!(t.series_rejected("name_too_long").get(), 2);
        assert_eq!(t.series_rejected("label_value_too_long").get(), 1);
        assert_eq!(t.series_rejected("too_many_labels").get(), 1);
        assert_eq!(s.len(), 0);
        assert_eq!(s.families(), 1, "only g, whose own name fits");
        // At the limits exactly: kept.
        let name = "n".repeat(32);
        let value = "v".repeat(64);
        assert_eq!(
            s.apply(
                gauge(
                    &name,
                    &[("a", value.as_str()), ("b", "1"), ("c", "1"), ("d", "1")],
                    1.0
                ),
                now
            ),
            Applied::Created
        );
    }

    #[test]
    fn logged_names_are_cut_to_a_bounded_prefix() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.len() < 140, "{}", cut.len());
        assert!(cut.ends_with("… (2000 bytes)"), "{cut}");
    }

    #[test]
    fn whole_label_set_is_identity() {
        let s = store();
        let now = Instant::now();
        assert_eq!(
            s.apply(gauge("g", &[("a", "1")], 1.0), now),
            Applied::Created
        );
        assert_eq!(
            s.apply(gauge("g", &[("a", "2")], 2.0), now),
            Applied::Created
        );
        assert_eq!(
            s.apply(gauge("g", &[("a", "1")], 3.0), now),
            Applied::Updated
        );
        let snap = s.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(
            snap[0].series.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            vec![3.0, 2.0]
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn counters_set_totals_and_add_deltas() {
        let s = store();
        let now = Instant::now();
        s.apply(update("c", MetricKind::Counter, &[], Value::Add(2.0)), now);
        s.apply(update("c", MetricKind::Counter, &[], Value::Add(3.0)), now);
        assert_eq!(s.snapshot()[0].series[0].1, 5.0);
        s.apply(
            update("c", MetricKind::Counter, &[], Value::Set(100.0)),
            now,
        );
        assert_eq!(s.snapshot()[0].series[0].1, 100.0);
    }

    #[test]
    fn conflicting_families_are_dropped_and_counted() {
        let t = Telemetry::new();
        let s = SeriesStore::new(Duration::from_secs(600), t.clone());
        let now = Instant::now();
        assert_eq!(s.apply(gauge("x", &[], 1.0), now), Applied::Created);
        // Same family name as another type.
        assert_eq!(
            s.apply(update("x", MetricKind::Counter, &[], Value::Set(1.0)), now),
            Applied::Conflict
        );
        // A gauge foo_total beside a counter foo.
        s.apply(
            update("foo", MetricKind::Counter, &[], Value::Set(1.0)),
            now,
        );
        assert_eq!(
            s.apply(gauge("foo_total", &[], 1.0), now),
            Applied::Conflict
        );
        // And the other way round.
        s.apply(gauge("bar_total", &[], 1.0), now);
        assert_eq!(
            s.apply(
                update("bar", MetricKind::Counter, &[], Value::Set(1.0)),
                now
            ),
            Applied::Conflict
        );
        // OpenMetrics reserves foo_created for the counter foo: a gauge or
        // a counter of that name clashes, either way round.
        assert_eq!(
            s.apply(gauge("foo_created", &[], 1.0), now),
            Applied::Conflict
        );
        assert_eq!(
            s.apply(
                update("foo_created", MetricKind::Counter, &[], Value::Set(1.0)),
                now
            ),
            Applied::Conflict
        );
        s.apply(gauge("baz_created", &[], 1.0), now);
        assert_eq!(
            s.apply(
                update("baz", MetricKind::Counter, &[], Value::Set(1.0)),
                now
            ),
            Applied::Conflict
        );
        // The exporter's own prefix.
        assert_eq!(
            s.apply(gauge("cf_firehose_exporter_up", &[], 0.0), now),
            Applied::Conflict
        );
        assert_eq!(t.series_rejected("conflict").get(), 7);
        let names: Vec<_> = s
            .snapshot()
            .iter()
            .map(|f| (f.name.to_string(), f.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("bar_total".to_string(), MetricKind::Gauge),
                ("baz_created".to_string(), MetricKind::Gauge),
                ("foo".to_string(), MetricKind::Counter),
                ("x".to_string(), MetricKind::Gauge)
            ]
        );
    }

    fn observe(family: &str, labels: &[(&str, &str)], buckets: &[f64], v: f64) -> SeriesUpdate {
        SeriesUpdate {
            buckets: buckets.to_vec(),
            ..update(family, MetricKind::Histogram, labels, Value::Observe(v))
        }
    }

    /// A histogram series' buckets, sum and count.
    type Observed = (Vec<(f64, u64)>, f64, u64);

    /// The buckets, sum and count of each histogram series of `family`.
    fn histograms(s: &SeriesStore, family: &str) -> Vec<Observed> {
        let snap = s.snapshot();
        let family = snap.iter().find(|f| &*f.name == family).expect("family");
        assert_eq!(family.kind, MetricKind::Histogram);
        assert!(family.series.is_empty());
        family
            .histograms
            .iter()
            .map(|(_, h)| (h.buckets().collect(), h.sum, h.count))
            .collect()
    }

    #[test]
    fn histogram_series_count_observations_in_their_familys_buckets() {
        let t = Telemetry::new();
        let s = SeriesStore::new(Duration::from_secs(600), t.clone());
        let now = Instant::now();
        let bounds = [1.0, 0.1, 10.0];
        let a = [("app", "a")];
        assert_eq!(
            s.apply(observe("lat", &a, &bounds, 0.05), now),
            Applied::Created
        );
        for v in [0.5, 2.0, 0.1] {
            assert_eq!(
                s.apply(observe("lat", &a, &bounds, v), now),
                Applied::Updated
            );
        }
        // Later updates keep the family's buckets, whatever they bring.
        s.apply(observe("lat", &[("app", "b")], &[5.0], 20.0), now);
        let inf = f64::INFINITY;
        assert_eq!(
            histograms(&s, "lat"),
            vec![
                (vec![(0.1, 2), (1.0, 3), (10.0, 4), (inf, 4)], 2.65, 4),
                (vec![(0.1, 0), (1.0, 0), (10.0, 0), (inf, 1)], 20.0, 1),
            ]
        );
        assert_eq!(s.len(), 2);
        // Expiry treats them like any series.
        assert_eq!(s.sweep(now + Duration::from_secs(601)), 2);
        assert!(s.snapshot().is_empty());
    }

    #[test]
    fn a_known_histogram_series_takes_observations_by_its_handle() {
        let s = store();
        let now = Instant::now();
        let u = observe("lat", &[], &[1.0], 0.5);
        let labels = LabelSet::from_labels(&u.labels);
        let update = Update {
            family: &u.family,
            kind: u.kind,
            original: &u.original,
            labels: &labels,
            value: u.value,
            buckets: &u.buckets,
        };
        let mut handle = s
            .apply_tracked(&update, now, &mut FamilyCache::default())
            .expect("created");
        assert!(s.apply_known(&mut handle, Value::Observe(3.0), now));
        let inf = f64::INFINITY;
        assert_eq!(
            histograms(&s, "lat"),
            vec![(vec![(1.0, 1), (inf, 2)], 3.5, 2)]
        );
    }

    #[test]
    fn histograms_clash_with_the_names_their_samples_take() {
        let t = Telemetry::new();
        let s = SeriesStore::new(Duration::from_secs(600), t.clone());
        let now = Instant::now();
        let counter = |name: &str| update(name, MetricKind::Counter, &[], Value::Set(1.0));
        assert_eq!(
            s.apply(observe("h", &[], &[1.0], 1.0), now),
            Applied::Created
        );
        // A gauge of the same name, and one named like each of its samples.
        for name in ["h", "h_bucket", "h_sum", "h_count", "h_created"] {
            assert_eq!(
                s.apply(gauge(name, &[], 1.0), now),
                Applied::Conflict,
                "{name}"
            );
        }
        // A counter h_bucket would write h_bucket_total, but takes h_bucket.
        assert_eq!(s.apply(counter("h_bucket"), now), Applied::Conflict);
        // The other way round: a histogram beside a gauge or a counter.
        s.apply(gauge("g", &[], 1.0), now);
        s.apply(gauge("m_sum", &[], 1.0), now);
        s.apply(counter("c_count"), now);
        s.apply(counter("k"), now);
        for name in ["g", "m", "c", "k_total", "k"] {
            assert_eq!(
                s.apply(observe(name, &[], &[1.0], 1.0), now),
                Applied::Conflict,
                "{name}"
            );
        }
        // Its own label le would be there twice.
        assert_eq!(
            s.apply(observe("other", &[("le", "1")], &[1.0], 1.0), now),
            Applied::Conflict
        );
        assert_eq!(t.series_rejected("conflict").get(), 12);
        let names: Vec<_> = s.snapshot().iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, ["c_count", "g", "h", "k", "m_sum"]);
    }

    #[test]
    fn a_task_cache_follows_families_being_forgotten_and_kinds_are_still_checked() {
        let t = Telemetry::new();
        let s = SeriesStore::new(Duration::from_secs(60), t.clone());
        let mut cache = FamilyCache::default();
        let now = Instant::now();
        let apply = |s: &SeriesStore, cache: &mut FamilyCache, u: SeriesUpdate, at| {
            let labels = LabelSet::from_labels(&u.labels);
            let update = Update {
                family: &u.family,
                kind: u.kind,
                original: &u.original,
                labels: &labels,
                value: u.value,
                buckets: &u.buckets,
            };
            s.apply_cached(&update, at, cache)
        };
        assert_eq!(
            apply(&s, &mut cache, gauge("x", &[], 1.0), now),
            Applied::Created
        );
        assert_eq!(
            apply(&s, &mut cache, gauge("x", &[], 2.0), now),
            Applied::Updated
        );
        let counter = || update("x", MetricKind::Counter, &[], Value::Set(5.0));
        assert_eq!(apply(&s, &mut cache, counter(), now), Applied::Conflict);
        assert_eq!(t.series_rejected("conflict").get(), 1);
        // Once the gauge has expired and its family is forgotten, the name is free.
        s.sweep(now + Duration::from_secs(61));
        assert_eq!(s.families(), 0);
        let later = now + Duration::from_secs(62);
        assert_eq!(apply(&s, &mut cache, counter(), later), Applied::Created);
        let snap = s.snapshot();
        assert_eq!(
            (snap[0].name.as_ref(), snap[0].kind),
            ("x", MetricKind::Counter)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_expires_series_with_paused_time() {
        let t = Telemetry::new();
        let s = Arc::new(SeriesStore::new(Duration::from_secs(600), t.clone()));
        s.apply(gauge("old", &[], 1.0), Instant::now());
        let sweeper = tokio::spawn(s.clone().run_sweeper());
        tokio::time::advance(Duration::from_secs(300)).await;
        s.apply(gauge("fresh", &[], 1.0), Instant::now());
        tokio::time::advance(Duration::from_secs(301)).await;
        // Let the sweeper run its due tick.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(31)).await;
        let names: Vec<_> = s.snapshot().iter().map(|f| f.name.to_string()).collect();
        assert_eq!(names, vec!["fresh".to_string()]);
        assert_eq!(t.series_expired.get(), 1);
        assert_eq!(t.series.get(), 1);
        assert_eq!(s.len(), 1);
        sweeper.abort();
    }
}
