//! v2 envelopes read in place, as the RLP sends them: a batch's envelopes
//! are read by `scan` into slices of the batch and checked as a
//! [`WireV2`], with the tags and deprecated tags still encoded, in the order
//! sent, and the gauge's metrics read and sorted by name.
//!
//! [`WireV2::identity`] is everything the series of its metrics can depend
//! on and no value, whatever order the sender wrote its maps in, so that ingestion can recognise an envelope it has seen
//! and apply [`WireV2::payloads`] without decoding a tag;
//! [`WireV2::metrics`] decodes the tags and gives each metric as the
//! envelope model, with the fields and tags Doppler's v2 → v1 conversion
//! would give it (protocol.md §3.4).

use std::borrow::Cow;
use std::cell::RefCell;

use super::scan::{self, Entry, Parts, Span, TypedValue};
use crate::envelope::borrowed::utf8;
use crate::envelope::events::envelope::EventType;
use crate::envelope::{
    DecodeError, EnvelopeRef, Fields, Http, Instance, LogType, Payload, Peer, by_key,
};

/// The tags that become an envelope's fixed v1 fields (origin and the BOSH
/// fields), and the marker of a v1 type; never tags of their own.
const FIXED_TAGS: [&str; 6] = ["origin", "deployment", "job", "index", "ip", "__v1_type"];

/// The five keys of a container's gauge.
const CONTAINER_KEYS: [&str; 5] = ["cpu", "memory", "disk", "memory_quota", "disk_quota"];

/// What a v2 envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counter.
    Counter,
    /// A gauge of one or more metrics.
    Gauge,
    /// A timed operation.
    Timer,
    /// A log line.
    Log,
    /// An event for people to read.
    Event,
    /// Nothing.
    None,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub const ALL: [Kind; 6] = [
        Kind::Counter,
        Kind::Gauge,
        Kind::Timer,
        Kind::Log,
        Kind::Event,
        Kind::None,
    ];

    /// The kind's name, as a label: `counter`, say.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Log => "log",
            Kind::Event => "event",
            Kind::None => "none",
        }
    }

    /// Its position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One metric of a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaugeMetric<'a> {
    /// Its key in the gauge.
    pub name: &'a str,
    /// Its unit.
    pub unit: &'a str,
    /// The reading.
    pub value: f64,
}

/// A checked v2 envelope whose tags are still encoded.
#[derive(Debug)]
pub struct WireV2<'a> {
    /// The envelope's encoding.
    whole: &'a [u8],
    /// Nanoseconds since the Unix epoch; 0 when not sent.
    timestamp: i64,
    kind: Kind,
    source_id: &'a str,
    instance_id: &'a str,
    /// The entries of `tags`, as sent.
    tags: &'a [Entry],
    /// The entries of `deprecated_tags`, as sent.
    deprecated: &'a [Entry],
    /// Name, delta and total.
    counter: Option<(&'a str, u64, u64)>,
    /// The gauge's metrics by name, one per name (the last sent): name,
    /// unit (both checked UTF-8) and value.
    readings: &'a [(Span, Span, f64)],
    /// Whether the gauge is a container's ([`WireV2::is_container`]),
    /// found once.
    container: bool,
    /// The timer's name (checked UTF-8) and duration in nanoseconds.
    timer: Option<(&'a str, i64)>,
    /// The log's payload length, and whether it is standard error.
    log: Option<(u64, bool)>,
}

/// Decodes every envelope of an encoded `EnvelopeBatch` and hands each
/// one's encoding to `f`, in order.
pub fn for_each_in_batch(batch: &[u8], f: impl FnMut(&[u8])) -> Result<(), DecodeError> {
    scan::batch(batch, f)
}

/// Decodes and checks one encoded v2 envelope and hands it to `f`, which
/// borrows its strings from `bytes`; the borrow ends when `f` returns.
pub fn with_wire<R>(bytes: &[u8], f: impl FnOnce(Result<WireV2<'_>, DecodeError>) -> R) -> R {
    thread_local! {
        static PARTS: RefCell<Parts> = RefCell::default();
    }
    PARTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut parts) => f(read(bytes, &mut parts)),
        // `f` reads another envelope: that one gets parts of its own.
        Err(_) => f(read(bytes, &mut Parts::default())),
    })
}

