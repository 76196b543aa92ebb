//! The flags shared by the exporter and the demo: the store, the web
//! endpoint and logging, in the style of Prometheus exporters and with the
//! Go `firehose_exporter`'s names where the meaning is the same. Every flag
//! has a `FIREHOSE_EXPORTER_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::parse::defaults;
use super::parse::{parse_listen_address, parse_positive_duration, parse_telemetry_path};
use crate::config::ConfigError;
use crate::http::listener::Limits;
use crate::secret::Secret;
use crate::store::SeriesLimits;

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
    /// Upper bounds of the `http_duration_seconds` buckets, in seconds,
    /// comma-separated; the default is client_golang's.
    #[arg(
        long = "metrics.http-buckets",
        env = "FIREHOSE_EXPORTER_METRICS_HTTP_BUCKETS",
        value_delimiter = ',',
        value_name = "SECONDS",
        default_value = "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10",
        value_parser = bucket_bound
    )]
    pub http_buckets: Vec<f64>,
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
        default_value_t = SeriesLimits::DEFAULT.max_name_length as u32,
        value_parser = clap::value_parser!(u32).range(16..),
        allow_hyphen_values = true,
        value_name = "BYTES"
    )]
    pub max_name_length: u32,
    /// Longest label value kept, in bytes; new series beyond it are dropped and counted.
    #[arg(
        long = "metrics.max-label-value-length",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_LABEL_VALUE_LENGTH",
        default_value_t = SeriesLimits::DEFAULT.max_label_value_length as u32,
        value_parser = clap::value_parser!(u32).range(16..),
        allow_hyphen_values = true,
        value_name = "BYTES"
    )]
    pub max_label_value_length: u32,
    /// Most labels on one series; new series with more are dropped and counted.
    #[arg(
        long = "metrics.max-labels",
        env = "FIREHOSE_EXPORTER_METRICS_MAX_LABELS",
        default_value_t = SeriesLimits::DEFAULT.max_labels as u32,
        value_parser = clap::value_parser!(u32).range(8..),
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_labels: u32,
    /// The naming scheme and its companions.
    #[command(flatten)]
    pub naming: super::naming::NamingArgs,
    /// Remote-write endpoints, and whether /metrics serves the series too.
    #[command(flatten)]
    pub remote_write: super::remote_write::RemoteWriteArgs,
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
    /// Serve HTTPS with this certificate (PEM), with --web.tls.key_file. The Go
    /// exporter's variable FIREHOSE_EXPORTER_WEB_TLS_CERTFILE is read too.
    #[arg(
        long = "web.tls.cert_file",
        env = "FIREHOSE_EXPORTER_WEB_TLS_CERT_FILE",
        value_name = "PATH"
    )]
    pub web_tls_cert_file: Option<std::path::PathBuf>,
    /// The Go exporter's spelling of the certificate's variable.
    #[arg(
        long = "web.tls.certfile",
        env = "FIREHOSE_EXPORTER_WEB_TLS_CERTFILE",
        hide = true,
        value_name = "PATH"
    )]
    pub web_tls_certfile: Option<std::path::PathBuf>,
    /// Private key (PEM) of --web.tls.cert_file. The Go exporter's variable
    /// FIREHOSE_EXPORTER_WEB_TLS_KEYFILE is read too.
    #[arg(
        long = "web.tls.key_file",
        env = "FIREHOSE_EXPORTER_WEB_TLS_KEY_FILE",
        value_name = "PATH"
    )]
    pub web_tls_key_file: Option<std::path::PathBuf>,
    /// The Go exporter's spelling of the key's variable.
    #[arg(
        long = "web.tls.keyfile",
        env = "FIREHOSE_EXPORTER_WEB_TLS_KEYFILE",
        hide = true,
        value_name = "PATH"
    )]
    pub web_tls_keyfile: Option<std::path::PathBuf>,
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
        default_value = Limits::DEFAULT_HEADER_TIMEOUT,
        value_parser = parse_positive_duration,
        allow_hyphen_values = true,
        value_name = "DURATION"
    )]
    pub read_header_timeout: Duration,
    /// Close HTTP connections with no request and no traffic for this long.
    #[arg(
        long = "web.idle-timeout",
        env = "FIREHOSE_EXPORTER_WEB_IDLE_TIMEOUT",
        default_value = Limits::DEFAULT_IDLE_TIMEOUT,
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
        default_value_t = Limits::DEFAULT_MAX_CONNECTIONS as u32,
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
    /// Log format: logfmt or json (the Go exporter's logger:stderr is read as logfmt,
    /// which goes to standard error).
    #[arg(
        long = "log.format",
        env = "FIREHOSE_EXPORTER_LOG_FORMAT",
        default_value = "logfmt",
        value_parser = ["logfmt", "json", "logger:stderr"],
        value_name = "FORMAT"
    )]
    pub log_format: String,
    /// Log in JSON, as --log.format json (the Go exporter's v7 flag).
    #[arg(
        long = "log.in_json",
        env = "FIREHOSE_EXPORTER_LOG_IN_JSON",
        overrides_with = "no_log_in_json"
    )]
    pub log_in_json: bool,
    /// kingpin's negation of --log.in_json.
    #[arg(long = "no-log.in_json", hide = true, overrides_with = "log_in_json")]
    pub no_log_in_json: bool,
}

