//! The exposition checked by Prometheus' own parser and linter, `promtool
//! check metrics`, on the demo foundation's full output. Lint warnings about
//! relayed names (kept as Cloud Foundry emits them) are expected; anything
//! else, and any warning about the exporter's own metrics, fails.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use cf_firehose_exporter::cli::CommonArgs;
use cf_firehose_exporter::sim::args::WorkloadArgs;
use cf_firehose_exporter::sim::demo::start_demo;

/// Lint messages that only say a relayed name does not follow Prometheus'
/// naming conventions.
const NAME_LINTS: &[&str] = &[
    "metric names should be written in 'snake_case' not 'camelCase'",
    "non-histogram and non-summary metrics should not have \"_count\" suffix",
    "non-counter metrics should not have \"_total\" suffix",
    "metric names should not contain abbreviated units",
    "metric name should not include type 'gauge'",
    "metric name should not include type 'counter'",
];

fn promtool() -> Option<&'static str> {
    common::required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL")
}

#[tokio::test]
async fn promtool_finds_no_problem_but_relayed_name_lints() {
    let Some(promtool) = promtool() else { return };
    let common = CommonArgs {
        environment: Some("test".into()),
        listen_address: "127.0.0.1:0".parse().unwrap(),
        ..CommonArgs::default()
    };
    let workload = WorkloadArgs {
        rate: 5000,
        cells: 3,
        apps: 10,
        seed: 3,
    };
    let demo = start_demo(&common, &workload, &Default::default())
        .await
        .expect("demo starts");
    let url = format!("http://{}/metrics", demo.exporter.address);
    let body = common::eventually("a full round of the workload", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let parsed = common::exposition::parse(&body).ok()?;
        (parsed.find("cpu", &[]).len() > 5
            && !parsed.find("CapacityRemainingMemory", &[]).is_empty())
        .then_some(body)
    })
    .await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // 0: clean; 3: lint problems only. Anything else is a parse failure.
    assert!(
        matches!(output.status.code(), Some(0) | Some(3)),
        "promtool failed:\n{report}"
    );
    for line in report.lines() {
        let (name, message) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            !name.starts_with("cf_firehose_exporter_"),
            "self metric linted: {line}"
        );
        assert!(
            NAME_LINTS.contains(&message),
            "unexpected promtool finding: {line}"
        );
    }
}
