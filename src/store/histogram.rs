//! Histogram series: observations counted in buckets, with their sum and
//! count, as Prometheus' classic histograms expose them.

use std::sync::Arc;

/// The upper bounds of a histogram family's buckets: finite, ascending,
/// without `+Inf`, which every histogram has. Shared by its series.
pub type Bounds = Arc<[f64]>;

/// The bounds a family is created with: `raw` without the bounds that are
/// not finite, sorted, each once.
pub(crate) fn bounds(raw: &[f64]) -> Bounds {
    let mut bounds: Vec<f64> = raw.iter().copied().filter(|b| b.is_finite()).collect();
    bounds.sort_unstable_by(f64::total_cmp);
    bounds.dedup();
    bounds.into()
}

/// The state of one histogram series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    bounds: Bounds,
    /// Observations per bucket, not cumulative; the last is `+Inf`'s alone.
    counts: Box<[u64]>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with `bounds`.
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            counts: vec![0; bounds.len() + 1].into(),
            bounds,
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`
    /// (`le`); a NaN goes to `+Inf` only, as client_golang does.
    pub(crate) fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .partition_point(|bound| *bound < value || value.is_nan());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// A copy for a scrape, with the counts made cumulative.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self.counts[..self.bounds.len()]
            .iter()
            .map(|n| {
                running += n;
                running
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.clone(),
            cumulative,
            sum: self.sum,
            count: self.count,
        }
    }
}

/// A histogram series as a scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The upper bounds of the buckets, without `+Inf`.
    pub bounds: Bounds,
    /// Observations at or below each bound: one per bound, non-decreasing.
    pub cumulative: Vec<u64>,
    /// The sum of the observations.
    pub sum: f64,
    /// The number of observations: the `+Inf` bucket's count.
    pub count: u64,
}

impl HistogramSnapshot {
    /// Each bucket's bound and cumulative count, ending with `+Inf` and the
    /// count of all observations.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .zip(self.cumulative.iter().copied())
            .chain(std::iter::once((f64::INFINITY, self.count)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_finite_sorted_and_unique() {
        let raw = [1.0, f64::NAN, 0.5, f64::INFINITY, 1.0, -2.0];
        assert_eq!(&*bounds(&raw), &[-2.0, 0.5, 1.0]);
    }

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let mut h = Histogram::new(bounds(&[0.1, 1.0, 10.0]));
        for value in [0.05, 0.1, 0.5, 1.0, 5.0, 50.0, f64::NAN] {
            h.observe(value);
        }
        let s = h.snapshot();
        assert_eq!(
            s.buckets().collect::<Vec<_>>(),
            [(0.1, 2), (1.0, 4), (10.0, 5), (f64::INFINITY, 7)]
        );
        assert_eq!(s.count, 7);
        assert!(s.sum.is_nan(), "a NaN observation makes the sum NaN");
        let mut h = Histogram::new(bounds(&[]));
        h.observe(3.0);
        h.observe(4.5);
        let s = h.snapshot();
        assert_eq!(s.buckets().collect::<Vec<_>>(), [(f64::INFINITY, 2)]);
        assert_eq!(s.sum, 7.5);
    }
}
