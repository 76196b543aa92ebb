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

/// Every suffix some kind of family adds to its name.
const ALL_SUFFIXES: [&str; 5] = ["_total", "_created", "_bucket", "_count", "_sum"];

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
    /// A histogram family's bucket bounds, which all its series share;
    /// empty for the other kinds.
    pub(super) bounds: Bounds,
}

/// What a new series takes from its family.
#[derive(Debug, Clone)]
pub(super) struct FamilyRef {
    /// The family name as its series hold it.
    pub(super) text: Text,
    /// The bucket bounds of a histogram family.
    pub(super) bounds: Bounds,
}

impl FamilyMeta {
    fn reference(&self) -> FamilyRef {
        FamilyRef {
            text: self.text.clone(),
            bounds: self.bounds.clone(),
        }
    }
}

impl SeriesStore {
    /// The registered family for an update, registering it if new; `None` when
    /// the name cannot be used without making the exposition invalid.
    pub(super) fn family(&self, update: &Update<'_>) -> Option<FamilyRef> {
        if let Some(meta) = self.families.get(update.family) {
            if meta.kind == update.kind {
                return Some(meta.reference());
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
                return Some(meta.reference());
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
            text,
            kind: update.kind,
            help: Arc::from(update.help()),
            bounds: histogram::bounds(match update.kind {
                MetricKind::Histogram => update.buckets,
                MetricKind::Gauge | MetricKind::Counter => &[],
            }),
        };
        let reference = meta.reference();
        self.families.insert(name, meta);
        Some(reference)
    }

    /// Why a new family would clash with an existing one, if it would.
    /// A family takes its name and its name with each of its kind's
    /// [suffixes](MetricKind::suffixes): a gauge `g` takes `g`; a counter
    /// `c` takes `c`, `c_total` and `c_created`; a histogram `h` takes `h`,
    /// `h_bucket`, `h_count`, `h_sum` and `h_created`. Two families clash
    /// when they take a name in common: a gauge `foo_total` beside a
    /// counter `foo`, a counter `foo_created` beside a counter `foo`, a
    /// gauge `h_sum` or a counter `h_bucket` beside a histogram `h`, a
    /// histogram `c` beside a counter `c_count`.
    fn clash(&self, update: &Update<'_>) -> Option<String> {
        if update.family.starts_with(PREFIX) {
            return Some("the prefix is reserved for the exporter's own metrics".into());
        }
        let family = update.family;
        for suffix in update.kind.suffixes() {
            let name: Cow<'_, str> = match *suffix {
                "" => Cow::Borrowed(family),
                suffix => Cow::Owned(format!("{family}{suffix}")),
            };
            if let Some(meta) = self.families.get(name.as_ref()) {
                return Some(format!(
                    "the {} {name} takes the same name",
                    meta.kind.as_str()
                ));
            }
            for taken in ALL_SUFFIXES {
                let Some(base) = name.strip_suffix(taken) else {
                    continue;
                };
                if let Some(meta) = self.families.get(base)
                    && meta.kind.suffixes().contains(&taken)
                {
                    return Some(format!(
                        "the {} {base} takes the name {name}",
                        meta.kind.as_str()
                    ));
                }
            }
        }
        None
    }

    /// Counts a conflicting update, and logs it once per name.
    pub(super) fn conflict(&self, update: &Update<'_>, reason: &str) {
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
