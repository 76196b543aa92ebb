//! The series store: the only shared mutable state. One entry per series
//! (family name plus whole label set) with its value and last update; a
//! family registry that keeps the exposition valid; expiry by age.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::naming::{Labels, MetricKind, SeriesUpdate, Value};
use crate::telemetry::{PREFIX, Telemetry};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    family: Arc<str>,
    /// Shared, so that a scrape copies a pointer, not the labels.
    labels: Arc<Labels>,
}

/// Shards of the series map. Ingestion and scrapes contend per shard; with
/// many small shards a scrape holds each lock only while it copies a few
/// hundred pointers, even at a million series.
const SHARDS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f64,
    updated: Instant,
}

#[derive(Debug, Clone)]
struct FamilyMeta {
    name: Arc<str>,
    kind: MetricKind,
    help: Arc<str>,
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
}

/// Conflicting names remembered so that each is logged once; beyond this
/// many, conflicts are still counted but no longer logged.
const CONFLICTS_LOGGED_MAX: usize = 10_000;

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
    pub series: Vec<(Arc<Labels>, f64)>,
}

/// Concurrent store of relayed series.
#[derive(Debug)]
pub struct SeriesStore {
    series: DashMap<SeriesKey, Sample>,
    families: DashMap<Arc<str>, FamilyMeta>,
    /// Serialises the creation of families so that the clash check and the
    /// insert are one step.
    family_creation: Mutex<()>,
    /// Names already reported as conflicting, so each is logged once.
    conflicts_logged: DashMap<String, ()>,
    len: AtomicUsize,
    max_series: usize,
    cap_logged: std::sync::atomic::AtomicBool,
    expiration: Duration,
    telemetry: Telemetry,
}

