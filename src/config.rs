//! Command-line flags and environment variables, in the style of Prometheus
//! exporters and with the Go `firehose_exporter`'s names where the meaning is
//! the same. Every flag has a `FIREHOSE_EXPORTER_*` environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use url::Url;

/// Reads the Cloud Foundry Firehose and serves its metrics to Prometheus.
#[derive(Debug, Parser)]
#[command(name = "cf-firehose-exporter", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to run; without a subcommand the exporter connects to a real foundation.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// UAA and Firehose connection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Store, web and log settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Subcommands besides the exporter itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated foundation and the exporter against it, on loopback.
    Demo(Box<DemoArgs>),
    /// Serve a simulated foundation (UAA and Traffic Controller) for any Firehose consumer.
    Simulate(Box<SimulateArgs>),
}

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
    /// First delay before reconnecting; doubles after each failure.
    #[arg(
        long = "doppler.min-retry-delay",
        env = "FIREHOSE_EXPORTER_DOPPLER_MIN_RETRY_DELAY",
        default_value = "500ms",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub min_retry_delay: Duration,
    /// Longest delay between reconnection attempts.
    #[arg(
        long = "doppler.max-retry-delay",
        env = "FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_DELAY",
        default_value = "60s",
        value_parser = parse_positive_duration,
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
    /// Give up and exit after this many failed attempts in a row (default: never give up).
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
}

impl SourceArgs {
    /// Settings for the given endpoints and client, every other flag at its default.
    pub fn new(
        uaa_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        doppler_url: impl Into<String>,
    ) -> Self {
        Self {
            uaa_url: Some(uaa_url.into()),
            uaa_client_id: Some(client_id.into()),
            uaa_client_secret: Some(client_secret),
            uaa_client_secret_file: None,
            doppler_url: Some(doppler_url.into()),
            subscription_id: "prometheus".into(),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(60),
            connections: 1,
            max_retry_count: None,
            idle_timeout: Duration::from_secs(60),
            max_frame_size: 4 << 20,
            uaa_timeout: Duration::from_secs(10),
            skip_ssl_verify: false,
        }
    }
}