/// Reads `whole` into `parts` and checks it.
fn read<'a>(whole: &'a [u8], parts: &'a mut Parts) -> Result<WireV2<'a>, DecodeError> {
    parts.read(whole)?;
    let readings = &mut parts.readings;
    for (name, unit, _) in readings.iter() {
        utf8(name.in_(whole), "gauge metric name")?;
        utf8(unit.in_(whole), "gauge metric unit")?;
    }
    if readings.len() > 1 {
        // Sorted by name, wire order kept among equal names; then the last wins.
        readings.sort_by(|a, b| a.0.in_(whole).cmp(b.0.in_(whole)));
        readings.dedup_by(|later, earlier| {
            let same = later.0.in_(whole) == earlier.0.in_(whole);
            if same {
                *earlier = *later;
            }
            same
        });
    }
    let parts = &*parts;
    let (mut timer, mut log) = (None, None);
    let (kind, counter) = match parts.message {
        scan::Message::Counter(name, delta, total) => {
            let name = utf8(name.in_(whole), "counter name")?;
            (Kind::Counter, Some((name, delta, total)))
        }
        scan::Message::Gauge(_) => (Kind::Gauge, None),
        scan::Message::Timer(name, start, stop) => {
            let name = utf8(name.in_(whole), "timer name")?;
            timer = Some((name, stop.saturating_sub(start)));
            (Kind::Timer, None)
        }
        scan::Message::Log(len, kind) => {
            log = Some((len, kind != 0));
            (Kind::Log, None)
        }
        scan::Message::Event => (Kind::Event, None),
        scan::Message::None => (Kind::None, None),
    };
    let mut wire = WireV2 {
        whole,
        timestamp: parts.timestamp,
        kind,
        source_id: utf8(parts.source_id.in_(whole), "source_id")?,
        instance_id: utf8(parts.instance_id.in_(whole), "instance_id")?,
        tags: &parts.tags,
        deprecated: &parts.deprecated,
        counter,
        readings: &parts.readings,
        container: false,
        timer,
        log,
    };
    wire.container = wire.is_container();
    Ok(wire)
}

/// A reading of `whole`'s gauge, its strings checked when read.
fn metric_of<'a>(whole: &'a [u8], &(name, unit, value): &(Span, Span, f64)) -> GaugeMetric<'a> {
    GaugeMetric {
        name: utf8(name.in_(whole), "").unwrap_or_default(),
        unit: utf8(unit.in_(whole), "").unwrap_or_default(),
        value,
    }
}