impl SeriesStore {
    /// An empty store whose series expire after `expiration` without update.
    pub fn new(expiration: Duration, telemetry: Telemetry) -> Self {
        Self {
            series: DashMap::with_shard_amount(SHARDS),
            families: DashMap::new(),
            family_creation: Mutex::new(()),
            conflicts_logged: DashMap::new(),
            len: AtomicUsize::new(0),
            max_series: usize::MAX,
            cap_logged: std::sync::atomic::AtomicBool::new(false),
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

    /// Applies one update at time `now`.
    pub fn apply(&self, update: SeriesUpdate, now: Instant) -> Applied {
        let Some(family) = self.family(&update) else {
            return Applied::Conflict;
        };
        let key = SeriesKey {
            family,
            labels: Arc::new(update.labels),
        };
        match self.series.entry(key) {
            dashmap::Entry::Occupied(mut entry) => {
                let sample = entry.get_mut();
                sample.value = match update.value {
                    Value::Set(v) => v,
                    Value::Add(d) => sample.value + d,
                };
                sample.updated = now;
                Applied::Updated
            }
            dashmap::Entry::Vacant(entry) => {
                if !self.reserve() {
                    return Applied::OverCap;
                }
                let value = match update.value {
                    Value::Set(v) | Value::Add(v) => v,
                };
                entry.insert(Sample {
                    value,
                    updated: now,
                });
                self.telemetry.series.set(self.len() as i64);
                Applied::Created
            }
        }
    }

    /// The registered family for an update, registering it if new; `None` when
    /// the name cannot be used without making the exposition invalid.
    fn family(&self, update: &SeriesUpdate) -> Option<Arc<str>> {
        if let Some(meta) = self.families.get(update.family.as_str()) {
            if meta.kind == update.kind {
                return Some(meta.name.clone());
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
        if let Some(meta) = self.families.get(update.family.as_str()) {
            if meta.kind == update.kind {
                return Some(meta.name.clone());
            }
            drop(meta);
            self.conflict(update, "it is already another type");
            return None;
        }
        if let Some(reason) = self.clash(update) {
            self.conflict(update, &reason);
            return None;
        }
        let name: Arc<str> = Arc::from(update.family.as_str());
        let meta = FamilyMeta {
            name: name.clone(),
            kind: update.kind,
            help: Arc::from(update.help()),
        };
        self.families.insert(name.clone(), meta);
        Some(name)
    }

    /// Why a new family would clash with an existing one, if it would: a
    /// gauge `foo_total` and a counter `foo` both expose `foo_total`.
    fn clash(&self, update: &SeriesUpdate) -> Option<String> {
        if update.family.starts_with(PREFIX) {
            return Some("the prefix is reserved for the exporter's own metrics".into());
        }
        let other = match update.kind {
            MetricKind::Gauge => update.family.strip_suffix("_total").map(str::to_owned),
            MetricKind::Counter => Some(format!("{}_total", update.family)),
        }?;
        let meta = self.families.get(other.as_str())?;
        (meta.kind != update.kind).then(|| {
            format!(
                "the {} {other} exposes the same samples",
                meta.kind.as_str()
            )
        })
    }

    /// Counts a conflicting update, and logs it once per name.
    fn conflict(&self, update: &SeriesUpdate, reason: &str) {
        self.telemetry.series_rejected("conflict").inc();
        if self.conflicts_logged.len() < CONFLICTS_LOGGED_MAX
            && self
                .conflicts_logged
                .insert(update.sample_name(), ())
                .is_none()
        {
            tracing::warn!(
                metric = %update.original,
                kind = update.kind.as_str(),
                "dropping updates to {}: {reason}",
                update.sample_name()
            );
        }
    }

    /// Removes series not updated within the expiration before `now`; returns
    /// how many were removed.
    pub fn sweep(&self, now: Instant) -> usize {
        let expiration = self.expiration;
        let mut removed = 0;
        self.series.retain(|_, sample| {
            let keep = now.saturating_duration_since(sample.updated) < expiration;
            removed += usize::from(!keep);
            keep
        });
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.telemetry.series_expired.inc_by(removed as u64);
            self.telemetry.series.set(self.len() as i64);
            self.forget_empty_families();
        }
        removed
    }

    /// Forgets families left without series, so that a stream of ever new
    /// names cannot grow the family table without bound. Holds the creation
    /// lock so that no family is forgotten while a series is being added to
    /// it; a family forgotten between lookup and insert of a concurrent
    /// update is registered again by its next update.
    fn forget_empty_families(&self) {
        let _guard = self
            .family_creation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut live: std::collections::HashSet<Arc<str>> =
            std::collections::HashSet::with_capacity(self.families.len());
        for entry in self.series.iter() {
            if !live.contains(&entry.key().family) {
                live.insert(entry.key().family.clone());
            }
        }
        self.families.retain(|name, _| live.contains(name));
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
    /// pointers are copied; grouping and sorting happen after.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let mut copied: Vec<(Arc<str>, Arc<Labels>, f64)> = Vec::with_capacity(self.len());
        for entry in self.series.iter() {
            let key = entry.key();
            copied.push((key.family.clone(), key.labels.clone(), entry.value().value));
        }
        let mut grouped: HashMap<Arc<str>, Vec<(Arc<Labels>, f64)>> = HashMap::new();
        for (family, labels, value) in copied {
            grouped.entry(family).or_default().push((labels, value));
        }
        let mut families: Vec<FamilySnapshot> = grouped
            .into_iter()
            .filter_map(|(name, mut series)| {
                let meta = self.families.get(&name)?.clone();
                series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Some(FamilySnapshot {
                    name,
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
        // The exporter's own prefix.
        assert_eq!(
            s.apply(gauge("cf_firehose_exporter_up", &[], 0.0), now),
            Applied::Conflict
        );
        assert_eq!(t.series_rejected("conflict").get(), 4);
        let names: Vec<_> = s
            .snapshot()
            .iter()
            .map(|f| (f.name.to_string(), f.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("bar_total".to_string(), MetricKind::Gauge),
                ("foo".to_string(), MetricKind::Counter),
                ("x".to_string(), MetricKind::Gauge)
            ]
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
