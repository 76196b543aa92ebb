//! Consistent copies of the families for a scrape.

use super::*;

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

impl SeriesStore {
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
