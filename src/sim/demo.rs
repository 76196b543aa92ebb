//! `demo` and `simulate`: the simulated foundation on its own, or with the
//! exporter reading from it, on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::app::{Exporter, ExporterConfig, StartError};
use crate::cli::{CommonArgs, SourceArgs};
use crate::config::ConfigError;
use crate::sim::args::{FaultArgs, SimSource, SimulateArgs, WorkloadArgs};
use crate::sim::faults::run_schedule;
use crate::sim::traffic_controller::TcSettings;
use crate::sim::workload::Workload;
use crate::sim::{Foundation, SimAddresses, SimClient, pacer};

/// A simulated foundation with its workload flowing.
#[derive(Debug)]
pub struct Simulation {
    /// The servers.
    pub foundation: std::sync::Arc<Foundation>,
    pacer: JoinHandle<()>,
    faults: JoinHandle<()>,
}

impl Simulation {
    /// Starts the servers on the given addresses and the workload at its rate.
    pub async fn start(
        addresses: SimAddresses,
        client: SimClient,
        workload: &WorkloadArgs,
        faults: &FaultArgs,
    ) -> std::io::Result<Self> {
        let foundation = std::sync::Arc::new(
            Foundation::start_on(addresses, client, TcSettings::default()).await?,
        );
        let stream = Workload::new(workload);
        tracing::info!(
            series = stream.round_len(),
            rate = workload.rate,
            cells = workload.cells,
            apps = workload.apps,
            "simulated foundation ready"
        );
        let sending = foundation.clone();
        let rate = workload.rate;
        let pacer = tokio::spawn(async move {
            let targets = pacer::Targets {
                traffic_controller: &sending.traffic_controller,
                gateway: &sending.gateway,
                rlp: &sending.rlp,
            };
            pacer::run(stream, targets, rate).await
        });
        let injecting = foundation.clone();
        let schedule = faults.clone();
        let faults = tokio::spawn(async move {
            run_schedule(
                &injecting,
                &schedule.faults,
                schedule.interval,
                schedule.duration,
            )
            .await
        });
        Ok(Self {
            foundation,
            pacer,
            faults,
        })
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.pacer.abort();
        self.faults.abort();
    }
}

/// The exporter reading a simulated foundation.
#[derive(Debug)]
pub struct Demo {
    /// The simulated foundation.
    pub simulation: Simulation,
    /// The exporter.
    pub exporter: Exporter,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulated foundation's servers could not start.
    #[error("cannot start the simulated foundation: {0}")]
    Simulation(#[source] std::io::Error),
    /// A flag is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The exporter could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl DemoError {
    /// Whether a flag is at fault (exit code 2) rather than the environment.
    pub fn is_config(&self) -> bool {
        match self {
            DemoError::Config(_) => true,
            DemoError::Start(e) => e.is_config(),
            DemoError::Simulation(_) => false,
        }
    }
}

/// Starts a simulated foundation on loopback and the exporter against it.
pub async fn start_demo(
    common: &CommonArgs,
    workload: &WorkloadArgs,
    faults: &FaultArgs,
    transport: SimSource,
) -> Result<Demo, DemoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let client = SimClient::default();
    let addresses = SimAddresses {
        uaa: loopback,
        traffic_controller: loopback,
        gateway: loopback,
        rlp: loopback,
    };
    let simulation = Simulation::start(addresses, client.clone(), workload, faults)
        .await
        .map_err(DemoError::Simulation)?;
    let mut source = SourceArgs::new(
        simulation.foundation.uaa_url(),
        client.id.clone(),
        client.secret.clone(),
        simulation.foundation.doppler_url(),
    );
    let foundation = &simulation.foundation;
    match transport {
        SimSource::Firehose => {}
        SimSource::Gateway => {
            source.doppler_url = None;
            source.logging_url = Some(foundation.gateway_url());
        }
        SimSource::Rlp => {
            let files = foundation
                .rlp_client_files()
                .map_err(DemoError::Simulation)?;
            source.doppler_url = None;
            source.uaa_url = None;
            source.uaa_client_id = None;
            source.uaa_client_secret = None;
            source.logging_url = Some(foundation.rlp_address());
            source.logging_tls_ca = files.ca;
            source.logging_tls_cert = Some(files.cert);
            source.logging_tls_key = Some(files.key);
        }
    }
    source.max_retry_delay = Duration::from_secs(5);
    let source = source.resolve()?;
    let config = ExporterConfig::new(source, common)?;
    let exporter = Exporter::start(config).await?;
    Ok(Demo {
        simulation,
        exporter,
    })
}

/// Starts the simulated foundation as `simulate` describes it; returns it
/// and the files of the RLP's client certificate.
pub async fn start_simulation(
    args: &SimulateArgs,
) -> std::io::Result<(Simulation, crate::source::tls::MutualTlsFiles)> {
    let client = SimClient {
        id: args.client_id.clone(),
        secret: args.client_secret.clone(),
        token_lifetime: args.token_lifetime,
    };
    let addresses = SimAddresses {
        uaa: args.uaa_address,
        traffic_controller: args.doppler_address,
        gateway: args.gateway_address,
        rlp: args.rlp_address,
    };
    let simulation = Simulation::start(addresses, client, &args.workload, &args.faults).await?;
    let files = match &args.rlp_certs_dir {
        Some(dir) => simulation.foundation.pki.write_client_files(dir)?,
        None => simulation.foundation.rlp_client_files()?,
    };
    Ok((simulation, files))
}
