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

impl SeriesStore {
    /// Why a new family's name is refused, if it is.
    pub(super) fn family_over_limit(&self, update: &Update<'_>) -> bool {
        if update.family.len() > self.limits.max_name_length {
            self.over_limit(update, "name_too_long", "--metrics.max-name-length");
            return true;
        }
        false
    }

    /// Whether a new series' labels are refused; counts and logs them.
    pub(super) fn labels_over_limit(&self, update: &Update<'_>) -> bool {
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
}
