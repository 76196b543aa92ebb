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

/// A stored label set: interned names and values, sorted by name.
pub type StoredLabels = Arc<[(Text, Text)]>;

/// An interned string behind a thin pointer, so that a label takes 16 bytes
/// in a stored set instead of 32. Compares, orders and hashes as its text;
/// two handles on the same interned string are equal without reading it,
/// which spares a scrape's sort most of its string comparisons.
#[derive(Clone)]
pub struct Text(Arc<Box<str>>);

impl std::hash::Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self.0).hash(state);
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || **self.0 == **other.0
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        (**self.0).cmp(&**other.0)
    }
}

impl Text {
    fn new(text: &str) -> Self {
        Self(Arc::new(Box::from(text)))
    }

    /// Whether only the interning table still holds it.
    fn unused(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.0, f)
    }
}

/// Shards of the series map. Few enough that their locks and the tables'
/// control bytes stay in the cache of a core that updates series, which
/// leaves one miss per update, on the series itself (with 4096 shards there
/// were three, and they took a quarter of ingestion's time). Ingestion and
/// scrapes contend per shard: at a million series a scrape holds each lock
/// while it copies some 16,000 pointers.
const SHARDS: usize = 64;

/// Families a [`FamilyCache`] remembers before it starts over.
const FAMILY_CACHE_MAX: usize = 100_000;

/// One ingestion task's memory of the family registry: which names are
/// families of which kind. Emptied whenever the store forgets families.
#[derive(Debug, Default, Clone)]
pub struct FamilyCache {
    generation: u64,
    /// Each family's kind, and the hash of its name for series keys.
    kinds: HashMap<Box<str>, (MetricKind, u64), foldhash::fast::RandomState>,
}

/// Conflicting names remembered so that each is logged once; beyond this
/// many, conflicts are still counted but no longer logged.
const CONFLICTS_LOGGED_MAX: usize = 10_000;

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

/// One series: 40 bytes besides its shared family name and label set.
#[derive(Debug, Clone)]
struct Series {
    family: Text,
    labels: StoredLabels,
    value: f64,
    /// Whole seconds since the store's epoch: expiry needs no finer time.
    updated: u32,
}

impl Series {
    fn set(&mut self, value: Value, now: u32) {
        self.value = match value {
            Value::Set(v) => v,
            Value::Add(d) => self.value + d,
        };
        self.updated = now;
    }

    fn is(&self, family: &str, labels: &LabelSet<'_>) -> bool {
        *self.family == *family && same_labels(&self.labels, labels)
    }
}

/// The things that share one hash in a table: almost always one, so one
/// is kept without a vector.
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

#[derive(Debug, Clone)]
struct FamilyMeta {
    name: Arc<str>,
    /// The name as the family's series hold it.
    text: Text,
    kind: MetricKind,
    help: Arc<str>,
}

/// A series as one ingestion task found it, to update it again without its
/// labels: its key, and the shared family name and label set it holds. The
/// handle holds them too, so while it lives no other name or label set can
/// be allocated where they are, and comparing addresses is exact.
#[derive(Debug, Clone)]
pub struct SeriesHandle {
    key: u64,
    family: Text,
    labels: StoredLabels,
    /// Where the series was when the handle was made: only ever prefetched,
    /// never read, so it may be stale.
    hint: usize,
}

impl SeriesHandle {
    /// Asks the CPU to start loading the series' cache line, so that the
    /// update finds it there.
    #[inline]
    #[allow(unsafe_code)]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it reads nothing the program sees and
        // cannot fault, whatever the address, stale or freed.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // The table's slot holds the key before the series, and may
            // straddle two lines.
            _mm_prefetch::<_MM_HINT_T0>(self.hint.wrapping_sub(16) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(self.hint.wrapping_add(32) as *const i8);
        }
    }
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

/// Bounds on what one series may hold, so that memory and scrapes are
/// bounded in bytes and not only in series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Longest metric or label name, in bytes.
    pub max_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
    /// Most labels on one series.
    pub max_labels: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_name_length: 1024,
            max_label_value_length: 2048,
            max_labels: 64,
        }
    }
}

impl SeriesLimits {
    /// No bounds.
    pub const NONE: Self = Self {
        max_name_length: usize::MAX,
        max_label_value_length: usize::MAX,
        max_labels: usize::MAX,
    };
}

/// At most this many bytes of an offending name go into a log line.
const LOGGED_NAME_BYTES: usize = 120;

/// `name`, cut to [`LOGGED_NAME_BYTES`] with its full length said when longer.
pub fn bounded(name: &str) -> Cow<'_, str> {
    if name.len() <= LOGGED_NAME_BYTES {
        return Cow::Borrowed(name);
    }
    let mut end = LOGGED_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &name[..end], name.len()))
}

