//! Naming schemes: how an envelope becomes series updates. Pure functions,
//! no I/O, no clocks.

pub mod compat;
mod events;
pub mod native;

pub use events::{DEFAULT_HTTP_BUCKETS, SIZE_BUCKETS};

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::LazyLock;

use prost::Message;

use crate::envelope::{self, Envelope, EnvelopeRef, Fields, WireEnvelope};

/// How envelopes become series updates: what ingestion calls, whichever
/// scheme is active. An envelope yields any number of updates, always the
/// same number in the same order for the same identity.
pub trait NamingScheme: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// Calls `apply` with each update `envelope` yields, borrowing from the
    /// envelope. The tags are sorted, one per key, as
    /// [`envelope::with_checked`] and [`envelope::WireEnvelope::sorted`] give
    /// them.
    fn translate_each(&self, envelope: &EnvelopeRef<'_>, apply: impl FnMut(Update<'_>));

    /// The values of the updates [`NamingScheme::translate_each`] yields for
    /// an envelope with these `fields`, in the same order, without their
    /// names and labels. They may depend on the event type and the payload
    /// only: for v2 envelopes, the other fields are left empty
    /// ([`crate::envelope::Fields::of_payload`]).
    fn values_each(&self, fields: &Fields<'_>, value: impl FnMut(Value));

    /// Writes to `out` everything of `envelope` that the names and label
    /// sets of its updates depend on, and nothing else: two envelopes with
    /// the same identity yield updates for the same series, in the same order.
    fn identity(&self, envelope: &WireEnvelope<'_>, out: &mut Vec<u8>);

    /// Calls `apply` with each update a Loggregator v2 envelope yields:
    /// those of each metric it carries, read as the envelope model
    /// ([`envelope::v2::with_metrics`]), so that a metric gives the same
    /// series from either API.
    fn translate_v2_each(
        &self,
        envelope: &envelope::v2::Envelope,
        mut apply: impl FnMut(Update<'_>),
    ) {
        envelope::v2::with_metrics(envelope, |metric| self.translate_each(metric, &mut apply));
    }

    /// Appends the updates a v2 envelope yields to `out`, as owned copies;
    /// returns how many.
    fn translate_v2(
        &self,
        envelope: &envelope::v2::Envelope,
        out: &mut Vec<SeriesUpdate>,
    ) -> usize {
        let before = out.len();
        self.translate_v2_each(envelope, |update| out.push(update.to_owned()));
        out.len() - before
    }

    /// Appends the updates an owned envelope yields to `out`, as owned
    /// copies, by way of its wire form: for tools and tests. An envelope
    /// that would be rejected on the wire yields nothing. Returns how many
    /// updates were appended.
    fn translate(&self, envelope: &Envelope, out: &mut Vec<SeriesUpdate>) -> usize {
        let before = out.len();
        envelope::with_checked(&envelope.encode_to_vec(), |checked| {
            if let Ok(checked) = checked {
                self.translate_each(&checked, |update| out.push(update.to_owned()));
            }
        });
        out.len() - before
    }
}

/// Which names the flags ask for (`--metrics.naming` and its companions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Naming {
    /// Names as emitted.
    #[default]
    Native,
    /// The Go exporter's names.
    Compat {
        /// The prefix (`--metrics.namespace`); none when empty.
        namespace: String,
        /// Whether counters get a `_delta` gauge beside them.
        delta: bool,
        /// The HTTP series' `node_index` label.
        node_index: String,
    },
}

impl Naming {
    /// The scheme that names series as asked, with the label rules and
    /// buckets of `native`.
    pub fn scheme(&self, native: native::NativeScheme) -> Scheme {
        match self {
            Naming::Native => Scheme::Native(native),
            Naming::Compat {
                namespace,
                delta,
                node_index,
            } => Scheme::Compat(
                compat::CompatScheme::new(namespace, native)
                    .with_delta(*delta)
                    .with_node_index(node_index),
            ),
        }
    }
}

/// The scheme chosen at start-up (`--metrics.naming`).
#[derive(Debug, Clone)]
pub enum Scheme {
    /// Names as emitted, every tag a label: the default.
    Native(native::NativeScheme),
    /// The Go `firehose_exporter`'s names.
    Compat(compat::CompatScheme),
}

impl NamingScheme for Scheme {
    fn translate_each(&self, envelope: &EnvelopeRef<'_>, apply: impl FnMut(Update<'_>)) {
        match self {
            Scheme::Native(scheme) => scheme.translate_each(envelope, apply),
            Scheme::Compat(scheme) => scheme.translate_each(envelope, apply),
        }
    }

    fn values_each(&self, fields: &Fields<'_>, value: impl FnMut(Value)) {
        match self {
            Scheme::Native(scheme) => scheme.values_each(fields, value),
            Scheme::Compat(scheme) => scheme.values_each(fields, value),
        }
    }

    fn identity(&self, envelope: &WireEnvelope<'_>, out: &mut Vec<u8>) {
        match self {
            Scheme::Native(scheme) => scheme.identity(envelope, out),
            Scheme::Compat(scheme) => scheme.identity(envelope, out),
        }
    }
}

