//! Naming schemes: how an envelope becomes series updates. Pure functions,
//! no I/O, no clocks.

pub mod native;

/// A sorted list of unique label pairs; the identity of a series within its family.
pub type Labels = Vec<(String, String)>;

/// The Prometheus type of a relayed family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Last value wins.
    Gauge,
    /// Cumulative; exposed as `<family>_total`.
    Counter,
}

impl MetricKind {
    /// The lower-case name used in HELP texts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        }
    }
}

/// How an update changes a series' value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Replace the value (a gauge reading, or a counter's running total).
    Set(f64),
    /// Add to the value (a counter event that carries only a delta).
    Add(f64),
}

/// One series update produced by translation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesUpdate {
    /// The family name: sanitized, and for counters without the `_total` suffix.
    pub family: String,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The name as the platform emitted it, for the HELP text.
    pub original: String,
    /// Sorted, unique, valid label names; no empty values.
    pub labels: Labels,
    /// The new value.
    pub value: Value,
}

impl SeriesUpdate {
    /// The HELP text of the family this update belongs to.
    pub fn help(&self) -> String {
        format!("Cloud Foundry {} '{}'", self.kind.as_str(), self.original)
    }

    /// The sample name under which the value is exposed.
    pub fn sample_name(&self) -> String {
        match self.kind {
            MetricKind::Gauge => self.family.clone(),
            MetricKind::Counter => format!("{}_total", self.family),
        }
    }
}