/// Settings shared by the exporter and the demo.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Series not updated for this long disappear.
    #[arg(
        long = "metrics.expiration",
        alias = "doppler.metric-expiration",
        env = "FIREHOSE_EXPORTER_METRICS_EXPIRATION",
        default_value = "10m",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub expiration: Duration,
    /// Adds a constant environment="<value>" label to every relayed series.
    #[arg(
        long = "metrics.environment",
        env = "FIREHOSE_EXPORTER_METRICS_ENVIRONMENT",
        value_name = "NAME"
    )]
    pub environment: Option<String>,
    /// Keep only these event types, comma-separated: ValueMetric, CounterEvent,
    /// ContainerMetric, HttpStartStop, LogMessage, Error (default: all).
    #[arg(
        long = "filter.events",
        env = "FIREHOSE_EXPORTER_FILTER_EVENTS",
        value_delimiter = ',',
        value_name = "EVENTS"
    )]
    pub filter_events: Vec<String>,
    /// Keep only envelopes from these BOSH deployments, comma-separated.
    #[arg(
        long = "filter.deployments",
        env = "FIREHOSE_EXPORTER_FILTER_DEPLOYMENTS",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub filter_deployments: Vec<String>,
    /// Keep only envelopes from these origins, comma-separated.
    #[arg(
        long = "filter.origins",
        env = "FIREHOSE_EXPORTER_FILTER_ORIGINS",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub filter_origins: Vec<String>,
    /// Keep only series whose exposed name (counters with _total) matches this regex, anchored.
    #[arg(
        long = "filter.metric-names",
        env = "FIREHOSE_EXPORTER_FILTER_METRIC_NAMES",
        value_name = "REGEX"
    )]
    pub filter_metric_names: Option<String>,
    /// Leave out series whose exposed name matches this regex, anchored.
    #[arg(
        long = "filter.metric-names-exclude",
        env = "FIREHOSE_EXPORTER_FILTER_METRIC_NAMES_EXCLUDE",
        value_name = "REGEX"
    )]
    pub filter_metric_names_exclude: Option<String>,
    /// Tags not turned into labels, comma-separated (e.g. process_instance_id).
    #[arg(
        long = "metrics.drop-tags",
        env = "FIREHOSE_EXPORTER_METRICS_DROP_TAGS",
        value_delimiter = ',',
        value_name = "TAGS"
    )]
    pub drop_tags: Vec<String>,
    /// Most series held; new series beyond it are rejected and counted.
    #[arg(
        long = "metrics.max-series",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_SERIES",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(u64).range(1..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_series: u64,
    /// Longest metric or label name kept, in bytes; new series beyond it are dropped and counted.
    #[arg(
        long = "metrics.max-name-length",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_NAME_LENGTH",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(16..),
        allow_hyphen_values = true,
        value_name = "BYTES"
    )]
    pub max_name_length: u32,
    /// Longest label value kept, in bytes; new series beyond it are dropped and counted.
    #[arg(
        long = "metrics.max-label-value-length",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_LABEL_VALUE_LENGTH",
        default_value_t = 2048,
        value_parser = clap::value_parser!(u32).range(16..),
        allow_hyphen_values = true,
        value_name = "BYTES"
    )]
    pub max_label_value_length: u32,
    /// Most labels on one series; new series with more are dropped and counted.
    #[arg(
        long = "metrics.max-labels",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_LABELS",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(8..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_labels: u32,
    /// Address to serve metrics on; ":9186" means every interface.
    #[arg(
        long = "web.listen-address",
        env = "FIREHOSE_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = ":9186",
        value_parser = parse_listen_address,
        value_name = "ADDR"
    )]
    pub listen_address: SocketAddr,
    /// Path under which to serve metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "FIREHOSE_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics",
        value_parser = parse_telemetry_path,
        value_name = "PATH"
    )]
    pub telemetry_path: String,
    /// Web configuration file (exporter-toolkit format): tls_server_config, basic_auth_users.
    #[arg(
        long = "web.config.file",
        env = "FIREHOSE_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<std::path::PathBuf>,
    /// Serve HTTPS with this certificate (PEM), with --web.tls.key_file.
    #[arg(
        long = "web.tls.cert_file",
        env = "FIREHOSE_EXPORTER_WEB_TLS_CERT_FILE",
        value_name = "PATH"
    )]
    pub web_tls_cert_file: Option<std::path::PathBuf>,
    /// Private key (PEM) of --web.tls.cert_file.
    #[arg(
        long = "web.tls.key_file",
        env = "FIREHOSE_EXPORTER_WEB_TLS_KEY_FILE",
        value_name = "PATH"
    )]
    pub web_tls_key_file: Option<std::path::PathBuf>,
    /// Ask scrapers for this user name (basic authentication), with --web.auth.password.
    #[arg(
        long = "web.auth.username",
        env = "FIREHOSE_EXPORTER_WEB_AUTH_USERNAME",
        value_name = "USER"
    )]
    pub web_auth_username: Option<String>,
    /// Password of --web.auth.username.
    #[arg(
        long = "web.auth.password",
        env = "FIREHOSE_EXPORTER_WEB_AUTH_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub web_auth_password: Option<Secret>,
    /// Time a scraper has to send a request's headers, from its first byte.
    #[arg(
        long = "web.read-header-timeout",
        env = "FIREHOSE_EXPORTER_WEB_READ_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub read_header_timeout: Duration,
    /// Close HTTP connections with no request and no traffic for this long.
    #[arg(
        long = "web.idle-timeout",
        env = "FIREHOSE_EXPORTER_WEB_IDLE_TIMEOUT",
        default_value = "90s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub web_idle_timeout: Duration,
    /// Most HTTP connections open at once (lowered to fit the open-files limit); beyond it
    /// the connection idle the longest is closed, or the new one when all are busy.
    #[arg(
        long = "web.max-connections",
        env = "FIREHOSE_EXPORTER_WEB_MAX_CONNECTIONS",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_connections: u32,
    /// Serve the text format 0.0.4 even to scrapers that prefer OpenMetrics.
    #[arg(
        long = "web.disable-openmetrics",
        env = "FIREHOSE_EXPORTER_WEB_DISABLE_OPENMETRICS"
    )]
    pub disable_openmetrics: bool,
    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        env = "FIREHOSE_EXPORTER_LOG_LEVEL",
        default_value = "info",
        value_parser = ["error", "warn", "info", "debug", "trace"],
        value_name = "LEVEL"
    )]
    pub log_level: String,
    /// Log format: logfmt or json.
    #[arg(
        long = "log.format",
        env = "FIREHOSE_EXPORTER_LOG_FORMAT",
        default_value = "logfmt",
        value_parser = ["logfmt", "json"],
        value_name = "FORMAT"
    )]
    pub log_format: String,
}

