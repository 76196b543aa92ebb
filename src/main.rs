//! The `cf-firehose-exporter` binary: parses flags, sets up logging and hands
//! over to the library.

use std::process::ExitCode;

use cf_firehose_exporter::app::{self, ExporterConfig};
use cf_firehose_exporter::config::{Cli, Command};
use cf_firehose_exporter::demo;
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the flag, not clap's usage block.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    let (level, format) = match &cli.command {
        Some(Command::Simulate(args)) => (args.log_level.clone(), "logfmt".to_owned()),
        Some(Command::Demo(args)) => (
            args.common.log_level.clone(),
            args.common.log_format.clone(),
        ),
        None => (cli.common.log_level.clone(), cli.common.log_format.clone()),
    };
    cf_firehose_exporter::logging::init(&level, &format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Whatever still runs (a scrape being encoded) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    match cli.command {
        None => {
            let source = cli.source.resolve()?;
            app::run(ExporterConfig::new(source, &cli.common)?, shutdown).await?;
        }
        Some(Command::Demo(args)) => {
            let demo = demo::start_demo(&args.common, &args.workload, &args.faults).await?;
            let address = demo.exporter.address;
            let host = if address.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                address.ip().to_string()
            };
            println!(
                "demo: metrics on http://{host}:{}{}",
                address.port(),
                args.common.telemetry_path
            );
            let token = demo.exporter.shutdown_token();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                token.cancel();
            });
            demo.exporter.wait().await?;
        }
        Some(Command::Simulate(args)) => {
            let simulation = demo::start_simulation(&args).await?;
            let f = &simulation.foundation;
            println!(
                "simulate: UAA on {} (client id {:?}), Traffic Controller on {}",
                f.uaa_url(),
                args.client_id,
                f.doppler_url()
            );
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
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
