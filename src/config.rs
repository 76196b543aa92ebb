//! Checked settings shared by the layers: the errors that name the flag at
//! fault, and the Firehose source's settings with its URLs.

use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// A configuration problem, naming the flag at fault.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    /// The flag, e.g. `--doppler.url`.
    pub flag: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `flag`.
    pub fn new(flag: &'static str, problem: impl Into<String>) -> Self {
        Self {
            flag,
            problem: problem.into(),
        }
    }
}

/// Checked settings of the Firehose source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// UAA token endpoint, `<uaa.url>/oauth/token`.
    pub token_url: Url,
    /// UAA client id.
    pub client_id: String,
    /// UAA client secret.
    pub client_secret: Secret,
    /// The Firehose websocket URL with path and query.
    pub firehose_url: Url,
    /// Subscription id (also in `firehose_url`).
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
    /// Subscribes with `filter-type=<filter>`, or with no filter.
    pub fn set_filter_type(&mut self, filter: Option<&str>) {
        match filter {
            Some(filter) => self
                .firehose_url
                .set_query(Some(&format!("filter-type={filter}"))),
            None => self.firehose_url.set_query(None),
        }
    }
}

/// `<uaa>/oauth/token` from a UAA base URL.
pub fn token_url(uaa: &str) -> Result<Url, ConfigError> {
    let flag = "--uaa.url";
    let url = Url::parse(uaa)
        .map_err(|e| ConfigError::new(flag, format!("{uaa:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(ConfigError::new(
            flag,
            format!("{uaa:?} must be an https:// or http:// URL"),
        ));
    }
    let base = url.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/oauth/token")).map_err(|e| ConfigError::new(flag, e.to_string()))
}

/// The Firehose URL, `<doppler>/firehose/<id>?filter-type=metrics`, with the
/// scheme turned into `wss` or `ws`.
pub fn firehose_url(doppler: &str, subscription_id: &str) -> Result<Url, ConfigError> {
    let flag = "--doppler.url";
    let mut url = Url::parse(doppler)
        .map_err(|e| ConfigError::new(flag, format!("{doppler:?} is not a URL: {e}")))?;
    let scheme = match url.scheme() {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        other => {
            return Err(ConfigError::new(
                flag,
                format!("scheme {other:?} is not one of wss, https, ws, http"),
            ));
        }
    };
    if url.host().is_none() {
        return Err(ConfigError::new(flag, format!("{doppler:?} has no host")));
    }
    let base = format!("{scheme}{}", &url.as_str()[url.scheme().len()..]);
    url = Url::parse(base.trim_end_matches('/'))
        .map_err(|e| ConfigError::new(flag, e.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| ConfigError::new(flag, "cannot hold a path"))?
        .pop_if_empty()
        .extend(["firehose", subscription_id]);
    url.set_query(Some("filter-type=metrics"));
    Ok(url)
}
