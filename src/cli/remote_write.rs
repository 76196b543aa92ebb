//! The remote-write flags: endpoints, their credentials and TLS, batching,
//! the labels added, and whether `/metrics` still serves the relayed series.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::parse::{parse_duration, parse_positive_duration};
use crate::config::ConfigError;
use crate::exposition::remote_write::{Auth, EndpointConfig, ForwardConfig, ShardLabel};
use crate::secret::Secret;

/// The remote-write flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Remote-write")]
pub struct RemoteWriteArgs {
    /// Send every sample to this Prometheus remote-write endpoint (Mimir, Thanos Receive,
    /// Cortex, VictoriaMetrics, Prometheus); repeat, or separate by commas, for several.
    #[arg(
        long = "remote-write.url",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_URL",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub rw_urls: Vec<String>,
    /// Basic-authentication user of the endpoints, with --remote-write.password(-file).
    #[arg(
        long = "remote-write.username",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_USERNAME",
        value_name = "USER"
    )]
    pub rw_username: Option<String>,
    /// Password of --remote-write.username.
    #[arg(
        long = "remote-write.password",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        conflicts_with = "rw_password_file"
    )]
    pub rw_password: Option<Secret>,
    /// A file holding the password of --remote-write.username.
    #[arg(
        long = "remote-write.password-file",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub rw_password_file: Option<PathBuf>,
    /// A file holding a bearer token for the endpoints (read at start).
    #[arg(
        long = "remote-write.bearer-token-file",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_BEARER_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "rw_username"
    )]
    pub rw_bearer_token_file: Option<PathBuf>,
    /// Trust the CA certificates (PEM) in this file for the endpoints, beside the system's.
    #[arg(
        long = "remote-write.tls.ca-file",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_CA_FILE",
        value_name = "PATH"
    )]
    pub rw_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) to present to the endpoints, with --remote-write.tls.key-file.
    #[arg(
        long = "remote-write.tls.cert-file",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_CERT_FILE",
        value_name = "PATH",
        requires = "rw_key_file"
    )]
    pub rw_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --remote-write.tls.cert-file.
    #[arg(
        long = "remote-write.tls.key-file",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_KEY_FILE",
        value_name = "PATH",
        requires = "rw_cert_file"
    )]
    pub rw_key_file: Option<PathBuf>,
    /// Accept any certificate from the endpoints.
    #[arg(
        long = "remote-write.tls.insecure-skip-verify",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_TLS_INSECURE_SKIP_VERIFY"
    )]
    pub rw_skip_verify: bool,
    /// Labels added to every sample sent, as name=value pairs separated by commas
    /// (a series' own label of the same name wins).
    #[arg(
        long = "remote-write.external-labels",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_EXTERNAL_LABELS",
        value_delimiter = ',',
        value_name = "NAME=VALUE"
    )]
    pub rw_external_labels: Vec<String>,
    /// The label that tells apart the aggregates each exporter counts itself (histograms,
    /// HTTP and log counts); sum them over it.
    #[arg(
        long = "remote-write.shard-label",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_SHARD_LABEL",
        default_value = "exporter_shard",
        value_name = "NAME"
    )]
    pub rw_shard_label: String,
    /// This exporter's value of --remote-write.shard-label: unique among the exporters of
    /// one subscription, stable across restarts [default: the host name].
    #[arg(
        long = "remote-write.shard",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_SHARD",
        value_name = "NAME"
    )]
    pub rw_shard: Option<String>,
    /// How often the aggregates are sent (every other sample goes as its envelope arrives).
    #[arg(
        long = "remote-write.interval",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_INTERVAL",
        default_value = "15s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub rw_interval: Duration,
    /// Samples in one request.
    #[arg(
        long = "remote-write.batch-size",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_BATCH_SIZE",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u32).range(1..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub rw_batch_size: u32,
    /// Longest a sample waits for its request to fill.
    #[arg(
        long = "remote-write.batch-age",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_BATCH_AGE",
        default_value = "1s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub rw_batch_age: Duration,
    /// Samples held per endpoint while it is slow or down; beyond, new ones are dropped and
    /// counted.
    #[arg(
        long = "remote-write.queue-capacity",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_QUEUE_CAPACITY",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u32).range(1..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub rw_queue_capacity: u32,
    /// Requests in flight per endpoint. 1 keeps each series in order; more need the store
    /// to take samples out of order.
    #[arg(
        long = "remote-write.concurrency",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_CONCURRENCY",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=256),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub rw_concurrency: u32,
    /// Time allowed for one request.
    #[arg(
        long = "remote-write.timeout",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_TIMEOUT",
        default_value = "30s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub rw_timeout: Duration,
    /// Longest wait between retries of a request (from 30ms, doubling).
    #[arg(
        long = "remote-write.max-backoff",
        env = "FIREHOSE_EXPORTER_REMOTE_WRITE_MAX_BACKOFF",
        default_value = "5s",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub rw_max_backoff: Duration,
    /// Serve only the exporter's own metrics on the metrics path, not the relayed series
    /// (with --remote-write.url: the store has them).
    #[arg(
        long = "web.disable-exposition",
        env = "FIREHOSE_EXPORTER_WEB_DISABLE_EXPOSITION"
    )]
    pub disable_exposition: bool,
}

