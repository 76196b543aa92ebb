//! The rule files under `alerts/`, checked by Prometheus' own `promtool`
//! (`check rules`, and `test rules` on `alerts/tests/`); the recording rules
//! that publish native series under the Go exporter's names agree with the
//! compat scheme's `norm()`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cf_firehose_exporter::naming::compat::norm;

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

/// Every alert of every rule file has a promtool test where it fires and
/// one where it stays quiet.
#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let mut alerts = Vec::new();
    for file in files("alerts", ".rules.yml") {
        let text = std::fs::read_to_string(&file).unwrap();
        alerts.extend(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("- alert: "))
                .map(str::to_owned),
        );
    }
    assert!(alerts.len() >= 14, "{alerts:?}");
    let tests: String = files("alerts/tests", ".test.yml")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for alert in alerts {
        let (mut quiet, mut firing) = (false, false);
        for pair in lines.windows(2) {
            if pair[0] == format!("alertname: {alert}") {
                match pair[1] {
                    "exp_alerts: []" => quiet = true,
                    "exp_alerts:" => firing = true,
                    _ => {}
                }
            }
        }
        assert!(
            quiet && firing,
            "{alert}: tested quiet {quiet}, firing {firing}"
        );
    }
}