/// The simulated foundation's workload.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Envelopes per second the simulated Firehose sends; 0: as fast as consumers read.
    #[arg(
        long = "sim.rate",
        env = "FIREHOSE_EXPORTER_SIM_RATE",
        default_value_t = 2000
    )]
    pub rate: u32,
    /// Diego cells in the simulated foundation.
    #[arg(
        long = "sim.cells",
        env = "FIREHOSE_EXPORTER_SIM_CELLS",
        default_value_t = 10
    )]
    pub cells: u32,
    /// Applications running on the simulated foundation.
    #[arg(
        long = "sim.apps",
        env = "FIREHOSE_EXPORTER_SIM_APPS",
        default_value_t = 40
    )]
    pub apps: u32,
    /// Seed of the simulated foundation's names, GUIDs and values.
    #[arg(
        long = "sim.seed",
        env = "FIREHOSE_EXPORTER_SIM_SEED",
        default_value_t = 1
    )]
    pub seed: u64,
}

/// Faults the simulated foundation injects on a schedule.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Faults to inject in turn, comma-separated: close-1000, close-1008, reset, hang,
    /// revoke-tokens, unavailable, uaa-down, uaa-500, uaa-401, uaa-slow, garbage, oversized,
    /// dropped-messages.
    #[arg(
        long = "sim.faults",
        env = "FIREHOSE_EXPORTER_SIM_FAULTS",
        value_delimiter = ',',
        value_name = "FAULTS"
    )]
    pub faults: Vec<crate::sim::faults::Fault>,
    /// Time between two faults.
    #[arg(
        long = "sim.fault-interval",
        env = "FIREHOSE_EXPORTER_SIM_FAULT_INTERVAL",
        default_value = "30s",
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub interval: Duration,
    /// How long the lasting faults (unavailable, uaa-*) last.
    #[arg(
        long = "sim.fault-duration",
        env = "FIREHOSE_EXPORTER_SIM_FAULT_DURATION",
        default_value = "10s",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub duration: Duration,
}

impl Default for FaultArgs {
    /// No faults.
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            interval: Duration::from_secs(30),
            duration: Duration::from_secs(10),
        }
    }
}

/// `demo`: the exporter against a simulated foundation.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Store, web and log settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Simulated workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Simulated faults.
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// `simulate`: the simulated foundation alone.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address of the simulated UAA.
    #[arg(long = "sim.uaa-address", env = "FIREHOSE_EXPORTER_SIM_UAA_ADDRESS", default_value = "127.0.0.1:8080", value_parser = parse_listen_address)]
    pub uaa_address: SocketAddr,
    /// Address of the simulated Traffic Controller.
    #[arg(long = "sim.doppler-address", env = "FIREHOSE_EXPORTER_SIM_DOPPLER_ADDRESS", default_value = "127.0.0.1:8081", value_parser = parse_listen_address)]
    pub doppler_address: SocketAddr,
    /// Client id the simulated UAA accepts.
    #[arg(
        long = "sim.client-id",
        env = "FIREHOSE_EXPORTER_SIM_CLIENT_ID",
        default_value = "firehose-exporter"
    )]
    pub client_id: String,
    /// Client secret the simulated UAA accepts.
    #[arg(
        long = "sim.client-secret",
        env = "FIREHOSE_EXPORTER_SIM_CLIENT_SECRET",
        hide_env_values = true,
        default_value = "sim-secret",
        hide_default_value = true
    )]
    pub client_secret: Secret,
    /// Lifetime of the tokens the simulated UAA issues.
    #[arg(long = "sim.token-lifetime", env = "FIREHOSE_EXPORTER_SIM_TOKEN_LIFETIME", default_value = "1h", value_parser = parse_duration)]
    pub token_lifetime: Duration,
    /// Simulated workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Simulated faults.
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        env = "FIREHOSE_EXPORTER_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

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

impl Default for CommonArgs {
    /// Every flag at its default.
    fn default() -> Self {
        Self {
            expiration: Duration::from_secs(600),
            environment: None,
            filter_events: Vec::new(),
            filter_deployments: Vec::new(),
            filter_origins: Vec::new(),
            filter_metric_names: None,
            filter_metric_names_exclude: None,
            drop_tags: Vec::new(),
            max_series: 1_000_000,
            max_name_length: 1024,
            max_label_value_length: 2048,
            max_labels: 64,
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9186)),
            telemetry_path: "/metrics".into(),
            web_config_file: None,
            web_tls_cert_file: None,
            web_tls_key_file: None,
            web_auth_username: None,
            web_auth_password: None,
            read_header_timeout: Duration::from_secs(10),
            web_idle_timeout: Duration::from_secs(90),
            max_connections: 512,
            disable_openmetrics: false,
            log_level: "info".into(),
            log_format: "logfmt".into(),
        }
    }
}

