//! Expiry by age, and forgetting what no series uses any more.

use super::*;

impl SeriesStore {
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
                let keep = u64::from(now.saturating_sub(series.reading.updated())) <= expiration;
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
}