/// A consistent copy of one family, taken for a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// Family name (counters without `_total`).
    pub name: Arc<str>,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// HELP text.
    pub help: Arc<str>,
    /// Series sorted by labels.
    pub series: Vec<(StoredLabels, f64)>,
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

    /// Why a new family's name is refused, if it is.
    fn family_over_limit(&self, update: &Update<'_>) -> bool {
        if update.family.len() > self.limits.max_name_length {
            self.over_limit(update, "name_too_long", "--metrics.max-name-length");
            return true;
        }
        false
    }

    /// Whether a new series' labels are refused; counts and logs them.
    fn labels_over_limit(&self, update: &Update<'_>) -> bool {
        let limits = &self.limits;
        let reason = if update.labels.len() > limits.max_labels {
            Some(("too_many_labels", "--metrics.max-labels"))
        } else if update
            .labels
            .iter()
            .any(|(k, _)| k.len() > limits.max_name_length)
        {
            Some(("name_too_long", "--metrics.max-name-length"))
        } else if update
            .labels
            .iter()
            .any(|(_, v)| v.len() > limits.max_label_value_length)
        {
            Some(("label_value_too_long", "--metrics.max-label-value-length"))
        } else {
            None
        };
        match reason {
            Some((reason, flag)) => {
                self.over_limit(update, reason, flag);
                true
            }
            None => false,
        }
    }

    /// Counts an update refused by a limit, and logs the first of each reason.
    fn over_limit(&self, update: &Update<'_>, reason: &'static str, flag: &'static str) {
        self.telemetry.series_rejected(reason).inc();
        let bit = match reason {
            "name_too_long" => 1,
            "too_many_labels" => 2,
            _ => 4,
        };
        if self.limits_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(
                metric = %bounded(update.original),
                reason,
                "dropping new series over a limit ({flag}); further ones are only counted"
            );
        }
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

    fn new_series(&self, family: Text, update: &Update<'_>, now: u32) -> Series {
        let labels = self.intern_labels(update.labels);
        let value = match update.value {
            Value::Set(v) | Value::Add(v) => v,
        };
        Series {
            family,
            labels,
            value,
            updated: now,
        }
    }

    /// The stored copy of a label set, shared with the series that have it.
    fn intern_labels(&self, labels: &LabelSet<'_>) -> StoredLabels {
        let stored = || -> StoredLabels {
            labels
                .iter()
                .map(|(k, v)| (self.intern(k), self.intern(v)))
                .collect()
        };
        match self.label_sets.entry(labels.hash_value()) {
            dashmap::Entry::Occupied(mut entry) => {
                let sets = entry.get_mut();
                if let Some(found) = sets.as_slice().iter().find(|s| same_labels(s, labels)) {
                    return found.clone();
                }
                let new = stored();
                sets.push(new.clone());
                new
            }
            dashmap::Entry::Vacant(entry) => {
                let new = stored();
                entry.insert(Chain::One(new.clone()));
                new
            }
        }
    }

    fn intern(&self, text: &str) -> Text {
        if let Some(shared) = self.strings.get(text) {
            return shared.clone();
        }
        let shared = Text::new(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// The registered family for an update, registering it if new; `None` when
    /// the name cannot be used without making the exposition invalid.
    fn family(&self, update: &Update<'_>) -> Option<Text> {
        if let Some(meta) = self.families.get(update.family) {
            if meta.kind == update.kind {
                return Some(meta.text.clone());
            }
            let reason = format!("it is already a {}", meta.kind.as_str());
            drop(meta);
            self.conflict(update, &reason);
            return None;
        }
        let _guard = self
            .family_creation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(meta) = self.families.get(update.family) {
            if meta.kind == update.kind {
                return Some(meta.text.clone());
            }
            drop(meta);
            self.conflict(update, "it is already another type");
            return None;
        }
        if let Some(reason) = self.clash(update) {
            self.conflict(update, &reason);
            return None;
        }
        let name: Arc<str> = Arc::from(update.family);
        let text = Text::new(update.family);
        let meta = FamilyMeta {
            name: name.clone(),
            text: text.clone(),
            kind: update.kind,
            help: Arc::from(update.help()),
        };
        self.families.insert(name, meta);
        Some(text)
    }

    /// Why a new family would clash with an existing one, if it would.
    /// A gauge `g` takes the name `g`; a counter `c` takes `c`, `c_total`
    /// (its samples) and `c_created` (which OpenMetrics reserves for it, and
    /// strict parsers refuse to see as another family). Two families clash
    /// when they take a name in common: a gauge `foo_total` or `foo_created`
    /// beside a counter `foo`, a counter `foo_created` beside a counter `foo`.
    fn clash(&self, update: &Update<'_>) -> Option<String> {
        if update.family.starts_with(PREFIX) {
            return Some("the prefix is reserved for the exporter's own metrics".into());
        }
        let family = update.family;
        let mut taken = vec![Cow::Borrowed(family)];
        if update.kind == MetricKind::Counter {
            taken.push(Cow::Owned(format!("{family}_total")));
            taken.push(Cow::Owned(format!("{family}_created")));
        }
        for name in &taken {
            if let Some(meta) = self.families.get(name.as_ref()) {
                return Some(format!(
                    "the {} {name} takes the same name",
                    meta.kind.as_str()
                ));
            }
            for suffix in ["_total", "_created"] {
                let Some(base) = name.strip_suffix(suffix) else {
                    continue;
                };
                if let Some(meta) = self.families.get(base)
                    && meta.kind == MetricKind::Counter
                {
                    return Some(format!("the counter {base} takes the name {name}"));
                }
            }
        }
        None
    }

    /// Counts a conflicting update, and logs it once per name.
    fn conflict(&self, update: &Update<'_>, reason: &str) {
        self.telemetry.series_rejected("conflict").inc();
        let name = update.sample_name();
        let hash = hash_family(&name);
        if self.conflicts_logged.len() < CONFLICTS_LOGGED_MAX
            && self.conflicts_logged.insert(hash, ()).is_none()
        {
            tracing::warn!(
                metric = %bounded(update.original),
                kind = update.kind.as_str(),
                "dropping updates to {}: {}",
                bounded(&name),
                bounded(reason)
            );
        }
    }

    /// Removes series not updated within the expiration before `now`; returns
    /// how many were removed.
    pub fn sweep(&self, now: Instant) -> usize {
        // Series keep their last update in whole seconds: they go once
        // strictly more whole seconds than the expiration have passed.
        let now = self.seconds(now);
        let expiration = self.expiration.as_secs();
        let mut removed = 0;
        self.series.retain(|_, bucket| {
            bucket.retain(|series| {
                let keep = u64::from(now.saturating_sub(series.updated)) <= expiration;
                removed += usize::from(!keep);
                keep
            })
        });
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.telemetry.series_expired.inc_by(removed as u64);
            self.telemetry.series.set(self.len() as i64);
            self.forget_unused();
        }
        removed
    }

    /// Forgets families left without series and strings no series uses, so
    /// that a stream of ever new names cannot grow either without bound.
    /// Holds the creation lock so that no family is forgotten while a series
    /// is being added to it; a family forgotten between lookup and insert of
    /// a concurrent update is registered again by its next update.
    fn forget_unused(&self) {
        let _guard = self
            .family_creation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut live: HashSet<Text> = HashSet::with_capacity(self.families.len());
        for bucket in self.series.iter() {
            for series in bucket.as_slice() {
                if !live.contains(&series.family) {
                    live.insert(series.family.clone());
                }
            }
        }
        self.families.retain(|name, _| live.contains(&**name));
        self.generation.fetch_add(1, Ordering::Release);
        // Held by the table alone: no series uses it any more. Label sets
        // first, as they hold strings.
        self.label_sets
            .retain(|_, sets| sets.retain(|set| Arc::strong_count(set) > 1));
        self.strings.retain(|text| !text.unused());
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

    /// Copies every family with at least one series, families sorted by name
    /// and series by labels. Each shard is locked only while its entries'
    /// pointers are copied; grouping and sorting happen after. Every series
    /// is copied whole, but the copy is not one instant across shards: an
    /// update that lands while the copy runs may show without an earlier one.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let mut copied: Vec<(Text, StoredLabels, f64)> = Vec::with_capacity(self.len());
        for bucket in self.series.iter() {
            for series in bucket.as_slice() {
                copied.push((series.family.clone(), series.labels.clone(), series.value));
            }
        }
        let mut grouped: HashMap<Text, Vec<(StoredLabels, f64)>> = HashMap::new();
        for (family, labels, value) in copied {
            grouped.entry(family).or_default().push((labels, value));
        }
        let mut families: Vec<FamilySnapshot> = grouped
            .into_iter()
            .filter_map(|(name, mut series)| {
                let meta = self.families.get(&*name)?.clone();
                series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Some(FamilySnapshot {
                    name: meta.name,
                    kind: meta.kind,
                    help: meta.help,
                    series,
                })
            })
            .collect();
        families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        families
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