impl CommonArgs {
    /// How the `--web.*` flags secure the endpoint (files read and checked).
    pub fn web_security(&self) -> Result<crate::http::web_config::WebSecurity, ConfigError> {
        crate::http::web_config::WebSecurityArgs {
            config_file: self.web_config_file.clone(),
            tls_cert_file: self.web_tls_cert_file.clone(),
            tls_key_file: self.web_tls_key_file.clone(),
            auth_username: self.web_auth_username.clone(),
            auth_password: self.web_auth_password.clone(),
        }
        .resolve()
    }

    /// Bounds on the bytes of one series.
    pub fn series_limits(&self) -> crate::store::SeriesLimits {
        let size = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        crate::store::SeriesLimits {
            max_name_length: size(self.max_name_length),
            max_label_value_length: size(self.max_label_value_length),
            max_labels: size(self.max_labels),
        }
    }

    /// Timeouts and cap of the HTTP connections (the cap as given, before
    /// the open-files limit lowers it).
    pub fn http_limits(&self) -> crate::http::listener::Limits {
        crate::http::listener::Limits {
            header_timeout: self.read_header_timeout,
            idle_timeout: self.web_idle_timeout,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The filters the `--filter.*` flags describe.
    pub fn filters(&self) -> Result<crate::filter::Filters, ConfigError> {
        crate::filter::Filters::new(
            &self.filter_events,
            &self.filter_deployments,
            &self.filter_origins,
            self.filter_metric_names.as_deref(),
            self.filter_metric_names_exclude.as_deref(),
        )
        .map_err(|e| ConfigError::new(e.flag, e.problem))
    }
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

impl SourceArgs {
    /// Checks the flags and builds the source settings.
    pub fn resolve(&self) -> Result<SourceConfig, ConfigError> {
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
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
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
        let doppler = self.doppler_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                "--doppler.url",
                "required (or FIREHOSE_EXPORTER_DOPPLER_URL)",
            )
        })?;
        if self.subscription_id.is_empty() || self.subscription_id.contains(['/', '?', '#']) {
            return Err(ConfigError::new(
                "--doppler.subscription-id",
                format!(
                    "{:?} must be non-empty and hold no '/', '?' or '#'",
                    self.subscription_id
                ),
            ));
        }
        if self.min_retry_delay.is_zero() || self.min_retry_delay > self.max_retry_delay {
            return Err(ConfigError::new(
                "--doppler.min-retry-delay",
                "must be above zero and not above --doppler.max-retry-delay",
            ));
        }
        if self.max_retry_count == Some(0) {
            return Err(ConfigError::new(
                "--doppler.max-retry-count",
                "must be at least 1 (leave it out to retry forever)",
            ));
        }
        if !(1024..=1 << 30).contains(&self.max_frame_size) {
            return Err(ConfigError::new(
                "--doppler.max-frame-size",
                "must be between 1KiB and 1GiB",
            ));
        }
        if self.uaa_timeout.is_zero() {
            return Err(ConfigError::new("--uaa.timeout", "must be above zero"));
        }
        Ok(SourceConfig {
            token_url: token_url(uaa)?,
            client_id,
            client_secret,
            firehose_url: firehose_url(doppler, &self.subscription_id)?,
            subscription_id: self.subscription_id.clone(),
            min_retry_delay: self.min_retry_delay,
            max_retry_delay: self.max_retry_delay,
            connections: usize::from(self.connections.max(1)),
            max_retry_count: self.max_retry_count,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_frame_size: self.max_frame_size,
            uaa_timeout: self.uaa_timeout,
            skip_ssl_verify: self.skip_ssl_verify,
        })
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

/// Parses a Go-style duration such as `500ms`, `10m` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 30s or 10m ({e})"))
}

/// Parses a duration that must be above zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be above zero"));
    }
    Ok(d)
}

/// Parses a listen address; `:9186` means every interface.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not host:port or :port"))
}

/// Parses a size in bytes: `4194304`, `512KiB`, `4MiB` (also `KB`/`MB`, `K`/`M`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(format!("{s:?} is not a size like 65536, 512KiB or 4MiB")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{s:?} is not a size like 65536, 512KiB or 4MiB"))
}

