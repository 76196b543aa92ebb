//! Consistent copies of the families for a scrape, and the visitor through
//! which sinks read them sample by sample.

use super::*;

/// A consistent copy of one family, taken for a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// Family name (counters without `_total`).
    pub name: Arc<str>,
    /// Gauge, counter or histogram.
    pub kind: MetricKind,
    /// HELP text.
    pub help: Arc<str>,
    /// A gauge's or a counter's series, sorted by labels; empty for a
    /// histogram.
    pub series: Vec<(StoredLabels, f64)>,
    /// A histogram's series, sorted by labels; empty for the other kinds.
    pub histograms: Vec<(StoredLabels, HistogramSnapshot)>,
}

/// A sample's value: a float, or a count of observations (a histogram's
/// buckets and count), which encoders may write as an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue {
    /// A gauge's or a counter's value, or a histogram's sum.
    Float(f64),
    /// A histogram's bucket or count.
    Count(u64),
}

impl SampleValue {
    /// The value as a float, as remote-write carries it.
    pub fn as_f64(self) -> f64 {
        match self {
            SampleValue::Float(v) => v,
            SampleValue::Count(n) => n as f64,
        }
    }
}

/// One sample of a family, as the exposition formats and remote-write see
/// it: its name is the family's with `suffix` (`_total`, `_bucket`, `_sum`,
/// `_count`, or nothing), its labels the series' with `le` added for a
/// bucket.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The family it belongs to.
    pub family: &'a FamilySnapshot,
    /// What the sample's name adds to the family's.
    pub suffix: &'static str,
    /// The series' labels, sorted by name (shared: a sink may keep them).
    pub labels: &'a StoredLabels,
    /// A bucket's upper bound, `+Inf` for the last: the `le` label.
    pub le: Option<f64>,
    /// The value.
    pub value: SampleValue,
}

/// What a sink does with a snapshot: told of each family, then of each of
/// its samples, in order (see [`visit`]).
pub trait SnapshotVisitor {
    /// A family begins: its samples follow.
    fn family(&mut self, family: &FamilySnapshot);

    /// One sample of the family last begun.
    fn sample(&mut self, sample: Sample<'_>);
}

/// Walks `families` in order, family by family and series by series: a
/// gauge's or a counter's series give one sample each; a histogram's give
/// a sample per bucket, ending with `+Inf`, then `_sum` and `_count`.
pub fn visit(families: &[FamilySnapshot], visitor: &mut impl SnapshotVisitor) {
    for family in families {
        visitor.family(family);
        let suffix = family.kind.suffix();
        for (labels, value) in &family.series {
            visitor.sample(Sample {
                family,
                suffix,
                labels,
                le: None,
                value: SampleValue::Float(*value),
            });
        }
        for (labels, histogram) in &family.histograms {
            let sample = |suffix, le, value| Sample {
                family,
                suffix,
                labels,
                le,
                value,
            };
            for (le, count) in histogram.buckets() {
                visitor.sample(sample("_bucket", Some(le), SampleValue::Count(count)));
            }
            visitor.sample(sample("_sum", None, SampleValue::Float(histogram.sum)));
            visitor.sample(sample("_count", None, SampleValue::Count(histogram.count)));
        }
    }
}

impl SeriesStore {
    /// Copies every family with at least one series, families sorted by name
    /// and series by labels. Each shard is locked only while its entries'
    /// pointers are copied; grouping and sorting happen after. Every series
    /// is copied whole, but the copy is not one instant across shards: an
    /// update that lands while the copy runs may show without an earlier one.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        self.snapshot_of(|_| true)
    }

    /// As [`SeriesStore::snapshot`], with only the series this process
    /// counts itself: histograms, and counters kept by adding deltas (the
    /// HTTP and log aggregates, counters sent without a total). Each
    /// process that shares a subscription holds its own part of these,
    /// where every other value is the envelope's own.
    pub fn aggregates(&self) -> Vec<FamilySnapshot> {
        self.snapshot_of(|reading| match reading {
            Reading::Number { summed, .. } => *summed,
            Reading::Histogram { .. } => true,
        })
    }

    fn snapshot_of(&self, keep: impl Fn(&Reading) -> bool) -> Vec<FamilySnapshot> {
        let mut copied: Vec<(Text, StoredLabels, f64)> = Vec::with_capacity(self.len());
        let mut histograms: Vec<(Text, StoredLabels, HistogramSnapshot)> = Vec::new();
        for bucket in self.series.iter() {
            for series in bucket.as_slice().iter().filter(|s| keep(&s.reading)) {
                match &series.reading {
                    Reading::Number { value, .. } => {
                        copied.push((series.family.clone(), series.labels.clone(), *value))
                    }
                    Reading::Histogram { value, .. } => histograms.push((
                        series.family.clone(),
                        series.labels.clone(),
                        value.snapshot(),
                    )),
                }
            }
        }
        type Grouped = (
            Vec<(StoredLabels, f64)>,
            Vec<(StoredLabels, HistogramSnapshot)>,
        );
        let mut grouped: HashMap<Text, Grouped> = HashMap::new();
        for (family, labels, value) in copied {
            grouped.entry(family).or_default().0.push((labels, value));
        }
        for (family, labels, histogram) in histograms {
            grouped
                .entry(family)
                .or_default()
                .1
                .push((labels, histogram));
        }
        let mut families: Vec<FamilySnapshot> = grouped
            .into_iter()
            .filter_map(|(name, (mut series, mut histograms))| {
                let meta = self.families.get(&*name)?.clone();
                series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                histograms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Some(FamilySnapshot {
                    name: meta.name,
                    kind: meta.kind,
                    help: meta.help,
                    series,
                    histograms,
                })
            })
            .collect();
        families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        families
    }
}
