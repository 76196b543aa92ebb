//! The exporter's binary, started as a deployment would start it.

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// The binary with none of the test process's exporter variables.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cf-firehose-exporter"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FIREHOSE_EXPORTER_") || key == "USE_LEGACY_FIREHOSE" {
            command.env_remove(key);
        }
    }
    command
}

/// A started binary.
pub struct Started {
    /// The process, killed when dropped.
    pub child: Child,
    /// Where it serves, as `host:port`.
    pub address: String,
    /// The lines it logged with `level=warn` before it said so.
    pub warnings: Vec<String>,
}

impl Started {
    /// Its warnings that name the flags it accepted without effect.
    pub fn without_effect(&self) -> Vec<&String> {
        self.warnings
            .iter()
            .filter(|l| l.contains("accepted without effect"))
            .collect()
    }
}

/// Starts `command` and reads its standard error until it says where it
/// serves; what it logs after is read and dropped.
pub async fn start(command: &mut Command) -> Started {
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the exporter starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warnings = Vec::new();
    const SERVING: &str = "msg=\"serving metrics\" address=";
    let address = tokio::time::timeout(super::PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("level=warn") {
                warnings.push(line.clone());
            }
            if let Some(at) = line.find(SERVING) {
                let rest = &line[at + SERVING.len()..];
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the exporter says where it serves");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Started {
        child,
        address,
        warnings,
    }
}
