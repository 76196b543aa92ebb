//! The source's flags: UAA, the transport and its endpoint, reconnection;
//! the Go `firehose_exporter`'s names and variables, of all three
//! generations, where the meaning is the same.

use std::time::Duration;

use clap::Args;

use super::parse::defaults;
use super::parse::{parse_duration, parse_positive_duration, parse_size};
use crate::config::ConfigError;
use crate::secret::Secret;
use crate::source::firehose::firehose_url;
use crate::source::gateway::read_url;
use crate::source::rlp::{DEFAULT_SERVER_NAME, rlp_address};
use crate::source::tls::{MutualTlsFiles, mutual_tls_config};
use crate::source::uaa::token_url;
use crate::source::{Endpoint, RlpEndpoint, SourceConfig, UaaConfig};

/// Where and how to read the Firehose.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// UAA base URL, e.g. https://uaa.sys.example.com.
    #[arg(
        long = "uaa.url",
        env = "FIREHOSE_EXPORTER_UAA_URL",
        value_name = "URL"
    )]
    pub uaa_url: Option<String>,
    /// UAA client id with the doppler.firehose authority.
    #[arg(
        long = "uaa.client-id",
        env = "FIREHOSE_EXPORTER_UAA_CLIENT_ID",
        value_name = "ID"
    )]
    pub uaa_client_id: Option<String>,
    /// UAA client secret.
    #[arg(
        long = "uaa.client-secret",
        env = "FIREHOSE_EXPORTER_UAA_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub uaa_client_secret: Option<Secret>,
    /// File holding the UAA client secret (instead of --uaa.client-secret).
    #[arg(
        long = "uaa.client-secret-file",
        env = "FIREHOSE_EXPORTER_UAA_CLIENT_SECRET_FILE",
        value_name = "PATH",
        conflicts_with = "uaa_client_secret"
    )]
    pub uaa_client_secret_file: Option<std::path::PathBuf>,
    /// CA certificates (PEM) to trust for UAA, beside the system's.
    #[arg(
        long = "uaa.ca-file",
        env = "FIREHOSE_EXPORTER_UAA_CA_FILE",
        value_name = "PATH"
    )]
    pub uaa_ca_file: Option<std::path::PathBuf>,
    /// CA certificates (PEM) to trust for the Traffic Controller and the RLP gateway, beside
    /// the system's.
    #[arg(
        long = "doppler.ca-file",
        env = "FIREHOSE_EXPORTER_DOPPLER_CA_FILE",
        value_name = "PATH"
    )]
    pub doppler_ca_file: Option<std::path::PathBuf>,
    /// Traffic Controller URL: wss:// or https:// (TLS), ws:// or http:// (plain).
    #[arg(
        long = "doppler.url",
        env = "FIREHOSE_EXPORTER_DOPPLER_URL",
        value_name = "URL"
    )]
    pub doppler_url: Option<String>,
    /// Firehose subscription id; connections sharing it split the stream.
    #[arg(
        long = "doppler.subscription-id",
        env = "FIREHOSE_EXPORTER_DOPPLER_SUBSCRIPTION_ID",
        default_value = "prometheus",
        value_name = "ID"
    )]
    pub subscription_id: String,
    /// First delay before reconnecting; doubles after each failure. 0 means
    /// the default, as in the Go exporter's v5 and v6.
    #[arg(
        long = "doppler.min-retry-delay",
        env = "FIREHOSE_EXPORTER_DOPPLER_MIN_RETRY_DELAY",
        default_value = "500ms",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub min_retry_delay: Duration,
    /// Longest delay between reconnection attempts; 0 means the default.
    #[arg(
        long = "doppler.max-retry-delay",
        env = "FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_DELAY",
        default_value = "60s",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub max_retry_delay: Duration,
    /// Websocket connections to open with the subscription id; the server splits the
    /// stream among them and decoding runs on as many cores.
    #[arg(
        long = "doppler.connections",
        env = "FIREHOSE_EXPORTER_DOPPLER_CONNECTIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub connections: u16,
    /// Give up and exit after this many failed attempts in a row (default, or 0: never
    /// give up).
    #[arg(
        long = "doppler.max-retry-count",
        env = "FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_COUNT",
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_retry_count: Option<u32>,
    /// Reconnect when no frame and no ping arrive for this long; 0 turns it off.
    #[arg(
        long = "doppler.idle-timeout",
        env = "FIREHOSE_EXPORTER_DOPPLER_IDLE_TIMEOUT",
        default_value = "60s",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub idle_timeout: Duration,
    /// Largest websocket frame accepted; a larger one is counted and the connection reset.
    #[arg(
        long = "doppler.max-frame-size",
        env = "FIREHOSE_EXPORTER_DOPPLER_MAX_FRAME_SIZE",
        default_value = "4MiB",
        value_parser = parse_size,
        allow_hyphen_values = true,
        value_name = "BYTES"
    )]
    pub max_frame_size: usize,
    /// Time allowed for one UAA token request.
    #[arg(
        long = "uaa.timeout",
        env = "FIREHOSE_EXPORTER_UAA_TIMEOUT",
        default_value = "10s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub uaa_timeout: Duration,
    /// Do not verify TLS certificates of UAA and the Traffic Controller.
    #[arg(long = "skip-ssl-verify", env = "FIREHOSE_EXPORTER_SKIP_SSL_VERIFY")]
    pub skip_ssl_verify: bool,
    /// The transport: firehose, gateway or rlp. Inferred when left out: --doppler.url
    /// means firehose; an http(s):// --logging.url the gateway (the Firehose with
    /// --logging.use-legacy-firehose); a --logging.url without a scheme, or client
    /// certificates, the RLP.
    #[arg(
        long = "source",
        env = "FIREHOSE_EXPORTER_SOURCE",
        value_enum,
        value_name = "TRANSPORT"
    )]
    pub source: Option<SourceKind>,
    /// v2 endpoint: the RLP gateway's URL (https://log-stream.<system domain>), or the
    /// RLP's host:port.
    #[arg(
        long = "logging.url",
        env = "FIREHOSE_EXPORTER_LOGGING_URL",
        value_name = "URL"
    )]
    pub logging_url: Option<String>,
    /// Read --logging.url as the Traffic Controller's URL: the v1 Firehose.
    #[arg(long = "logging.use-legacy-firehose", env = "USE_LEGACY_FIREHOSE")]
    pub use_legacy_firehose: bool,
    /// v2 shard id: subscribers with the same one split the stream.
    #[arg(
        long = "metrics.shard_id",
        env = "FIREHOSE_EXPORTER_SHARD_ID",
        default_value = "firehose_exporter",
        value_name = "ID"
    )]
    pub shard_id: String,
    /// CA certificate (PEM) of the RLP's server certificate.
    #[arg(
        long = "logging.tls.ca",
        env = "FIREHOSE_EXPORTER_LOGGING_TLS_CA",
        value_name = "PATH"
    )]
    pub logging_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) presented to the RLP.
    #[arg(
        long = "logging.tls.cert",
        env = "FIREHOSE_EXPORTER_LOGGING_TLS_CERT",
        value_name = "PATH"
    )]
    pub logging_tls_cert: Option<std::path::PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(
        long = "logging.tls.key",
        env = "FIREHOSE_EXPORTER_LOGGING_TLS_KEY",
        value_name = "PATH"
    )]
    pub logging_tls_key: Option<std::path::PathBuf>,
    /// The name the RLP's certificate must be valid for, whatever address is dialled.
    #[arg(
        long = "logging.tls.server-name",
        env = "FIREHOSE_EXPORTER_LOGGING_TLS_SERVER_NAME",
        default_value = DEFAULT_SERVER_NAME,
        value_name = "NAME"
    )]
    pub logging_tls_server_name: String,
}