fn parse_telemetry_path(s: &str) -> Result<String, String> {
    let path = s.trim_end_matches('/');
    let plain = path.starts_with('/')
        && path.len() >= 2
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'));
    if !plain {
        return Err(format!(
            "{s:?} must be a path like /metrics: segments of letters, digits, '-', '.', '_' or '~'"
        ));
    }
    if matches!(path, "/-/healthy" | "/-/ready") {
        return Err(format!("{s:?} is taken by the exporter's own endpoint"));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cf-firehose-exporter").chain(args.iter().copied()))
    }

    #[test]
    fn firehose_url_schemes() {
        let u = |d| firehose_url(d, "prometheus").map(|u| u.to_string());
        assert_eq!(
            u("wss://doppler.sys:443").unwrap(),
            "wss://doppler.sys/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("https://doppler.sys:4443/").unwrap(),
            "wss://doppler.sys:4443/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("http://127.0.0.1:8081").unwrap(),
            "ws://127.0.0.1:8081/firehose/prometheus?filter-type=metrics"
        );
        assert_eq!(
            u("ws://tc/base").unwrap(),
            "ws://tc/base/firehose/prometheus?filter-type=metrics"
        );
        let err = u("ftp://doppler.sys").unwrap_err().to_string();
        assert_eq!(
            err,
            "--doppler.url: scheme \"ftp\" is not one of wss, https, ws, http"
        );
        assert!(
            u("not a url")
                .unwrap_err()
                .to_string()
                .starts_with("--doppler.url: ")
        );
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("1 M"), Ok(1 << 20));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn the_constructor_matches_the_flag_defaults() {
        let parsed = parse(&[
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=s",
            "--doppler.url=wss://tc",
        ])
        .unwrap()
        .source;
        let built = SourceArgs::new("https://uaa", "c", Secret::new("s"), "wss://tc");
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
        let common = parse(&[]).unwrap().common;
        assert_eq!(
            format!("{common:?}"),
            format!("{:?}", CommonArgs::default())
        );
        let resolved = built.resolve().unwrap();
        assert_eq!(resolved.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(resolved.max_retry_count, None);
        assert_eq!(resolved.max_frame_size, 4 << 20);
    }

    #[test]
    fn zero_idle_timeout_turns_it_off_and_zero_retries_is_refused() {
        let mut args = SourceArgs::new("https://uaa", "c", Secret::new("s"), "wss://tc");
        args.idle_timeout = Duration::ZERO;
        assert_eq!(args.resolve().unwrap().idle_timeout, None);
        args.max_retry_count = Some(0);
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.starts_with("--doppler.max-retry-count: "), "{err}");
    }

    #[test]
    fn token_url_appends_path() {
        assert_eq!(
            token_url("https://uaa.sys/").unwrap().as_str(),
            "https://uaa.sys/oauth/token"
        );
        assert!(
            token_url("wss://uaa.sys")
                .unwrap_err()
                .to_string()
                .starts_with("--uaa.url: ")
        );
    }

    #[test]
    fn defaults_and_listen_address() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.common.listen_address, "0.0.0.0:9186".parse().unwrap());
        assert_eq!(cli.common.telemetry_path, "/metrics");
        assert_eq!(cli.common.expiration, Duration::from_secs(600));
        assert_eq!(cli.source.subscription_id, "prometheus");
        assert_eq!(cli.source.min_retry_delay, Duration::from_millis(500));
        let cli = parse(&["--doppler.metric-expiration", "1m30s"]).unwrap();
        assert_eq!(cli.common.expiration, Duration::from_secs(90));
    }

    #[test]
    fn bad_flags_name_themselves() {
        let err = parse(&["--metrics.expiration", "soon"])
            .unwrap_err()
            .to_string();
        assert!(
            err.lines().next().unwrap().contains("--metrics.expiration"),
            "{err}"
        );
        let err = parse(&["--web.listen-address", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(
            err.lines().next().unwrap().contains("--web.listen-address"),
            "{err}"
        );
        let err = parse(&[])
            .unwrap()
            .source
            .resolve()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--uaa.url: required (or FIREHOSE_EXPORTER_UAA_URL)");
    }

    #[test]
    fn secrets_do_not_show() {
        let cli = parse(&[
            "--uaa.url=https://uaa",
            "--uaa.client-id=c",
            "--uaa.client-secret=hunter2",
            "--doppler.url=wss://tc",
        ])
        .unwrap();
        let resolved = cli.source.resolve().unwrap();
        assert!(!format!("{cli:?}{resolved:?}").contains("hunter2"));
        assert_eq!(resolved.client_secret.expose(), "hunter2");
    }
}
