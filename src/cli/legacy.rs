//! The Go `firehose_exporter`'s flags that have no meaning here, accepted so
//! that a deployment of its v5, v6 or v7 starts unchanged, and named once in
//! a start-up warning; and kingpin's `--no-` form of its boolean flags.

use clap::Args;

/// Flags of the Go exporter's generations kept for their deployments.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Accepted from the Go firehose_exporter, without effect")]
pub struct LegacyArgs {
    /// v5/v6: how often expired series were swept (here, --metrics.expiration is kept
    /// to the second).
    #[arg(
        long = "metrics.cleanup-interval",
        env = "FIREHOSE_EXPORTER_METRICS_CLEANUP_INTERVAL",
        value_name = "DURATION"
    )]
    pub cleanup_interval: Option<String>,
    /// v7: metrics per write to its internal channel.
    #[arg(
        long = "metrics.batch_size",
        env = "FIREHOSE_EXPORTER_METRICS_BATCH_SIZE",
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub batch_size: Option<String>,
    /// v7: the size of its timer roll-up buffer.
    #[arg(
        long = "metrics.timer_rollup_buffer_size",
        env = "FIREHOSE_EXPORTER_TIMER_ROLLUP_BUFFER_SIZE",
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub timer_rollup_buffer_size: Option<String>,
    /// v7: names without the event type and origin (here --metrics.naming chooses).
    #[arg(
        long = "retro_compat.disable",
        env = "FIREHOSE_EXPORTER_RETRO_COMPAT_DISABLE",
        overrides_with = "no_retro_compat_disable"
    )]
    pub retro_compat_disable: bool,
    #[arg(
        long = "no-retro_compat.disable",
        hide = true,
        overrides_with = "retro_compat_disable"
    )]
    no_retro_compat_disable: bool,
    /// v7: Go's pprof endpoints.
    #[arg(
        long = "profiler.enable",
        env = "FIREHOSE_EXPORTER_ENABLE_PROFILER",
        overrides_with = "no_profiler_enable"
    )]
    pub profiler_enable: bool,
    #[arg(
        long = "no-profiler.enable",
        hide = true,
        overrides_with = "profiler_enable"
    )]
    no_profiler_enable: bool,
    /// kingpin's negation of --skip-ssl-verify (an override goes both ways:
    /// the last given wins).
    #[arg(
        long = "no-skip-ssl-verify",
        hide = true,
        overrides_with = "skip_ssl_verify"
    )]
    pub no_skip_ssl_verify: bool,
    /// kingpin's negation of --logging.use-legacy-firehose.
    #[arg(
        long = "no-logging.use-legacy-firehose",
        hide = true,
        overrides_with = "use_legacy_firehose"
    )]
    pub no_use_legacy_firehose: bool,
}

impl LegacyArgs {
    /// The flags given that have no effect here, by name.
    pub fn without_effect(&self) -> Vec<&'static str> {
        [
            (
                "--metrics.cleanup-interval",
                self.cleanup_interval.is_some(),
            ),
            ("--metrics.batch_size", self.batch_size.is_some()),
            (
                "--metrics.timer_rollup_buffer_size",
                self.timer_rollup_buffer_size.is_some(),
            ),
            ("--retro_compat.disable", self.retro_compat_disable),
            ("--profiler.enable", self.profiler_enable),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}
