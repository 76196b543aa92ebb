//! HTTP requests, logs and errors under the native scheme: aggregated into
//! counters and histograms, never relayed one by one.
//!
//! - A request counted (see [`Http::counted`]) adds one to `http_total`,
//!   observes its duration in `http_duration_seconds` and, when its size is
//!   known, that in `http_response_size_bytes`. Labels: the emitter's,
//!   `source_id`, `instance_id`, `method`, the tags that arrive (an app's
//!   name, space and org) and, on the counter only, `status_code`; never
//!   the URI, addresses, agent, request id or forwarded chain.
//! - A log line adds one to `log_messages_total` and its length to
//!   `log_bytes_total`, per `source_id`, `source_type`, `message_type` and
//!   tags: the log rate per app.
//! - An error event adds one to `error_events_total`, per `source` and
//!   `code` and the emitter's labels.

use std::borrow::Cow;

use super::native::{Exporter, NativeScheme};
use super::{MetricKind, Update, Value};
use crate::envelope::{EnvelopeRef, Http, Instance, Payload, uuid_text};

/// client_golang's default buckets, which the dashboards people have query.
pub const DEFAULT_HTTP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of `http_response_size_bytes`: powers of ten from 100 bytes
/// to 100 MB.
pub const SIZE_BUCKETS: [f64; 7] = [1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// Tags an HTTP event's series never take: what names one request, and
/// what its fields already say (the v2 timer carries them as tags).
pub(super) const HTTP_TAGS: [&str; 11] = [
    "request_id",
    "peer_type",
    "method",
    "uri",
    "remote_address",
    "user_agent",
    "status_code",
    "content_length",
    "routing_instance_id",
    "forwarded",
    "instance_index",
];

/// Tags an error's series never take: its source and code are labels of
/// their own.
const ERROR_TAGS: [&str; 2] = ["source", "code"];

/// The family names, buckets and constant labels of the event series: the
/// native names, or the same under a namespace.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventSeries {
    http: Box<str>,
    http_duration: Box<str>,
    http_size: Box<str>,
    log_messages: Box<str>,
    log_bytes: Box<str>,
    error_events: Box<str>,
    /// The bounds of `http_duration_seconds`.
    pub(super) http_buckets: std::sync::Arc<[f64]>,
    /// The Go v7's `node_index` label of the HTTP series; empty natively.
    pub(super) node_index: Box<str>,
}

impl Default for EventSeries {
    fn default() -> Self {
        Self::named("")
    }
}

impl EventSeries {
    /// The series with `prefix` in front of their native names.
    pub(super) fn named(prefix: &str) -> Self {
        let name = |family: &str| format!("{prefix}{family}").into_boxed_str();
        Self {
            http: name("http"),
            http_duration: name("http_duration_seconds"),
            http_size: name("http_response_size_bytes"),
            log_messages: name("log_messages"),
            log_bytes: name("log_bytes"),
            error_events: name("error_events"),
            http_buckets: DEFAULT_HTTP_BUCKETS.into(),
            node_index: "".into(),
        }
    }

    /// The same series with `prefix` in front of their native names.
    pub(super) fn under(&self, prefix: &str) -> Self {
        Self {
            http_buckets: self.http_buckets.clone(),
            node_index: self.node_index.clone(),
            ..Self::named(prefix)
        }
    }
}

