//! Filters applied before the store: by event type, BOSH deployment, origin
//! and metric name. What they exclude is counted and never stored; they also
//! decide what the Firehose subscription asks the server for.

use std::collections::HashSet;

use regex::Regex;

use crate::envelope::{EVENT_TYPE_NAMES, Fields, event_type_name};

/// Why a filter could not be built, naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct FilterError {
    /// The flag at fault.
    pub flag: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// The filters of one exporter. The default keeps everything the
/// subscription brings, and subscribes to metrics only.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    events: Option<HashSet<&'static str>>,
    deployments: Option<HashSet<String>>,
    origins: Option<HashSet<String>>,
    names: Option<Regex>,
    names_exclude: Option<Regex>,
}

impl Filters {
    /// Filters from the flags' values; empty lists and patterns filter nothing.
    pub fn new(
        events: &[String],
        deployments: &[String],
        origins: &[String],
        names: Option<&str>,
        names_exclude: Option<&str>,
    ) -> Result<Self, FilterError> {
        // Empty entries are no filter, as the Go exporter's default "" is.
        let events: Vec<&str> = events
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .collect();
        let events = if events.is_empty() {
            None
        } else {
            let set = events
                .iter()
                .map(|&e| {
                    // The Go v7's name for HTTP timers.
                    let e = if e.eq_ignore_ascii_case("Http") {
                        "HttpStartStop"
                    } else {
                        e
                    };
                    EVENT_TYPE_NAMES
                        .iter()
                        .find(|known| known.eq_ignore_ascii_case(e))
                        .copied()
                        .ok_or_else(|| FilterError {
                            flag: "--filter.events",
                            problem: format!("{e:?} is not one of {}", EVENT_TYPE_NAMES.join(", ")),
                        })
                })
                .collect::<Result<_, _>>()?;
            Some(set)
        };
        let set = |values: &[String]| {
            let set: HashSet<String> = values
                .iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            (!set.is_empty()).then_some(set)
        };
        Ok(Self {
            events,
            deployments: set(deployments),
            origins: set(origins),
            names: anchored(names, "--filter.metric-names")?,
            names_exclude: anchored(names_exclude, "--filter.metric-names-exclude")?,
        })
    }

    /// Whether an envelope passes the event type, deployment and origin filters.
    pub fn keeps_envelope(&self, envelope: &Fields<'_>) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.contains(event_type_name(envelope.event_type as i32)))
            && self
                .deployments
                .as_ref()
                .is_none_or(|d| envelope.deployment.is_some_and(|name| d.contains(name)))
            && self
                .origins
                .as_ref()
                .is_none_or(|o| o.contains(envelope.origin))
    }

    /// Whether a series named `name` (as exposed: counters with `_total`)
    /// passes the name filters.
    pub fn keeps_name(&self, name: &str) -> bool {
        self.names.as_ref().is_none_or(|r| r.is_match(name))
            && self
                .names_exclude
                .as_ref()
                .is_none_or(|r| !r.is_match(name))
    }

    /// True when some name filter is set, so that updates must be checked one by one.
    pub fn filters_names(&self) -> bool {
        self.names.is_some() || self.names_exclude.is_some()
    }

    /// The `filter-type` to subscribe with: `metrics` unless log messages
    /// are asked for, `logs` when only they are, nothing when they are
    /// asked for among others.
    pub fn subscription(&self) -> Option<&'static str> {
        let Some(events) = &self.events else {
            return Some("metrics");
        };
        match (events.contains("LogMessage"), events.len()) {
            (false, _) => Some("metrics"),
            (true, 1) => Some("logs"),
            (true, _) => None,
        }
    }
}

/// A pattern matched against the whole name, as Prometheus anchors its own.
fn anchored(pattern: Option<&str>, flag: &'static str) -> Result<Option<Regex>, FilterError> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    Regex::new(&format!("^(?:{pattern})$"))
        .map(Some)
        .map_err(|e| FilterError {
            flag,
            problem: format!(
                "{pattern:?} is not a regular expression: {}",
                regex_problem(&e)
            ),
        })
}