/// A deprecated tag's value as text, as the v1 conversion prints it.
fn value_text(value: Option<TypedValue<'_>>) -> Result<Option<Cow<'_, str>>, DecodeError> {
    Ok(match value {
        Some(TypedValue::Text(text)) => Some(Cow::Borrowed(utf8(text, "tag value")?)),
        Some(TypedValue::Integer(n)) => Some(Cow::Owned(n.to_string())),
        Some(TypedValue::Decimal(d)) => Some(Cow::Owned(format!("{d:.6}"))),
        None => None,
    })
}

impl<'a> WireV2<'a> {
    /// What the envelope carries.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// When the envelope was emitted, in nanoseconds since the Unix epoch;
    /// 0 when not sent.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Whether it carries metrics (a counter or a gauge).
    pub fn carries_metrics(&self) -> bool {
        matches!(self.kind, Kind::Counter | Kind::Gauge)
    }

    /// Whether it gives series: metrics, an HTTP timer or a log (an
    /// error, when it is one converted from v1).
    pub fn gives_series(&self) -> bool {
        self.carries_metrics() || self.log.is_some() || self.timer.is_some_and(|(n, _)| n == "http")
    }

    /// The gauge's metrics, by name.
    fn gauge(&self) -> impl Iterator<Item = GaugeMetric<'a>> + use<'a> {
        let whole = self.whole;
        self.readings
            .iter()
            .map(move |reading| metric_of(whole, reading))
    }

    /// Whether the gauge is a container's: more than one metric, and the
    /// five keys all present, none with an empty unit and a value of 0.
    fn is_container(&self) -> bool {
        self.readings.len() > 1
            && CONTAINER_KEYS.iter().all(|key| {
                self.metric(key)
                    .is_some_and(|m| !(m.unit.is_empty() && m.value == 0.0))
            })
    }

    fn metric(&self, name: &str) -> Option<GaugeMetric<'a>> {
        let whole = self.whole;
        let i = self
            .readings
            .binary_search_by(|(n, _, _)| n.in_(whole).cmp(name.as_bytes()))
            .ok()?;
        Some(metric_of(whole, &self.readings[i]))
    }

    /// The container's instance index: its `instance_index` metric, else
    /// the instance id.
    fn instance_index(&self) -> i32 {
        match self.metric("instance_index") {
            Some(m) => m.value as i32,
            None => self.instance_id.parse().unwrap_or(0),
        }
    }

    /// Calls `f` with the event type and payload of each metric the
    /// envelope carries: a counter gives one; a container's gauge one
    /// container metric; any other gauge one value metric per key, in key
    /// order. Timers, logs and events carry no metric and give none.
    pub fn payloads(&self, mut f: impl FnMut(EventType, Payload<'a>)) {
        if let Some((name, delta, total)) = self.counter {
            // A total of 0 with a delta is a counter that sends deltas only.
            let total = (total != 0 || delta == 0).then_some(total);
            return f(
                EventType::CounterEvent,
                Payload::Counter { name, delta, total },
            );
        }
        if self.container {
            let value = |key: &str| self.metric(key).map_or(0.0, |m| m.value);
            let payload = Payload::Container {
                application_id: self.source_id,
                instance_index: self.instance_index(),
                cpu_percentage: value("cpu"),
                memory_bytes: value("memory") as u64,
                disk_bytes: value("disk") as u64,
                memory_bytes_quota: Some(value("memory_quota") as u64),
                disk_bytes_quota: Some(value("disk_quota") as u64),
            };
            return f(EventType::ContainerMetric, payload);
        }
        for metric in self.gauge() {
            let payload = Payload::Value {
                name: metric.name,
                value: metric.value,
                unit: metric.unit,
            };
            f(EventType::ValueMetric, payload);
        }
    }

    /// Writes to `out` everything the series of the envelope's metrics can
    /// depend on, and no value: two envelopes with the same identity carry
    /// the same metrics with the same fields and tags, in the same order.
    ///
    /// Senders write maps in any order, so the tags and the deprecated tags
    /// are written as their number and the sums of `hash_entry` over their
    /// encoded entries: the same entries in any order give the same
    /// identity, and nothing has to be sorted. When a key is repeated, the
    /// order decides which entry wins; such an envelope must not be
    /// remembered ([`WireV2::repeats_a_key`]), and then no other order of its
    /// entries can be taken for it.
    pub fn identity(&self, out: &mut Vec<u8>, hash_entry: impl Fn(&[u8]) -> [u64; 2]) {
        fn put(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out.clear();
        out.push(self.kind as u8);
        put(out, self.source_id.as_bytes());
        put(out, self.instance_id.as_bytes());
        if let Some((name, _, _)) = self.counter {
            put(out, name.as_bytes());
        }
        if self.container {
            out.push(1);
            out.extend_from_slice(&self.instance_index().to_le_bytes());
        } else {
            out.push(0);
            out.extend_from_slice(&(self.readings.len() as u32).to_le_bytes());
            for metric in self.gauge() {
                put(out, metric.name.as_bytes());
                put(out, metric.unit.as_bytes());
            }
        }
        for entries in [self.tags, self.deprecated] {
            let sums = entries.iter().fold([0u64; 2], |[a, b], entry| {
                let [x, y] = hash_entry(entry.all.in_(self.whole));
                [a.wrapping_add(x), b.wrapping_add(y)]
            });
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            out.extend_from_slice(&sums[0].to_le_bytes());
            out.extend_from_slice(&sums[1].to_le_bytes());
        }
    }

    /// Whether the tags or the deprecated tags give a key more than once:
    /// then the last sent wins, and another order of the same entries,
    /// which has the same [`WireV2::identity`], reads otherwise.
    pub fn repeats_a_key(&self) -> bool {
        [self.tags, self.deprecated].into_iter().any(|entries| {
            let mut keys: Vec<&[u8]> = entries.iter().map(|e| e.key.in_(self.whole)).collect();
            keys.sort_unstable();
            keys.windows(2).any(|pair| pair[0] == pair[1])
        })
    }

    /// Calls `f` with each metric the envelope carries (as
    /// [`WireV2::payloads`] orders them) as the envelope model, with the
    /// fields and tags Doppler's v1 conversion gives: tags, then deprecated
    /// tags where tags lack the key, less the fixed ones; `source_id` (and
    /// but for a container's metric `instance_id`) from the envelope when
    /// set. Fails when a tag does not decode or is not UTF-8.
    pub fn metrics(&self, mut f: impl FnMut(&EnvelopeRef<'_>)) -> Result<(), DecodeError> {
        let whole = self.whole;
        let mut tags = Vec::with_capacity(self.tags.len());
        for entry in self.tags {
            tags.push((
                utf8(entry.key.in_(whole), "tag key")?,
                utf8(entry.value.in_(whole), "tag value")?,
            ));
        }
        let tags = sorted_last_wins(tags);
        let mut deprecated = Vec::with_capacity(self.deprecated.len());
        for entry in self.deprecated {
            let text = value_text(scan::typed_value(entry.value.in_(whole))?)?;
            deprecated.push((utf8(entry.key.in_(whole), "tag key")?, text));
        }
        // The last sent of a key wins, even when it has no value.
        let deprecated: Vec<(&str, Cow<'_, str>)> = sorted_last_wins(deprecated)
            .into_iter()
            .filter_map(|(key, text)| Some((key, text?)))
            .collect();
        let find = |key: &str| -> Option<&str> {
            let tag = tags.binary_search_by(|(k, _)| by_key(k, key)).ok();
            tag.map(|i| tags[i].1).or_else(|| {
                let i = deprecated.binary_search_by(|(k, _)| by_key(k, key)).ok()?;
                Some(deprecated[i].1.as_ref())
            })
        };
        // Looked up once, however many metrics the envelope carries.
        let [origin, deployment, job, index, ip] =
            ["origin", "deployment", "job", "index", "ip"].map(|key| find(key).unwrap_or(""));
        let merged = |with_instance: bool| {
            let overridden = |key: &str| {
                (key == "source_id" && !self.source_id.is_empty())
                    || (with_instance && key == "instance_id" && !self.instance_id.is_empty())
            };
            let mut merged: Vec<(&str, &str)> = Vec::with_capacity(tags.len() + 2);
            merged.extend(
                tags.iter()
                    .copied()
                    .filter(|(k, _)| !FIXED_TAGS.contains(k) && !overridden(k)),
            );
            for &(key, ref value) in &deprecated {
                let in_tags = tags.binary_search_by(|(k, _)| by_key(k, key)).is_ok();
                if !FIXED_TAGS.contains(&key) && !overridden(key) && !in_tags {
                    merged.push((key, value));
                }
            }
            if !self.source_id.is_empty() {
                merged.push(("source_id", self.source_id));
            }
            if with_instance && !self.instance_id.is_empty() {
                merged.push(("instance_id", self.instance_id));
            }
            merged.sort_unstable_by(|a, b| by_key(a.0, b.0));
            merged
        };
        let model = |event_type, payload, tags| EnvelopeRef {
            fields: Fields {
                origin,
                event_type,
                deployment: Some(deployment),
                job: Some(job),
                index: Some(index),
                ip: Some(ip),
                payload,
            },
            tags,
        };
        if let Some((event_type, payload)) = self.event(&find) {
            // An error's source and code tags are read by the schemes,
            // which leave them out of its labels.
            f(&model(event_type, payload, merged(false)));
            return Ok(());
        }
        let mut shared: Option<Vec<(&str, &str)>> = None;
        self.payloads(|event_type, payload| {
            let with_instance = event_type != EventType::ContainerMetric;
            let tags = shared.get_or_insert_with(|| merged(with_instance)).clone();
            f(&model(event_type, payload, tags));
        });
        Ok(())
    }

    /// The event a timer or a log is, as Doppler's v1 conversion reads it
    /// (protocol.md §3.4): a timer named `http` an HTTP request from its
    /// tags; a log a log line, or an error when `__v1_type` says so.
    /// `None` for anything else, a timer of another name too (Diego's
    /// `spike`).
    fn event<'t>(&self, tag: &impl Fn(&str) -> Option<&'t str>) -> Option<(EventType, Payload<'t>)>
    where
        'a: 't,
    {
        if let Some((name, duration_ns)) = self.timer {
            if name != "http" {
                return None;
            }
            let peer = match tag("peer_type") {
                Some("Client") => Peer::Client,
                Some("Server") => Peer::Server,
                _ => Peer::Unknown,
            };
            let http = Http {
                peer,
                method: tag("method").unwrap_or(""),
                status_code: tag("status_code").and_then(|c| c.parse().ok()).unwrap_or(0),
                duration_ns,
                content_length: tag("content_length").and_then(|c| c.parse().ok()),
                application_id: None,
                instance: match self.instance_id {
                    "" => Instance::None,
                    id => Instance::Text(id),
                },
            };
            return Some((EventType::HttpStartStop, Payload::Http(http)));
        }
        let (bytes, err) = self.log?;
        if tag("__v1_type") == Some("Error") {
            let payload = Payload::Error {
                source: tag("source").unwrap_or(""),
                code: tag("code").and_then(|c| c.parse().ok()).unwrap_or(0),
            };
            return Some((EventType::Error, payload));
        }
        let payload = Payload::Log {
            message_type: if err { LogType::Err } else { LogType::Out },
            bytes,
            app_id: "",
            source_type: "",
        };
        Some((EventType::LogMessage, payload))
    }
}

/// `pairs` sorted by key, one per key, the last sent winning as for a
/// protobuf map.
fn sorted_last_wins<V>(mut pairs: Vec<(&str, V)>) -> Vec<(&str, V)> {
    pairs.sort_by(|a, b| by_key(a.0, b.0));
    pairs.reverse();
    // Reversed: the first of a run of equal keys is the last sent.
    pairs.dedup_by(|later, earlier| later.0 == earlier.0);
    pairs.reverse();
    pairs
}