impl NativeScheme {
    /// The updates of the events that are not metrics; nothing for one
    /// that is.
    pub(super) fn translate_event(&self, e: &EnvelopeRef<'_>, apply: &mut impl FnMut(Update<'_>)) {
        let names = &*self.events;
        match e.payload {
            Payload::Http(http) if http.counted() => self.http(e, &http, apply),
            Payload::Log {
                message_type,
                bytes,
                app_id,
                source_type,
            } => {
                let source_id = if e.tag("source_id").is_some() {
                    ""
                } else {
                    app_id
                };
                let labels = self.label_set(
                    e,
                    Exporter {
                        no_vm: true,
                        source_id,
                        source_type,
                        message_type: message_type.as_str(),
                        ..Default::default()
                    },
                );
                for (family, value) in
                    [(&names.log_messages, 1.0), (&names.log_bytes, bytes as f64)]
                {
                    apply(counter(family, "LogMessage", &labels, value));
                }
            }
            Payload::Error { source, code } => {
                let code = code.to_string();
                let labels = self.label_set(
                    e,
                    Exporter {
                        source,
                        code: &code,
                        skip_tags: &ERROR_TAGS,
                        ..Default::default()
                    },
                );
                apply(counter(&names.error_events, "Error", &labels, 1.0));
            }
            _ => {}
        }
    }

    fn http(&self, e: &EnvelopeRef<'_>, http: &Http<'_>, apply: &mut impl FnMut(Update<'_>)) {
        let source_id: Cow<'_, str> = match (e.tag("source_id"), &http.application_id) {
            (None, Some(id)) => Cow::Owned(uuid_text(id)),
            _ => Cow::Borrowed(""),
        };
        let instance_id: Cow<'_, str> = match (e.tag("instance_id"), http.instance) {
            (None, Instance::Index(i)) => Cow::Owned(i.to_string()),
            (None, Instance::Text(text)) => Cow::Borrowed(text),
            _ => Cow::Borrowed(""),
        };
        let status = match http.status_code {
            0 => String::new(),
            code => code.to_string(),
        };
        let names = &*self.events;
        let request = Exporter {
            source_id: &source_id,
            instance_id: &instance_id,
            method: http.method,
            node_index: &names.node_index,
            skip_tags: &HTTP_TAGS,
            ..Default::default()
        };
        let labels = self.label_set(
            e,
            Exporter {
                status_code: &status,
                ..request
            },
        );
        apply(counter(&names.http, "HttpStartStop", &labels, 1.0));
        let labels = self.label_set(e, request);
        apply(Update {
            family: &names.http_duration,
            kind: MetricKind::Histogram,
            original: "HttpStartStop",
            labels: &labels,
            value: Value::Observe(http.duration_seconds()),
            buckets: &names.http_buckets,
        });
        if let Some(size) = http.content_length {
            apply(Update {
                family: &names.http_size,
                kind: MetricKind::Histogram,
                original: "HttpStartStop",
                labels: &labels,
                value: Value::Observe(size as f64),
                buckets: &SIZE_BUCKETS,
            });
        }
    }
}

/// The values [`NativeScheme::translate_event`] gives, in its order.
pub(super) fn event_values(payload: &Payload<'_>, value: &mut impl FnMut(Value)) {
    match *payload {
        Payload::Http(http) if http.counted() => {
            value(Value::Add(1.0));
            value(Value::Observe(http.duration_seconds()));
            if let Some(size) = http.content_length {
                value(Value::Observe(size as f64));
            }
        }
        Payload::Log { bytes, .. } => {
            value(Value::Add(1.0));
            value(Value::Add(bytes as f64));
        }
        Payload::Error { .. } => value(Value::Add(1.0)),
        _ => {}
    }
}

/// What of an event the names and labels of its series depend on.
pub(super) fn event_identity(payload: &Payload<'_>, put: &mut impl FnMut(&[u8])) {
    match *payload {
        Payload::Http(http) => {
            put(&[http.peer as u8, u8::from(http.content_length.is_some())]);
            put(http.method.as_bytes());
            put(&http.status_code.to_le_bytes());
            put(http.application_id.as_ref().map_or(&[][..], |id| &id[..]));
            match http.instance {
                Instance::None => put(&[0]),
                Instance::Index(i) => {
                    put(&[1]);
                    put(&i.to_le_bytes());
                }
                Instance::Text(text) => {
                    put(&[2]);
                    put(text.as_bytes());
                }
            }
        }
        Payload::Log {
            message_type,
            app_id,
            source_type,
            ..
        } => {
            put(&[message_type as u8]);
            put(app_id.as_bytes());
            put(source_type.as_bytes());
        }
        Payload::Error { source, code } => {
            put(source.as_bytes());
            put(&code.to_le_bytes());
        }
        _ => {}
    }
}

/// A counter update that adds `value`.
fn counter<'a>(
    family: &'a str,
    original: &'a str,
    labels: &'a super::LabelSet<'a>,
    value: f64,
) -> Update<'a> {
    Update {
        family,
        kind: MetricKind::Counter,
        original,
        labels,
        value: Value::Add(value),
        buckets: &[],
    }
}
