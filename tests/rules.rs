//! The rule files under `alerts/`, checked by Prometheus' own `promtool`
//! (`check rules`, and `test rules` on `alerts/tests/`); the recording rules
//! that publish native series under the Go exporter's names agree with the
//! compat scheme's `norm()`; and a compat scrape parses under `promtool check
//! metrics`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cf_firehose_exporter::cli::CommonArgs;
use cf_firehose_exporter::cli::naming::NamingKind;
use cf_firehose_exporter::naming::compat::norm;
use cf_firehose_exporter::sim::args::WorkloadArgs;
use cf_firehose_exporter::sim::demo::start_demo;

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no {suffix} in {}", dir.display());
    found
}

fn promtool(args: &[&str], file: &Path) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .arg(file)
        .current_dir(file.parent().unwrap())
        .output()
        .expect("promtool runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), report)
}

#[test]
fn promtool_checks_every_rule_file_and_passes_every_rule_test() {
    if common::required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL").is_none() {
        return;
    }
    for file in files("alerts", ".rules.yml") {
        let (ok, report) = promtool(&["check", "rules"], &file);
        assert!(ok, "{}:\n{report}", file.display());
    }
    for file in files("alerts/tests", ".test.yml") {
        let (ok, report) = promtool(&["test", "rules"], &file);
        assert!(ok, "{}:\n{report}", file.display());
        assert!(report.contains("SUCCESS"), "{}:\n{report}", file.display());
    }
}

/// Each recording rule of a value metric or counter event is named as the
/// compat scheme names the series it reads: `norm()` of its origin and name.
#[test]
fn the_recorded_names_are_the_compat_schemes() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/firehose-exporter-names.rules.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (Some(record), Some(expr)) = (
            pair[0].strip_prefix("- record: "),
            pair[1].strip_prefix("expr: "),
        ) else {
            continue;
        };
        let Some((name, origin)) = expr
            .strip_suffix("\"}")
            .and_then(|e| e.split_once("{origin=\""))
        else {
            continue;
        };
        let expected = if record.starts_with("firehose_value_metric_") {
            format!("firehose_value_metric_{}_{}", norm(origin), norm(name))
        } else if record.starts_with("firehose_counter_event_") {
            let stem = name.strip_suffix("_total").expect("a counter's sample");
            format!(
                "firehose_counter_event_{}_{}_total",
                norm(origin),
                norm(stem)
            )
        } else {
            continue;
        };
        assert_eq!(record, expected, "{expr}");
        checked += 1;
    }
    assert!(checked >= 40, "{checked} rules checked");
}

#[tokio::test]
async fn a_compat_scrape_parses_under_promtool() {
    if common::required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL").is_none() {
        return;
    }
    let mut common = CommonArgs {
        environment: Some("test".into()),
        listen_address: "127.0.0.1:0".parse().unwrap(),
        ..CommonArgs::default()
    };
    common.naming.naming = NamingKind::FirehoseExporter;
    let workload = WorkloadArgs {
        rate: 5000,
        cells: 3,
        apps: 10,
        seed: 3,
    };
    let demo = start_demo(&common, &workload, &Default::default(), Default::default())
        .await
        .expect("demo starts");
    let url = format!("http://{}/metrics", demo.exporter.address);
    let body = common::eventually("a full round of the workload", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let parsed = common::exposition::parse(&body).ok()?;
        (parsed
            .find("firehose_container_metric_cpu_percentage", &[])
            .len()
            > 5
            && !parsed
                .find("firehose_value_metric_rep_capacity_remaining_memory", &[])
                .is_empty()
            && !parsed.find("firehose_http_total", &[]).is_empty())
        .then_some(body)
    })
    .await;
    let (code, report) = common::promtool_check_metrics(&body).expect("promtool found before");
    // 0: clean; 3: lint problems only (the Go names keep their _total
    // gauges). Anything else is a parse failure.
    assert!(
        matches!(code, Some(0) | Some(3)),
        "promtool failed:\n{report}"
    );
    // Names are the Go exporter's, lints and all; the exporter's own are not linted.
    for line in report.lines() {
        let (name, message) = line.split_once(' ').unwrap_or((line, ""));
        assert!(!name.starts_with("cf_firehose_exporter_"), "{line}");
        assert!(
            message.contains("should not") || message.contains("should be written"),
            "not a naming lint: {line}"
        );
    }
}
