//! Interned strings and label sets, shared by the series that carry them.

use super::*;

/// A stored label set: interned names and values, sorted by name.
pub type StoredLabels = Arc<[(Text, Text)]>;

/// An interned string behind a thin pointer, so that a label takes 16 bytes
/// in a stored set instead of 32. Compares, orders and hashes as its text;
/// two handles on the same interned string are equal without reading it,
/// which spares a scrape's sort most of its string comparisons.
#[derive(Clone)]
pub struct Text(pub(super) Arc<Box<str>>);

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
    /// A string of its own, not interned.
    pub fn new(text: &str) -> Self {
        Self(Arc::new(Box::from(text)))
    }

    /// Whether only the interning table still holds it.
    pub(super) fn unused(&self) -> bool {
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

impl SeriesStore {
    /// The stored copy of a label set, shared with the series that have it.
    pub(super) fn intern_labels(&self, labels: &LabelSet<'_>) -> StoredLabels {
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
}
