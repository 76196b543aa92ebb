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
    /// Every line it logged before it said so.
    pub logged: Vec<String>,
    /// Whether every one of those lines was a JSON object.
    pub json: bool,
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

/// A log line's level and message, and the address it names, in logfmt or
/// JSON.
fn read_line(line: &str) -> (bool, Option<String>) {
    const SERVING: &str = "msg=\"serving metrics\" address=";
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line) {
        let warn = object.get("level").and_then(|l| l.as_str()) == Some("WARN");
        let fields = object.get("fields");
        let field = |name: &str| fields.and_then(|f| f.get(name)).and_then(|v| v.as_str());
        let address = (field("message") == Some("serving metrics"))
            .then(|| field("address").map(str::to_owned))
            .flatten();
        return (warn, address);
    }
    let address = line.find(SERVING).and_then(|at| {
        let rest = &line[at + SERVING.len()..];
        rest.split_whitespace().next().map(str::to_owned)
    });
    (line.contains("level=warn"), address)
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
    let (mut warnings, mut logged) = (Vec::new(), Vec::new());
    let address = tokio::time::timeout(super::PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let (warn, address) = read_line(&line);
            if warn {
                warnings.push(line.clone());
            }
            logged.push(line);
            if address.is_some() {
                return address;
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the exporter says where it serves");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let json = logged
        .iter()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()));
    Started {
        child,
        address,
        warnings,
        logged,
        json,
    }
}