impl SourceArgs {
    /// Settings for the given endpoints and client, every other flag at its default.
    pub fn new(
        uaa_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        doppler_url: impl Into<String>,
    ) -> Self {
        let mut args: Self = defaults();
        args.uaa_url = Some(uaa_url.into());
        args.uaa_client_id = Some(client_id.into());
        args.uaa_client_secret = Some(client_secret);
        args.doppler_url = Some(doppler_url.into());
        args
    }
}

/// The transports `--source` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The v1 Firehose websocket of the Traffic Controller (`--doppler.url`).
    Firehose,
    /// The v2 RLP gateway, Server-Sent Events with a UAA token (`--logging.url`).
    Gateway,
    /// The v2 gRPC Reverse Log Proxy with client certificates (`--logging.url`).
    Rlp,
}

impl SourceArgs {
    /// The transport: `--source`, or what the other flags imply.
    pub fn kind(&self) -> Result<SourceKind, ConfigError> {
        if let Some(kind) = self.source {
            return Ok(kind);
        }
        let certificates = self.logging_tls_cert.is_some() || self.logging_tls_key.is_some();
        match (&self.doppler_url, &self.logging_url) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "--source",
                "both --doppler.url and --logging.url are set: say which transport to read",
            )),
            (Some(_), None) => Ok(SourceKind::Firehose),
            (None, Some(url)) if certificates || !url.contains("://") => Ok(SourceKind::Rlp),
            (None, Some(_)) if self.use_legacy_firehose => Ok(SourceKind::Firehose),
            (None, Some(_)) => Ok(SourceKind::Gateway),
            (None, None) => Ok(SourceKind::Firehose),
        }
    }

    /// Checks the flags and builds the source settings.
    pub fn resolve(&self) -> Result<SourceConfig, ConfigError> {
        let kind = self.kind()?;
        let (uaa, endpoint) = match kind {
            SourceKind::Rlp => {
                if self.uaa_url.is_some() || self.uaa_client_id.is_some() {
                    tracing::warn!(
                        "--uaa.* is not used: the RLP takes client certificates, not a token"
                    );
                }
                (None, Endpoint::Rlp(self.rlp()?))
            }
            SourceKind::Gateway => {
                let url = self.logging_url.as_deref().ok_or_else(|| {
                    ConfigError::new(
                        "--logging.url",
                        "required to read the RLP gateway (or FIREHOSE_EXPORTER_LOGGING_URL)",
                    )
                })?;
                if self.shard_id.is_empty() {
                    return Err(ConfigError::new("--metrics.shard_id", "must not be empty"));
                }
                let endpoint = Endpoint::Gateway(read_url(url, &self.shard_id, false)?);
                (Some(self.uaa()?), endpoint)
            }
            SourceKind::Firehose => {
                let uaa = self.uaa()?;
                let doppler = self
                    .doppler_url
                    .as_deref()
                    .or(self
                        .logging_url
                        .as_deref()
                        .filter(|_| self.use_legacy_firehose))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "--doppler.url",
                            "required (or FIREHOSE_EXPORTER_DOPPLER_URL, or --logging.url \
                             for the RLP gateway or the RLP)",
                        )
                    })?;
                let endpoint = Endpoint::Firehose(firehose_url(doppler, &self.subscription_id)?);
                (Some(uaa), endpoint)
            }
        };
        if self.subscription_id.is_empty() || self.subscription_id.contains(['/', '?', '#']) {
            return Err(ConfigError::new(
                "--doppler.subscription-id",
                format!(
                    "{:?} must be non-empty and hold no '/', '?' or '#'",
                    self.subscription_id
                ),
            ));
        }
        // 0 is the default, as the Go exporter's v5 and v6 read it: a job
        // that passes every one of their defaults passes zeros.
        let defaults: SourceArgs = defaults();
        let or_default = |given: Duration, default: Duration| {
            if given.is_zero() { default } else { given }
        };
        let min_retry_delay = or_default(self.min_retry_delay, defaults.min_retry_delay);
        let max_retry_delay = or_default(self.max_retry_delay, defaults.max_retry_delay);
        if min_retry_delay > max_retry_delay {
            return Err(ConfigError::new(
                "--doppler.min-retry-delay",
                "must not be above --doppler.max-retry-delay",
            ));
        }
        let max_retry_count = self.max_retry_count.filter(|&n| n != 0);
        if !(1024..=1 << 30).contains(&self.max_frame_size) {
            return Err(ConfigError::new(
                "--doppler.max-frame-size",
                "must be between 1KiB and 1GiB",
            ));
        }
        Ok(SourceConfig {
            uaa,
            endpoint,
            subscription_id: self.subscription_id.clone(),
            min_retry_delay,
            max_retry_delay,
            connections: usize::from(self.connections.max(1)),
            max_retry_count,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_frame_size: self.max_frame_size,
            skip_ssl_verify: self.skip_ssl_verify,
            doppler_ca: match &self.doppler_ca_file {
                Some(path) => crate::source::tls::read_certificates("--doppler.ca-file", path)?,
                None => Vec::new(),
            },
        })
    }

    /// The UAA client, for the transports that take a token.
    fn uaa(&self) -> Result<UaaConfig, ConfigError> {
        let uaa = self.uaa_url.as_deref().ok_or_else(|| {
            ConfigError::new("--uaa.url", "required (or FIREHOSE_EXPORTER_UAA_URL)")
        })?;
        let client_id = self
            .uaa_client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "--uaa.client-id",
                    "required (or FIREHOSE_EXPORTER_UAA_CLIENT_ID)",
                )
            })?;
        let client_secret = match (&self.uaa_client_secret, &self.uaa_client_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n'])))
                .map_err(|e| {
                    ConfigError::new(
                        "--uaa.client-secret-file",
                        format!("{}: {e}", path.display()),
                    )
                })?,
            (None, None) => {
                return Err(ConfigError::new(
                    "--uaa.client-secret",
                    "required (or --uaa.client-secret-file, or FIREHOSE_EXPORTER_UAA_CLIENT_SECRET)",
                ));
            }
        };
        if self.uaa_timeout.is_zero() {
            return Err(ConfigError::new("--uaa.timeout", "must be above zero"));
        }
        Ok(UaaConfig {
            token_url: token_url(uaa)?,
            client_id,
            client_secret,
            timeout: self.uaa_timeout,
            ca: match &self.uaa_ca_file {
                Some(path) => crate::source::tls::read_certificates("--uaa.ca-file", path)?,
                None => Vec::new(),
            },
        })
    }

    /// The RLP's address and certificates, each file checked.
    fn rlp(&self) -> Result<RlpEndpoint, ConfigError> {
        let url = self.logging_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                "--logging.url",
                "required to read the RLP: its host:port (or FIREHOSE_EXPORTER_LOGGING_URL)",
            )
        })?;
        if self.shard_id.is_empty() {
            return Err(ConfigError::new("--metrics.shard_id", "must not be empty"));
        }
        let required = |path: &Option<std::path::PathBuf>, flag: &'static str, env: &str| {
            path.clone().ok_or_else(|| {
                ConfigError::new(
                    flag,
                    format!("required to read the RLP, which takes client certificates (or {env})"),
                )
            })
        };
        let tls = MutualTlsFiles {
            ca: self.logging_tls_ca.clone(),
            cert: required(
                &self.logging_tls_cert,
                "--logging.tls.cert",
                "FIREHOSE_EXPORTER_LOGGING_TLS_CERT",
            )?,
            key: required(
                &self.logging_tls_key,
                "--logging.tls.key",
                "FIREHOSE_EXPORTER_LOGGING_TLS_KEY",
            )?,
        };
        // Every file read now, so that a bad one stops start-up.
        mutual_tls_config(&tls, self.skip_ssl_verify)?;
        if rustls::pki_types::ServerName::try_from(self.logging_tls_server_name.as_str()).is_err() {
            return Err(ConfigError::new(
                "--logging.tls.server-name",
                format!(
                    "{:?} is not a DNS name or IP address",
                    self.logging_tls_server_name
                ),
            ));
        }
        Ok(RlpEndpoint {
            address: rlp_address(url)?,
            server_name: self.logging_tls_server_name.clone(),
            tls,
            shard_id: self.shard_id.clone(),
            logs: false,
        })
    }
}