/// The regex crate's error in one line: its own message spans several,
/// with the pattern and a caret.
fn regex_problem(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or("invalid syntax")
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => format!("larger than {limit} bytes once compiled"),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn envelope<'a>(event_type: i32, origin: &'a str, deployment: Option<&'a str>) -> Fields<'a> {
        Fields {
            origin,
            event_type: crate::envelope::events::envelope::EventType::try_from(event_type).unwrap(),
            deployment,
            job: None,
            index: None,
            ip: None,
            payload: crate::envelope::Payload::Other,
        }
    }

    #[test]
    fn the_default_keeps_everything_and_subscribes_to_metrics() {
        let f = Filters::default();
        for event_type in 4..=9 {
            assert!(f.keeps_envelope(&envelope(event_type, "rep", None)));
        }
        assert!(f.keeps_name("anything_total"));
        assert_eq!(f.subscription(), Some("metrics"));
    }

    #[test]
    fn events_are_checked_by_name_and_shape_the_subscription() {
        let f = Filters::new(&strings(&["valuemetric"]), &[], &[], None, None).unwrap();
        assert!(f.keeps_envelope(&envelope(6, "rep", None)));
        assert!(!f.keeps_envelope(&envelope(7, "rep", None)));
        assert_eq!(f.subscription(), Some("metrics"));
        let logs = Filters::new(&strings(&["LogMessage"]), &[], &[], None, None).unwrap();
        assert_eq!(logs.subscription(), Some("logs"));
        let both = Filters::new(
            &strings(&["LogMessage", "CounterEvent"]),
            &[],
            &[],
            None,
            None,
        )
        .unwrap();
        assert_eq!(both.subscription(), None);
        let err = Filters::new(&strings(&["Heartbeat"]), &[], &[], None, None).unwrap_err();
        assert_eq!(err.flag, "--filter.events");
        assert!(
            err.to_string()
                .starts_with("--filter.events: \"Heartbeat\" is not one of")
        );
    }

    #[test]
    fn the_go_exporters_empty_default_and_its_http_name_are_read_as_it_read_them() {
        let empty = Filters::new(&strings(&[""]), &strings(&[""]), &[], None, None).unwrap();
        for event_type in 4..=9 {
            assert!(empty.keeps_envelope(&envelope(event_type, "rep", Some("cf"))));
        }
        let http = Filters::new(&strings(&["Http", ""]), &[], &[], None, None).unwrap();
        assert!(http.keeps_envelope(&envelope(4, "gorouter", None)));
        assert!(!http.keeps_envelope(&envelope(6, "rep", None)));
    }

    #[test]
    fn deployments_and_origins_keep_only_what_they_list() {
        let f = Filters::new(
            &[],
            &strings(&["cf", "p-mysql"]),
            &strings(&["rep"]),
            None,
            None,
        )
        .unwrap();
        assert!(f.keeps_envelope(&envelope(6, "rep", Some("cf"))));
        assert!(!f.keeps_envelope(&envelope(6, "rep", Some("other"))));
        assert!(!f.keeps_envelope(&envelope(6, "rep", None)));
        assert!(!f.keeps_envelope(&envelope(6, "bbs", Some("cf"))));
    }

    #[test]
    fn name_patterns_match_whole_names() {
        let f = Filters::new(&[], &[], &[], Some("Capacity.*|cpu"), Some(".*Disk")).unwrap();
        assert!(f.keeps_name("CapacityRemainingMemory"));
        assert!(!f.keeps_name("CapacityRemainingDisk"));
        assert!(f.keeps_name("cpu"));
        assert!(!f.keeps_name("cpu_entitlement"), "anchored");
        assert!(!f.keeps_name("memory"));
        assert!(f.filters_names());
        let err = Filters::new(&[], &[], &[], Some("("), None).unwrap_err();
        assert_eq!(err.flag, "--filter.metric-names");
    }
}
