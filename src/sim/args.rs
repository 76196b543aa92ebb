//! The simulator's flags: the workload, the faults, and the `demo` and
//! `simulate` subcommands.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::cli::exporter::CommonArgs;
use crate::cli::parse::{parse_duration, parse_listen_address, parse_positive_duration};
use crate::secret::Secret;

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
    /// No faults, and the declared interval and duration.
    fn default() -> Self {
        crate::cli::parse::defaults()
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
    /// Which of the simulated foundation's transports the exporter reads.
    #[arg(
        long = "sim.source",
        env = "FIREHOSE_EXPORTER_SIM_SOURCE",
        value_enum,
        default_value = "firehose"
    )]
    pub source: SimSource,
}

/// The transports of the simulated foundation that `demo` can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SimSource {
    /// The v1 Firehose of the Traffic Controller.
    #[default]
    Firehose,
    /// The v2 RLP gateway.
    Gateway,
    /// The v2 gRPC Reverse Log Proxy, with mutual TLS.
    Rlp,
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
    /// Address of the simulated RLP gateway.
    #[arg(long = "sim.gateway-address", env = "FIREHOSE_EXPORTER_SIM_GATEWAY_ADDRESS", default_value = "127.0.0.1:8088", value_parser = parse_listen_address)]
    pub gateway_address: SocketAddr,
    /// Address of the simulated RLP (gRPC with mutual TLS).
    #[arg(long = "sim.rlp-address", env = "FIREHOSE_EXPORTER_SIM_RLP_ADDRESS", default_value = "127.0.0.1:8082", value_parser = parse_listen_address)]
    pub rlp_address: SocketAddr,
    /// Folder the RLP client's certificate, key and CA are written to (default: a new
    /// one in the system's temporary folder).
    #[arg(
        long = "sim.rlp-certs-dir",
        env = "FIREHOSE_EXPORTER_SIM_RLP_CERTS_DIR",
        value_name = "PATH"
    )]
    pub rlp_certs_dir: Option<std::path::PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_by_default_and_the_declared_timing() {
        let faults = FaultArgs::default();
        assert!(faults.faults.is_empty());
        assert_eq!(faults.interval, Duration::from_secs(30));
        assert_eq!(faults.duration, Duration::from_secs(10));
    }
}
