//! The checked settings of a source: where to get tokens, what to connect
//! to and how to retry.

use std::time::Duration;

use url::Url;

use super::supervisor::RetryPolicy;
use super::tls::MutualTlsFiles;
use crate::secret::Secret;

/// What the source connects to, and so which transport it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The v1 Firehose: its websocket URL with path and query.
    Firehose(Url),
    /// The RLP gateway: its `/v2/read` URL with the query.
    Gateway(Url),
    /// The gRPC Reverse Log Proxy.
    Rlp(RlpEndpoint),
}

/// Where and how to subscribe to the Reverse Log Proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlpEndpoint {
    /// `host:port`.
    pub address: String,
    /// The name its certificate must hold (`reverselogproxy`).
    pub server_name: String,
    /// The client certificate and the CA.
    pub tls: MutualTlsFiles,
    /// Subscribers with the same shard id split the stream.
    pub shard_id: String,
    /// Whether logs are selected too.
    pub logs: bool,
}

impl Endpoint {
    /// The URL connected to, for the transports that have one.
    pub fn url(&self) -> Option<&Url> {
        match self {
            Endpoint::Firehose(url) | Endpoint::Gateway(url) => Some(url),
            Endpoint::Rlp(_) => None,
        }
    }

    /// Whether the transport authenticates with a UAA token.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Endpoint::Rlp(_))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Firehose(url) | Endpoint::Gateway(url) => url.fmt(f),
            Endpoint::Rlp(rlp) => write!(f, "{} (TLS name {})", rlp.address, rlp.server_name),
        }
    }
}

/// The UAA client of the transports that need a token.
#[derive(Debug, Clone)]
pub struct UaaConfig {
    /// UAA token endpoint, `<uaa.url>/oauth/token`.
    pub token_url: Url,
    /// UAA client id.
    pub client_id: String,
    /// UAA client secret.
    pub client_secret: Secret,
    /// Time allowed for one token request.
    pub timeout: Duration,
    /// CA certificates trusted for UAA beside the system's (`--uaa.ca-file`).
    pub ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Checked settings of the source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The UAA client; `None` for the RLP, which takes client certificates.
    pub uaa: Option<UaaConfig>,
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
    /// Skip TLS verification.
    pub skip_ssl_verify: bool,
    /// CA certificates trusted for the Traffic Controller and the RLP
    /// gateway beside the system's (`--doppler.ca-file`).
    pub doppler_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl SourceConfig {
    /// Subscribes to what the filters let through: on the Firehose with
    /// `filter-type=<filter>` (no filter: everything); on v2, logs are
    /// selected with the metrics unless the filter is `metrics`.
    pub fn set_filter_type(&mut self, filter: Option<&str>) {
        let logs = filter != Some("metrics");
        match &mut self.endpoint {
            Endpoint::Firehose(url) => match filter {
                Some(filter) => url.set_query(Some(&format!("filter-type={filter}"))),
                None => url.set_query(None),
            },
            Endpoint::Gateway(url) => {
                let query = url.query().unwrap_or_default();
                let metrics = query.strip_suffix("&log").unwrap_or(query).to_owned();
                let query = if logs {
                    format!("{metrics}&log")
                } else {
                    metrics
                };
                url.set_query(Some(&query));
            }
            Endpoint::Rlp(rlp) => rlp.logs = logs,
        }
    }

    /// The reconnect settings.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            min_delay: self.min_retry_delay,
            max_delay: self.max_retry_delay,
            max_attempts: self.max_retry_count,
        }
    }
}