impl Default for CommonArgs {
    /// Every flag at its default, whatever the environment holds.
    fn default() -> Self {
        defaults()
    }
}

impl CommonArgs {
    /// The log format: `logfmt` or `json`.
    pub fn log_format(&self) -> &str {
        if self.log_in_json || self.log_format == "json" {
            "json"
        } else {
            "logfmt"
        }
    }

    /// How the `--web.*` flags secure the endpoint (files read and checked).
    pub fn web_security(&self) -> Result<crate::http::web_config::WebSecurity, ConfigError> {
        let either = |ours: &Option<std::path::PathBuf>, go: &Option<std::path::PathBuf>| {
            ours.clone().or_else(|| go.clone())
        };
        crate::http::web_config::WebSecurityArgs {
            config_file: self.web_config_file.clone(),
            tls_cert_file: either(&self.web_tls_cert_file, &self.web_tls_certfile),
            tls_key_file: either(&self.web_tls_key_file, &self.web_tls_keyfile),
            auth_username: self.web_auth_username.clone(),
            auth_password: self.web_auth_password.clone(),
        }
        .resolve()
    }

    /// Bounds on the bytes of one series.
    pub fn series_limits(&self) -> SeriesLimits {
        let size = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        SeriesLimits {
            max_name_length: size(self.max_name_length),
            max_label_value_length: size(self.max_label_value_length),
            max_labels: size(self.max_labels),
        }
    }

    /// Timeouts and cap of the HTTP connections (the cap as given, before
    /// the open-files limit lowers it).
    pub fn http_limits(&self) -> Limits {
        Limits {
            header_timeout: self.read_header_timeout,
            idle_timeout: self.web_idle_timeout,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The filters the `--filter.*` flags describe.
    pub fn filters(&self) -> Result<crate::ingest::filter::Filters, ConfigError> {
        crate::ingest::filter::Filters::new(
            &self.filter_events,
            &self.filter_deployments,
            &self.filter_origins,
            self.filter_metric_names.as_deref(),
            self.filter_metric_names_exclude.as_deref(),
        )
        .map_err(|e| ConfigError::new(e.flag, e.problem))
    }
}

/// One bucket bound: a finite number of seconds above zero.
fn bucket_bound(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(bound) if bound.is_finite() && bound > 0.0 => Ok(bound),
        _ => Err(format!("{text:?} is not a number of seconds above 0")),
    }
}
