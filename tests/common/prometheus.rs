//! A real Prometheus for the tests: started on a free port with a config
//! file, asked over its HTTP API, stopped and cleaned up when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Debian's `prometheus`, or `None` after saying the test is skipped.
pub fn binary() -> Option<&'static str> {
    super::required_tool("prometheus", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMETHEUS")
}

/// Stops Prometheus and removes its files when the test ends, however it ends.
pub struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    /// Watches `child`, which stores in `dir`.
    pub fn new(child: Child, dir: PathBuf) -> Self {
        Self { child, dir }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    serde_json::from_str(&response.text().await.ok()?).ok()
}

/// Starts Prometheus on a free port with `config`, storing in `dir`.
pub fn start_prometheus(
    binary: &str,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> (Running, String) {
    start_prometheus_with(binary, dir, config, &[])
}

/// As [`start_prometheus`], with more flags.
pub fn start_prometheus_with(
    binary: &str,
    dir: &std::path::Path,
    config: &std::path::Path,
    flags: &[&str],
) -> (Running, String) {
    let port = free_port();
    let child = Command::new(binary)
        .args(flags)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let running = Running {
        child,
        dir: dir.to_owned(),
    };
    (running, format!("http://127.0.0.1:{port}"))
}

/// Waits until `count` targets are up, each scraped at least once.
pub async fn targets_up(client: &reqwest::Client, base: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "targets never came up: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(json) = get_json(client, &format!("{base}/api/v1/targets")).await else {
            continue;
        };
        let Some(active) = json["data"]["activeTargets"].as_array().cloned() else {
            continue;
        };
        last = Value::Array(active.clone());
        if active.len() == count
            && active
                .iter()
                .all(|t| t["health"] == "up" && t["lastScrape"] != "0001-01-01T00:00:00Z")
        {
            return active;
        }
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
