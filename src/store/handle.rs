//! Handles on series, for ingestion to update a known series without its labels.

use super::*;

/// A series as one ingestion task found it, to update it again without its
/// labels: its key, and the shared family name and label set it holds. The
/// handle holds them too, so while it lives no other name or label set can
/// be allocated where they are, and comparing addresses is exact.
#[derive(Debug, Clone)]
pub struct SeriesHandle {
    pub(super) key: u64,
    pub(super) kind: MetricKind,
    pub(super) family: Text,
    pub(super) labels: StoredLabels,
    /// Where the series was when the handle was made: only ever prefetched,
    /// never read, so it may be stale.
    pub(super) hint: usize,
}

impl SeriesHandle {
    /// The series' family name, as the store holds it.
    pub fn family(&self) -> &Text {
        &self.family
    }

    /// The series' labels, sorted by name.
    pub fn labels(&self) -> &StoredLabels {
        &self.labels
    }

    /// The kind of the series' family.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

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
