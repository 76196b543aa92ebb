//! How relayed metrics are named: the native scheme, or the Go
//! `firehose_exporter`'s names with its namespace, delta gauges and
//! `node_index`.

use clap::{Args, ValueEnum};

use crate::config::ConfigError;
use crate::naming::Naming;
use crate::naming::compat::DEFAULT_NAMESPACE;

/// The schemes `--metrics.naming` chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NamingKind {
    /// Names as emitted, every tag a label.
    Native,
    /// The Go firehose_exporter's names: firehose_value_metric_<origin>_<name>, ...
    #[value(name = "firehose_exporter")]
    FirehoseExporter,
}

/// The naming flags.
#[derive(Debug, Clone, Args)]
pub struct NamingArgs {
    /// Metric names: native (as emitted) or firehose_exporter (the Go exporter's names,
    /// for its dashboards and alerts).
    #[arg(
        long = "metrics.naming",
        env = "FIREHOSE_EXPORTER_METRICS_NAMING",
        value_enum,
        default_value = "native",
        value_name = "SCHEME"
    )]
    pub naming: NamingKind,
    /// With --metrics.naming firehose_exporter: the prefix of the names [default: firehose].
    #[arg(
        long = "metrics.namespace",
        env = "FIREHOSE_EXPORTER_METRICS_NAMESPACE",
        value_name = "NAME"
    )]
    pub namespace: Option<String>,
    /// With --metrics.naming firehose_exporter: a gauge <name>_delta beside each counter.
    #[arg(
        long = "metrics.enable-delta",
        env = "FIREHOSE_EXPORTER_METRICS_ENABLE_DELTA",
        overrides_with = "no_enable_delta"
    )]
    pub enable_delta: bool,
    #[arg(
        long = "no-metrics.enable-delta",
        hide = true,
        overrides_with = "enable_delta"
    )]
    no_enable_delta: bool,
    /// The Go v7's spelling of --metrics.enable-delta.
    #[arg(
        long = "retro_compat.enable_delta",
        env = "FIREHOSE_EXPORTER_RETRO_COMPAT_ENABLE_DELTA",
        overrides_with = "no_retro_compat_enable_delta"
    )]
    pub retro_compat_enable_delta: bool,
    #[arg(
        long = "no-retro_compat.enable_delta",
        hide = true,
        overrides_with = "retro_compat_enable_delta"
    )]
    no_retro_compat_enable_delta: bool,
    /// With --metrics.naming firehose_exporter: the node_index label of the HTTP series, as
    /// the Go v7 sets it [default: 0].
    #[arg(
        long = "metrics.node_index",
        env = "FIREHOSE_EXPORTER_NODE_INDEX",
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub node_index: Option<String>,
}

impl NamingArgs {
    /// The scheme the flags ask for, checked: a namespace must be a valid
    /// start of a metric name, and not the exporter's own prefix.
    pub fn naming(&self) -> Result<Naming, ConfigError> {
        if self.naming == NamingKind::Native {
            return Ok(Naming::Native);
        }
        let namespace = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        let valid = namespace
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if !valid {
            return Err(ConfigError::new(
                "--metrics.namespace",
                format!(
                    "{namespace:?} is not a metric name: letters, digits and _, not first a digit"
                ),
            ));
        }
        if format!("{namespace}_").starts_with(crate::telemetry::PREFIX) {
            return Err(ConfigError::new(
                "--metrics.namespace",
                format!("{namespace:?} would name series as the exporter's own metrics"),
            ));
        }
        Ok(Naming::Compat {
            namespace: namespace.to_owned(),
            delta: self.enable_delta || self.retro_compat_enable_delta,
            node_index: self.node_index.clone().unwrap_or_else(|| "0".to_owned()),
        })
    }

    /// The flags given that mean nothing under the native scheme, by name.
    pub fn without_effect(&self) -> Vec<&'static str> {
        if self.naming != NamingKind::Native {
            return Vec::new();
        }
        [
            ("--metrics.namespace", self.namespace.is_some()),
            ("--metrics.enable-delta", self.enable_delta),
            (
                "--retro_compat.enable_delta",
                self.retro_compat_enable_delta,
            ),
            ("--metrics.node_index", self.node_index.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}
