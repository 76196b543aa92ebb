//! Prometheus remote-write 1.0: samples sent to a distributed store.
//!
//! Ingestion hands every value an envelope sets (a gauge's reading, a
//! counter's running total) to [`Forwarding`] with the envelope's own
//! timestamp, so that the samples of exporters sharing a subscription merge
//! in the store. What a process counts itself (histograms, the HTTP and log
//! aggregates, counters sent only as deltas) is its own part of a sum: it is
//! read from the store through the snapshot visitor at a fixed interval and
//! sent with a label naming the shard.
//!
//! Each endpoint has its own bounded queue and sending task ([`sender`]).
//! Pushing never waits: what does not fit in the queue is dropped and
//! counted. The task batches samples by count and by age, encodes a
//! `WriteRequest` ([`encode`]: protobuf, then snappy's block format) and
//! POSTs it with the protocol's headers. A 5xx, a 429 or a network error is
//! retried with backoff (after the server's `Retry-After`, when it sends
//! one) while the queue keeps filling; any other 4xx drops the batch and
//! counts its samples as failed.

mod encode;
mod forward;
mod metrics;
mod sender;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::secret::Secret;
use crate::store::{StoredLabels, Text};

pub use encode::{compress, decode, encode, write_request};
pub use forward::{ForwardConfig, Forwarding, ShardLabel};
pub use metrics::RemoteWriteMetrics;
pub use sender::RemoteWrite;

/// The messages of the protocol, from `proto/prometheus/remote.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// The version header's value for remote-write 1.0.
pub const VERSION: &str = "0.1.0";

/// The series a sample belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesRef {
    /// A series of the store as ingestion updated it: its family's name,
    /// what its sample adds to it (`_total` for a counter), and its labels.
    Stored {
        /// The family name.
        family: Text,
        /// What the sample's name adds to the family's.
        suffix: &'static str,
        /// The series' labels, sorted by name.
        labels: StoredLabels,
    },
    /// A series this process counts itself, as a snapshot of the store
    /// holds it (boxed: these are few, and the other variants many).
    Aggregate(Box<AggregateRef>),
    /// Every label written out, `__name__` among them, sorted by name.
    Labels(Arc<[proto::Label]>),
}

/// A sample of an aggregate: its series' labels are shared with the
/// store's snapshot, and the bucket bound and the shard are added as it is
/// encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRef {
    /// The family name.
    pub family: Arc<str>,
    /// What the sample's name adds to the family's (`_bucket`, `_total`, ...).
    pub suffix: &'static str,
    /// The series' labels, sorted by name.
    pub labels: StoredLabels,
    /// A bucket's upper bound, written as its `le` label.
    pub le: Option<Arc<str>>,
    /// The label naming this process, unless the series has one of its name.
    pub shard: Arc<ShardLabel>,
}

/// One sample of one series, with its time in milliseconds since the Unix
/// epoch. The endpoint's external labels are added when it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series.
    pub series: SeriesRef,
    /// The value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Sample {
    /// A sample of the series named by `labels` (sorted here).
    pub fn with_labels(labels: &[(&str, &str)], value: f64, timestamp_ms: i64) -> Self {
        let mut labels: Vec<proto::Label> = labels
            .iter()
            .map(|(name, value)| proto::Label {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            series: SeriesRef::Labels(labels.into()),
            value,
            timestamp_ms,
        }
    }
}

/// How the endpoint is authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Nothing.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// Its password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// One endpoint's settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where to POST.
    pub url: Url,
    /// Credentials.
    pub auth: Auth,
    /// Extra CA certificates for the endpoint's TLS, beside the system's.
    pub ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// A client certificate and its key, for endpoints that ask for one.
    pub identity: Option<reqwest::Identity>,
    /// Accept any certificate.
    pub skip_verify: bool,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Samples that fill a request.
    pub batch_size: usize,
    /// Longest a sample waits for its batch to fill.
    pub batch_age: Duration,
    /// Samples the queue holds while requests fail; beyond, they are dropped.
    pub queue_capacity: usize,
    /// Requests in flight at once. One keeps each series' samples in order;
    /// more need a store that takes samples out of order.
    pub concurrency: usize,
    /// First delay between retries.
    pub min_backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
    /// Labels added to every sample, sorted by name; a series' own label of
    /// the same name wins.
    pub external_labels: Arc<[(String, String)]>,
}

impl EndpointConfig {
    /// Defaults for `url`: batches of 2,000 samples or 1 s, 100,000 queued,
    /// one request at a time, retries from 30 ms to 5 s, 30 s per request.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            auth: Auth::None,
            ca: Vec::new(),
            identity: None,
            skip_verify: false,
            timeout: Duration::from_secs(30),
            batch_size: 2_000,
            batch_age: Duration::from_secs(1),
            queue_capacity: 100_000,
            concurrency: 1,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            external_labels: Arc::new([]),
        }
    }

    /// The endpoint as a label: scheme, host, port and path, never the
    /// user information or the query.
    pub fn label(&self) -> String {
        let url = &self.url;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a queued sample takes, as docs/scaling.md sizes the queue.
    #[test]
    fn a_queued_sample_takes_64_bytes() {
        assert_eq!(std::mem::size_of::<Sample>(), 64);
    }

    #[test]
    fn the_endpoint_label_leaves_out_credentials_and_the_query() {
        let config = EndpointConfig::new(
            "https://user:pass@mimir.example.com:8080/api/v1/push?tenant=x"
                .parse()
                .unwrap(),
        );
        assert_eq!(config.label(), "https://mimir.example.com:8080/api/v1/push");
    }
}
