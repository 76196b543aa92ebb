//! The family registry: which names are families of which kind, and the clash rules that keep the exposition valid.

use super::*;

/// Families a [`FamilyCache`] remembers before it starts over.
pub(super) const FAMILY_CACHE_MAX: usize = 100_000;

/// One ingestion task's memory of the family registry: which names are
/// families of which kind. Emptied whenever the store forgets families.
#[derive(Debug, Default, Clone)]
pub struct FamilyCache {
    pub(super) generation: u64,
    /// Each family's kind, and the hash of its name for series keys.
    pub(super) kinds: HashMap<Box<str>, (MetricKind, u64), foldhash::fast::RandomState>,
}

/// Conflicting names remembered so that each is logged once; beyond this
/// many, conflicts are still counted but no longer logged.
const CONFLICTS_LOGGED_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub(super) struct FamilyMeta {
    pub(super) name: Arc<str>,
    /// The name as the family's series hold it.
    pub(super) text: Text,
    pub(super) kind: MetricKind,
    pub(super) help: Arc<str>,
}

impl SeriesStore {
    /// The registered family for an update, registering it if new; `None` when
    /// the name cannot be used without making the exposition invalid.
    pub(super) fn family(&self, update: &Update<'_>) -> Option<Text> {
        if let Some(meta) = self.families.get(update.family) {
            if meta.kind == update.kind {
                return Some(meta.text.clone());
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
        if let Some(meta) = self.families.get(update.family) {
            if meta.kind == update.kind {
                return Some(meta.text.clone());
            }
            drop(meta);
            self.conflict(update, "it is already another type");
            return None;
        }
        if let Some(reason) = self.clash(update) {
            self.conflict(update, &reason);
            return None;
        }
        let name: Arc<str> = Arc::from(update.family);
        let text = Text::new(update.family);
        let meta = FamilyMeta {
            name: name.clone(),
            text: text.clone(),
            kind: update.kind,
            help: Arc::from(update.help()),
        };
        self.families.insert(name, meta);
        Some(text)
    }

    /// Why a new family would clash with an existing one, if it would.
    /// A gauge `g` takes the name `g`; a counter `c` takes `c`, `c_total`
    /// (its samples) and `c_created` (which OpenMetrics reserves for it, and
    /// strict parsers refuse to see as another family). Two families clash
    /// when they take a name in common: a gauge `foo_total` or `foo_created`
    /// beside a counter `foo`, a counter `foo_created` beside a counter `foo`.
    fn clash(&self, update: &Update<'_>) -> Option<String> {
        if update.family.starts_with(PREFIX) {
            return Some("the prefix is reserved for the exporter's own metrics".into());
        }
        let family = update.family;
        let mut taken = vec![Cow::Borrowed(family)];
        if update.kind == MetricKind::Counter {
            taken.push(Cow::Owned(format!("{family}_total")));
            taken.push(Cow::Owned(format!("{family}_created")));
        }
        for name in &taken {
            if let Some(meta) = self.families.get(name.as_ref()) {
                return Some(format!(
                    "the {} {name} takes the same name",
                    meta.kind.as_str()
                ));
            }
            for suffix in ["_total", "_created"] {
                let Some(base) = name.strip_suffix(suffix) else {
                    continue;
                };
                if let Some(meta) = self.families.get(base)
                    && meta.kind == MetricKind::Counter
                {
                    return Some(format!("the counter {base} takes the name {name}"));
                }
            }
        }
        None
    }

    /// Counts a conflicting update, and logs it once per name.
    fn conflict(&self, update: &Update<'_>, reason: &str) {
        self.telemetry.series_rejected("conflict").inc();
        let name = update.sample_name();
        let hash = hash_family(&name);
        if self.conflicts_logged.len() < CONFLICTS_LOGGED_MAX
            && self.conflicts_logged.insert(hash, ()).is_none()
        {
            tracing::warn!(
                metric = %bounded(update.original),
                kind = update.kind.as_str(),
                "dropping updates to {}: {}",
                bounded(&name),
                bounded(reason)
            );
        }
    }
}