/// A sorted list of unique label pairs; the identity of a series within its family.
pub type Labels = Vec<(String, String)>;

/// The hasher of label sets and family names, seeded once per process.
static HASHER: LazyLock<foldhash::fast::FixedState> =
    LazyLock::new(|| foldhash::fast::FixedState::with_seed(rand::random()));

/// Hashes a family name, for combining with a label set's hash.
pub fn hash_family(name: &str) -> u64 {
    HASHER.hash_one(name)
}

/// A label set borrowed from an envelope as far as possible: sorted,
/// unique, and hashed once, however many series share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    hash: u64,
}

impl<'a> LabelSet<'a> {
    /// A set from pairs that are already sorted by name and unique.
    pub fn from_sorted(pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
        let mut hasher = HASHER.build_hasher();
        for (name, value) in &pairs {
            name.hash(&mut hasher);
            value.hash(&mut hasher);
        }
        Self {
            hash: hasher.finish(),
            pairs,
        }
    }

    /// A set from owned labels (sorted and unique).
    pub fn from_labels(labels: &'a Labels) -> Self {
        Self::from_sorted(
            labels
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
        )
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True without labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The hash of the whole set.
    pub fn hash_value(&self) -> u64 {
        self.hash
    }

    /// An owned copy.
    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// One series update, borrowing from the envelope it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// The family name: sanitized, and for counters without `_total`.
    pub family: &'a str,
    /// Gauge, counter or histogram.
    pub kind: MetricKind,
    /// The name as the platform emitted it, for the HELP text.
    pub original: &'a str,
    /// The label set, possibly shared with other updates of the envelope.
    pub labels: &'a LabelSet<'a>,
    /// The new value.
    pub value: Value,
    /// A histogram's bucket bounds, ascending, without `+Inf`; taken when
    /// its family is created. Empty for gauges and counters.
    pub buckets: &'a [f64],
}

impl Update<'_> {
    /// The HELP text of the family this update belongs to.
    pub fn help(&self) -> String {
        self.kind.help(self.original)
    }

    /// The sample name under which the value is exposed.
    pub fn sample_name(&self) -> Cow<'_, str> {
        self.kind.sample_name(self.family)
    }

    /// An owned copy.
    pub fn to_owned(&self) -> SeriesUpdate {
        SeriesUpdate {
            family: self.family.to_owned(),
            kind: self.kind,
            original: self.original.to_owned(),
            labels: self.labels.to_labels(),
            value: self.value,
            buckets: self.buckets.to_vec(),
        }
    }
}

/// The Prometheus type of a relayed family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Last value wins.
    Gauge,
    /// Cumulative; exposed as `<family>_total`.
    Counter,
    /// Observations counted in cumulative buckets, with their sum and
    /// count: `<family>_bucket{le}`, `<family>_sum`, `<family>_count`.
    Histogram,
}

impl MetricKind {
    /// The lower-case name used in HELP texts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
        }
    }

    /// What a family of this kind adds to its name for the names it takes:
    /// its samples' and those OpenMetrics reserves for it (`_created`),
    /// which no other family may have.
    pub fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricKind::Gauge => &[""],
            MetricKind::Counter => &["", "_total", "_created"],
            MetricKind::Histogram => &["", "_bucket", "_count", "_sum", "_created"],
        }
    }

    /// The HELP text of a family of this kind emitted as `original`.
    pub fn help(self, original: &str) -> String {
        format!("Cloud Foundry {} '{}'", self.as_str(), original)
    }

    /// The name under which the samples of family `family` are exposed:
    /// for a histogram, the family's (its samples add `_bucket`, `_sum` and
    /// `_count`).
    pub fn sample_name(self, family: &str) -> Cow<'_, str> {
        match self.suffix() {
            "" => Cow::Borrowed(family),
            suffix => Cow::Owned(format!("{family}{suffix}")),
        }
    }

    /// What the name of a gauge's or a counter's sample adds to its
    /// family's: `_total` for a counter, nothing for the others (a
    /// histogram's samples add their own).
    pub fn suffix(self) -> &'static str {
        match self {
            MetricKind::Gauge | MetricKind::Histogram => "",
            MetricKind::Counter => "_total",
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
    /// Count one observation in a histogram.
    Observe(f64),
}

/// One series update produced by translation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesUpdate {
    /// The family name: sanitized, and for counters without the `_total` suffix.
    pub family: String,
    /// Gauge, counter or histogram.
    pub kind: MetricKind,
    /// The name as the platform emitted it, for the HELP text.
    pub original: String,
    /// Sorted, unique, valid label names; no empty values.
    pub labels: Labels,
    /// The new value.
    pub value: Value,
    /// A histogram's bucket bounds (see [`Update::buckets`]); empty otherwise.
    pub buckets: Vec<f64>,
}

impl SeriesUpdate {
    /// The HELP text of the family this update belongs to.
    pub fn help(&self) -> String {
        self.kind.help(&self.original)
    }

    /// The sample name under which the value is exposed.
    pub fn sample_name(&self) -> String {
        self.kind.sample_name(&self.family).into_owned()
    }
}