impl RemoteWriteArgs {
    /// What the flags ask for: `None` without an endpoint.
    pub fn forwarding(&self) -> Result<Option<ForwardConfig>, ConfigError> {
        if self.rw_urls.is_empty() {
            if self.disable_exposition {
                return Err(ConfigError::new(
                    "--web.disable-exposition",
                    "needs --remote-write.url: the relayed series would go nowhere",
                ));
            }
            return Ok(None);
        }
        let auth = self.auth()?;
        let ca = match &self.rw_ca_file {
            Some(path) => {
                crate::source::tls::read_certificates("--remote-write.tls.ca-file", path)?
            }
            None => Vec::new(),
        };
        let identity = match (&self.rw_cert_file, &self.rw_key_file) {
            (Some(cert), Some(key)) => Some(identity(cert, key)?),
            _ => None,
        };
        let external_labels = external_labels(&self.rw_external_labels)?;
        let shard = ShardLabel {
            name: label_name("--remote-write.shard-label", &self.rw_shard_label)?,
            value: match &self.rw_shard {
                Some(shard) if shard.is_empty() => {
                    return Err(ConfigError::new(
                        "--remote-write.shard",
                        "must not be empty",
                    ));
                }
                Some(shard) => shard.clone(),
                None => host_name(),
            },
        };
        if external_labels.iter().any(|(name, _)| *name == shard.name) {
            return Err(ConfigError::new(
                "--remote-write.external-labels",
                format!(
                    "{} is --remote-write.shard-label: give each exporter its own with --remote-write.shard",
                    shard.name
                ),
            ));
        }
        let mut endpoints = Vec::with_capacity(self.rw_urls.len());
        for url in &self.rw_urls {
            let parsed: url::Url = url.parse().map_err(|e| {
                ConfigError::new("--remote-write.url", format!("{:?}: {e}", redacted(url)))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::new(
                    "--remote-write.url",
                    format!("{:?}: the scheme must be http or https", redacted(url)),
                ));
            }
            let mut endpoint = EndpointConfig::new(parsed);
            endpoint.auth = auth.clone();
            endpoint.ca = ca.clone();
            endpoint.identity = identity.clone();
            endpoint.skip_verify = self.rw_skip_verify;
            endpoint.timeout = self.rw_timeout;
            endpoint.batch_size = self.rw_batch_size as usize;
            endpoint.batch_age = self.rw_batch_age;
            endpoint.queue_capacity = self.rw_queue_capacity as usize;
            endpoint.concurrency = self.rw_concurrency as usize;
            endpoint.max_backoff = self.rw_max_backoff.max(endpoint.min_backoff);
            endpoint.external_labels = external_labels.clone().into();
            endpoints.push(endpoint);
        }
        Ok(Some(ForwardConfig {
            endpoints,
            shard,
            interval: self.rw_interval,
        }))
    }

