//! The `cf-firehose-exporter` binary: parses flags, sets up logging and hands
//! over to the library.

use std::process::ExitCode;
use std::time::Duration;

use cf_firehose_exporter::app::{self, ExporterConfig, RunError, StartError};
use cf_firehose_exporter::cli::{CommonArgs, LegacyArgs, SourceArgs};
use cf_firehose_exporter::config::ConfigError;
use cf_firehose_exporter::logging;
use cf_firehose_exporter::sim::args::{DemoArgs, SimulateArgs};
use cf_firehose_exporter::sim::demo::{self, DemoError};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    /// The Go exporter's flags without effect here, and its `--no-` forms
    /// (last: their help heading is the last one).
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

/// Subcommands besides the exporter itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated foundation and the exporter against it, on loopback.
    Demo(Box<DemoArgs>),
    /// Serve a simulated foundation (UAA and Traffic Controller) for any Firehose consumer.
    Simulate(Box<SimulateArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the flag, not clap's usage block.
            logging::print_stderr(&first_paragraph(&e.to_string()));
            return ExitCode::from(USAGE);
        }
    };
    let (level, format) = match &cli.command {
        Some(Command::Simulate(args)) => (args.log_level.clone(), "logfmt".to_owned()),
        Some(Command::Demo(args)) => (
            args.common.log_level.clone(),
            args.common.log_format().to_owned(),
        ),
        None => (
            cli.common.log_level.clone(),
            cli.common.log_format().to_owned(),
        ),
    };
    logging::init(&level, &format);
    // As Go programs do: the soft limit of open files up to the hard one.
    cf_firehose_exporter::http::listener::raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            logging::print_stderr(&format!("error: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Whatever still runs (a scrape being encoded) must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    logging::flush(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::print_stderr(&format!("error: {e:#}"));
            // A mistake in the flags exits as clap's own errors do.
            let config = e.chain().any(|c| {
                c.downcast_ref::<ConfigError>().is_some()
                    || c.downcast_ref::<StartError>().is_some_and(StartError::is_config)
                    || c.downcast_ref::<DemoError>().is_some_and(DemoError::is_config)
                    || matches!(c.downcast_ref::<RunError>(), Some(RunError::Start(e)) if e.is_config())
            });
            if config {
                ExitCode::from(USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Says at start-up which names the series take, and how to get the others.
fn naming_line(naming: &cf_firehose_exporter::cli::naming::NamingArgs) {
    use cf_firehose_exporter::cli::naming::NamingKind;
    match naming.naming {
        NamingKind::Native => tracing::info!(
            "metric names are native: as the platform emits them, without namespace, origin \
             or event type (--metrics.naming firehose_exporter gives the Go \
             firehose_exporter's names, such as firehose_value_metric_<origin>_<name>)"
        ),
        NamingKind::FirehoseExporter => tracing::info!(
            namespace = naming.namespace.as_deref().unwrap_or("firehose"),
            "metric names are the Go firehose_exporter's (--metrics.naming native gives the \
             names as emitted)"
        ),
    }
}

/// The first paragraph of clap's message on one line: what is wrong and
/// which flags, without the usage and the tips after it.
fn first_paragraph(text: &str) -> String {
    let words: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .collect();
    if words.is_empty() {
        "invalid arguments".to_owned()
    } else {
        words.join(" ")
    }
}

/// Exit code of a mistake in the flags, as for clap's own errors.
const USAGE: u8 = 2;

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    match cli.command {
        None => {
            let mut ignored = cli.legacy.without_effect();
            ignored.extend(cli.common.naming.without_effect());
            if cli.common.log_format == "logger:stderr" {
                ignored.push("--log.format logger:stderr (logfmt on standard error)");
            }
            if !ignored.is_empty() {
                tracing::warn!(
                    flags = %ignored.join(", "),
                    "flags of the Go firehose_exporter accepted without effect"
                );
            }
            let source = cli.source.resolve()?;
            let config = ExporterConfig::new(source, &cli.common)?;
            naming_line(&cli.common.naming);
            app::run(config, shutdown).await?;
        }
        Some(Command::Demo(args)) => {
            let demo =
                demo::start_demo(&args.common, &args.workload, &args.faults, args.source).await?;
            naming_line(&args.common.naming);
            let address = demo.exporter.address;
            let host = if address.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                address.ip().to_string()
            };
            logging::print_stdout(&format!(
                "demo: metrics on http://{host}:{}{}",
                address.port(),
                args.common.telemetry_path
            ));
            let token = demo.exporter.shutdown_token();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                token.cancel();
            });
            demo.exporter.wait().await?;
        }
        Some(Command::Simulate(args)) => {
            let (simulation, rlp_files) = demo::start_simulation(&args).await?;
            let f = &simulation.foundation;
            logging::print_stdout(&format!(
                "simulate: UAA on {} (client id {:?}), Traffic Controller on {}, RLP gateway on {}, \
                 RLP on {} (client certificate {}, key {}, CA {})",
                f.uaa_url(),
                args.client_id,
                f.doppler_url(),
                f.gateway_url(),
                f.rlp_address(),
                rlp_files.cert.display(),
                rlp_files.key.display(),
                rlp_files
                    .ca
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display(),
            ));
            shutdown.cancelled().await;
        }
    }
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGHUP would end the process without a word: log it and carry on
        // (there is nothing to reload; restart to change settings).
        let mut hangup = signal(SignalKind::hangup()).ok();
        let hangups = async {
            match hangup.as_mut() {
                Some(hangup) => {
                    while hangup.recv().await.is_some() {
                        tracing::info!(
                            "SIGHUP received and ignored: restart the exporter to change its settings"
                        );
                    }
                }
                None => std::future::pending().await,
            }
        };
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                    _ = hangups => {}
                }
            }
            Err(_) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = hangups => {}
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
