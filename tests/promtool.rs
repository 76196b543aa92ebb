//! The exposition checked by Prometheus' own parser and linter, `promtool
//! check metrics`, on the demo foundation's full output. Lint warnings about
//! relayed names (kept as Cloud Foundry emits them) are expected; anything
//! else, and any warning about the exporter's own metrics, fails.

mod common;

use cf_firehose_exporter::cli::CommonArgs;
use cf_firehose_exporter::cli::naming::NamingKind;
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

/// The demo foundation's full scrape under `naming`, once a round holds
/// every one of `names` (five series of the first).
async fn demo_scrape(naming: NamingKind, names: &[&str]) -> String {
    let mut common = CommonArgs {
        environment: Some("test".into()),
        listen_address: "127.0.0.1:0".parse().unwrap(),
        ..CommonArgs::default()
    };
    common.naming.naming = naming;
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
    common::eventually("a full round of the workload", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let parsed = common::exposition::parse(&body).ok()?;
        (parsed.find(names[0], &[]).len() > 5
            && names.iter().all(|name| !parsed.find(name, &[]).is_empty()))
        .then_some(body)
    })
    .await
}

/// promtool parses `body` and finds nothing but lints of relayed names.
fn assert_only_name_lints(body: &str) {
    let (code, report) = common::promtool_check_metrics(body).expect("promtool found before");
    // 0: clean; 3: lint problems only. Anything else is a parse failure.
    assert!(
        matches!(code, Some(0) | Some(3)),
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

#[tokio::test]
async fn promtool_finds_no_problem_but_relayed_name_lints() {
    if common::required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL").is_none() {
        return;
    }
    let body = demo_scrape(NamingKind::Native, &["cpu", "CapacityRemainingMemory"]).await;
    assert_only_name_lints(&body);
}

/// The Go exporter's names, lints and all (its `_total` gauges), and its
/// self metrics.
#[tokio::test]
async fn the_go_names_parse_under_promtool_too() {
    if common::required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL").is_none() {
        return;
    }
    let names = [
        "firehose_container_metric_cpu_percentage",
        "firehose_value_metric_rep_capacity_remaining_memory",
        "firehose_http_total",
        "firehose_total_envelopes_received",
    ];
    let body = demo_scrape(NamingKind::FirehoseExporter, &names).await;
    assert_only_name_lints(&body);
}