    fn auth(&self) -> Result<Auth, ConfigError> {
        if let Some(path) = &self.rw_bearer_token_file {
            return Ok(Auth::Bearer(read_secret(
                "--remote-write.bearer-token-file",
                path,
            )?));
        }
        let password = match (&self.rw_password, &self.rw_password_file) {
            (Some(password), _) => Some(password.clone()),
            (None, Some(path)) => Some(read_secret("--remote-write.password-file", path)?),
            (None, None) => None,
        };
        match (&self.rw_username, password) {
            (Some(username), Some(password)) => Ok(Auth::Basic {
                username: username.clone(),
                password,
            }),
            (Some(_), None) => Err(ConfigError::new(
                "--remote-write.password",
                "required with --remote-write.username (or --remote-write.password-file)",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "--remote-write.username",
                "required with --remote-write.password",
            )),
            (None, None) => Ok(Auth::None),
        }
    }
}

/// A URL as it may be shown: without its user information.
fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}…@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn read_secret(flag: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(flag, format!("{}: {e}", path.display())))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::new(flag, format!("{}: empty", path.display())));
    }
    Ok(Secret::new(text))
}

fn identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, ConfigError> {
    let read = |flag: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| ConfigError::new(flag, format!("{}: {e}", path.display())))
    };
    let mut pem = read("--remote-write.tls.cert-file", cert)?;
    pem.push(b'\n');
    pem.extend(read("--remote-write.tls.key-file", key)?);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        ConfigError::new(
            "--remote-write.tls.cert-file",
            format!("{} with {}: {e}", cert.display(), key.display()),
        )
    })
}

/// `name=value` pairs, sorted by name, each name a valid label name.
fn external_labels(pairs: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    const FLAG: &str = "--remote-write.external-labels";
    let mut labels = Vec::with_capacity(pairs.len());
    for pair in pairs.iter().filter(|p| !p.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(ConfigError::new(
                FLAG,
                format!("{pair:?} is not name=value"),
            ));
        };
        let name = label_name(FLAG, name.trim())?;
        if value.is_empty() {
            return Err(ConfigError::new(FLAG, format!("{name} has an empty value")));
        }
        if labels.iter().any(|(n, _): &(String, String)| *n == name) {
            return Err(ConfigError::new(FLAG, format!("{name} is given twice")));
        }
        labels.push((name, value.to_owned()));
    }
    labels.sort();
    Ok(labels)
}

/// A label name Prometheus takes, not one it reserves.
fn label_name(flag: &'static str, name: &str) -> Result<String, ConfigError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || name.starts_with("__") || name == "le" {
        return Err(ConfigError::new(
            flag,
            format!(
                "{name:?} is not a label name of one's own ([a-zA-Z_][a-zA-Z0-9_]*, not __* or le)"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// This host's name, or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_credentials() {
        assert_eq!(redacted("https://u:p@h:1/x@y"), "https://…@h:1/x@y");
        assert_eq!(redacted("u:p@h/push"), "…@h/push");
        assert_eq!(redacted("http://h/a@b"), "http://h/a@b");
    }

    #[test]
    fn external_labels_are_checked_and_sorted() {
        let pairs =
            |p: &[&str]| external_labels(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            pairs(&["zone=z1", "foundation=prod"]).unwrap(),
            [
                ("foundation".into(), "prod".into()),
                ("zone".into(), "z1".into())
            ]
        );
        for bad in ["nolabel", "__name__=x", "le=1", "1x=y", "a=", "a-b=c"] {
            let error = pairs(&[bad]).unwrap_err();
            assert_eq!(error.flag, "--remote-write.external-labels", "{bad}");
        }
        assert!(
            pairs(&["a=1", "a=2"])
                .unwrap_err()
                .problem
                .contains("twice")
        );
    }
}
