//! The checked settings of a source: where to get tokens, what to connect
//! to and how to retry.

use std::time::Duration;

use url::Url;

use super::supervisor::RetryPolicy;
use crate::secret::Secret;

/// What the source connects to, and so which transport it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The v1 Firehose: its websocket URL with path and query.
    Firehose(Url),
    /// The RLP gateway: its `/v2/read` URL with the query.
    Gateway(Url),
}

impl Endpoint {
    /// The URL connected to.
    pub fn url(&self) -> &Url {
        match self {
            Endpoint::Firehose(url) | Endpoint::Gateway(url) => url,
        }
    }
}

/// Checked settings of the source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// UAA token endpoint, `<uaa.url>/oauth/token`.
    pub token_url: Url,
    /// UAA client id.
    pub client_id: String,
    /// UAA client secret.
    pub client_secret: Secret,
    /// What to connect to.
    pub endpoint: Endpoint,
    /// The Firehose subscription id (also in its URL).
    pub subscription_id: String,
    /// First reconnect delay.
    pub min_retry_delay: Duration,
    /// Cap of the reconnect delay.
    pub max_retry_delay: Duration,
    /// Connections sharing the subscription.
    pub connections: usize,
    /// Failed attempts in a row after which the source gives up; `None`: never.
    pub max_retry_count: Option<u32>,
    /// Silence after which a connection is dropped; `None`: wait forever.
    pub idle_timeout: Option<Duration>,
    /// Largest frame accepted.
    pub max_frame_size: usize,
    /// Time allowed for one token request.
    pub uaa_timeout: Duration,
    /// Skip TLS verification.
    pub skip_ssl_verify: bool,
}

impl SourceConfig {
    /// The reconnect settings.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            min_delay: self.min_retry_delay,
            max_delay: self.max_retry_delay,
            max_attempts: self.max_retry_count,
        }
    }
}
