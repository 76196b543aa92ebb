//! Bounds on the bytes of one series: name and label value lengths, labels per series.

use super::*;

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
        Self::DEFAULT
    }
}

impl SeriesLimits {
    /// The defaults of `--metrics.max-name-length`,
    /// `--metrics.max-label-value-length` and `--metrics.max-labels`.
    pub const DEFAULT: Self = Self {
        max_name_length: 1024,
        max_label_value_length: 2048,
        max_labels: 64,
    };

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

/// Which limit an update exceeds.
#[derive(Debug, Clone, Copy)]
enum Exceeded {
    Name,
    Labels,
    LabelValue,
}

impl Exceeded {
    /// The `reason` label of `series_rejected_total`.
    fn reason(self) -> &'static str {
        match self {
            Exceeded::Name => "name_too_long",
            Exceeded::Labels => "too_many_labels",
            Exceeded::LabelValue => "label_value_too_long",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Exceeded::Name => "--metrics.max-name-length",
            Exceeded::Labels => "--metrics.max-labels",
            Exceeded::LabelValue => "--metrics.max-label-value-length",
        }
    }
}

impl SeriesStore {
    /// Whether a new family's name is refused; counts and logs it.
    pub(super) fn family_over_limit(&self, update: &Update<'_>) -> bool {
        let over = update.family.len() > self.limits.max_name_length;
        if over {
            self.over_limit(update, Exceeded::Name);
        }
        over
    }

    /// Whether a new series' labels are refused; counts and logs them.
    pub(super) fn labels_over_limit(&self, update: &Update<'_>) -> bool {
        let limits = &self.limits;
        let labels = || update.labels.iter();
        let exceeded = if update.labels.len() > limits.max_labels {
            Exceeded::Labels
        } else if labels().any(|(k, _)| k.len() > limits.max_name_length) {
            Exceeded::Name
        } else if labels().any(|(_, v)| v.len() > limits.max_label_value_length) {
            Exceeded::LabelValue
        } else {
            return false;
        };
        self.over_limit(update, exceeded);
        true
    }

    /// Counts an update refused by a limit, and logs the first of each kind.
    fn over_limit(&self, update: &Update<'_>, exceeded: Exceeded) {
        let reason = exceeded.reason();
        self.telemetry.series_rejected(reason).inc();
        let bit = 1 << exceeded as usize;
        if self.limits_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(
                metric = %bounded(update.original),
                reason,
                "dropping new series over a limit ({}); further ones are only counted",
                exceeded.flag()
            );
        }
    }
}
