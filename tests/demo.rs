//! `cf-firehose-exporter demo`, run as a newcomer runs it: the binary serves
//! a simulated foundation's metrics under their own names within seconds.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_serves_platform_and_container_metrics_under_their_own_names() {
    let parsed = demo(&[]);
    check(&parsed);
    assert!(
        parsed
            .value(
                "cf_firehose_exporter_envelopes_received_total",
                &[("event_type", "ValueMetric")]
            )
            .unwrap()
            > 0.0
    );
}

#[test]
fn demo_over_the_rlp_gateway_serves_the_same_metrics() {
    v2_demo("gateway");
}

#[test]
fn demo_over_the_rlp_serves_the_same_metrics() {
    v2_demo("rlp");
}

/// A demo reading the v2 transport `source`.
fn v2_demo(source: &str) {
    let parsed = demo(&["--sim.source", source]);
    check(&parsed);
    assert!(
        parsed
            .value(
                "cf_firehose_exporter_envelopes_received_total",
                &[("event_type", "gauge")]
            )
            .unwrap()
            > 0.0
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "ValueMetric")]
        ),
        Some(0.0)
    );
}

/// Runs `demo` with `args` and returns its first body holding a whole
/// round of the workload.
fn demo(args: &[&str]) -> common::exposition::Exposition {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cf-firehose-exporter"))
        .args(["demo", "--web.listen-address", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let _guard = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("demo: metrics on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    assert!(url.ends_with("/metrics"), "{url}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no complete data within 10 s"
            );
            if let Ok(response) = client.get(&url).send().await {
                let body = response.text().await.unwrap();
                let parsed =
                    common::exposition::parse(&body).unwrap_or_else(|e| panic!("invalid: {e}"));
                // The first round of the workload may still be arriving:
                // wait for every cell's capacity, which `check` counts.
                let cells = parsed
                    .find(
                        "CapacityRemainingMemory",
                        &[("origin", "rep"), ("bosh_job_name", "diego-cell")],
                    )
                    .len();
                if !parsed.find("cpu", &[]).is_empty()
                    && cells >= 10
                    && !parsed.find("total_requests_total", &[]).is_empty()
                {
                    return parsed;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// What every demo must serve.
fn check(parsed: &common::exposition::Exposition) {
    let capacity = parsed.find(
        "CapacityRemainingMemory",
        &[("origin", "rep"), ("bosh_job_name", "diego-cell")],
    );
    assert_eq!(capacity.len(), 10, "one per simulated cell");
    assert_eq!(parsed.types["CapacityRemainingMemory"], "gauge");
    assert!(
        capacity
            .iter()
            .all(|s| s.labels["unit"] == "MiB" && s.value > 0.0)
    );
    let cpu = parsed.find("cpu", &[("unit", "percentage")]);
    assert!(!cpu.is_empty());
    assert!(
        cpu.iter()
            .all(|s| s.labels.contains_key("source_id") && s.labels.contains_key("app_name"))
    );
    let counters: Vec<&String> = parsed
        .types
        .iter()
        .filter(|(_, t)| *t == "counter")
        .map(|(n, _)| n)
        .collect();
    assert!(
        counters.iter().any(|n| *n == "total_requests_total"),
        "{counters:?}"
    );
    assert!(counters.iter().all(|n| n.ends_with("_total")));
    assert!(
        !parsed
            .find("total_requests_total", &[("origin", "gorouter")])
            .is_empty()
    );
    assert!(
        parsed
            .samples
            .iter()
            .all(|s| !s.name.starts_with("firehose_"))
    );
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
}
