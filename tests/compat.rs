//! The compat scheme over loopback from the simulator: a fixed input
//! scrapes exactly as the golden file says, with the Go exporter's names,
//! labels and self metrics; and the RLP gives the same series as the
//! Firehose.
//!
//! `UPDATE_GOLDEN=1 cargo test --test compat` rewrites the golden file.

mod common;

use std::collections::BTreeSet;

use cf_firehose_exporter::app::ExporterConfig;
use cf_firehose_exporter::envelope::events::{
    self, ContainerMetric, CounterEvent, Envelope, HttpStartStop, LogMessage, ValueMetric,
};
use cf_firehose_exporter::ingest::filter::Filters;
use cf_firehose_exporter::naming::Naming;
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::workload::uuid;
use common::Harness;
use common::exposition::Exposition;

const APP: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/compat.txt");

/// An envelope from a VM, with the `source_id` tag a v1 envelope carries
/// when Loggregator converts it from v2: the origin's, or an app's.
fn vm(origin: &str, job: &str, event_type: i32) -> Envelope {
    let mut e = Envelope {
        origin: origin.into(),
        event_type,
        deployment: Some("cf".into()),
        job: Some(job.into()),
        index: Some("6f2a-0".into()),
        ip: Some("10.0.0.7".into()),
        ..Default::default()
    };
    let source = if matches!(event_type, 4 | 5 | 9) {
        APP
    } else {
        origin
    };
    e.tags.insert("source_id".into(), source.into());
    e
}

fn gauge(origin: &str, name: &str, value: f64, unit: &str) -> Envelope {
    let mut e = vm(origin, "diego-cell", 6);
    e.value_metric = Some(ValueMetric {
        name: name.into(),
        value,
        unit: unit.into(),
    });
    e
}

fn counter(origin: &str, name: &str, delta: u64, total: u64) -> Envelope {
    let mut e = vm(origin, "router", 7);
    e.counter_event = Some(CounterEvent {
        name: name.into(),
        delta,
        total: Some(total),
    });
    e
}

fn container(index: i32, cpu: f64) -> Envelope {
    let mut e = vm("rep", "diego-cell", 9);
    e.container_metric = Some(ContainerMetric {
        application_id: APP.into(),
        instance_index: index,
        cpu_percentage: cpu,
        memory_bytes: 256 << 20,
        disk_bytes: 64 << 20,
        memory_bytes_quota: Some(1 << 30),
        disk_bytes_quota: Some(1 << 30),
    });
    e.tags.insert("app_name".into(), "web".into());
    e
}

fn request(duration_ms: i64, status: i32) -> Envelope {
    let mut e = vm("gorouter", "router", 4);
    e.tags.insert("app_name".into(), "web".into());
    e.http_start_stop = Some(HttpStartStop {
        start_timestamp: 1_000_000_000,
        stop_timestamp: 1_000_000_000 + duration_ms * 1_000_000,
        request_id: uuid("00000000-0000-0000-0000-000000000001"),
        peer_type: events::PeerType::Server as i32,
        method: events::Method::Get as i32,
        uri: "https://web.example.com/".into(),
        remote_address: "10.1.0.1:5000".into(),
        user_agent: "curl/8.5.0".into(),
        status_code: status,
        content_length: 2048,
        application_id: Some(uuid(APP)),
        instance_index: Some(0),
        instance_id: None,
        forwarded: Vec::new(),
    });
    e
}

fn log() -> Envelope {
    let mut e = vm("rep", "diego-cell", 5);
    e.log_message = Some(LogMessage {
        message: b"hello".to_vec(),
        message_type: 1,
        timestamp: 1,
        app_id: Some(APP.into()),
        source_type: Some("APP/PROC/WEB".into()),
        source_instance: Some("0".into()),
    });
    e
}

/// The fixed input: 17 envelopes.
fn sent() -> Vec<Envelope> {
    vec![
        gauge("rep", "CapacityRemainingMemory", 4096.0, "MiB"),
        gauge("rep", "CapacityRemainingMemory", 2048.0, "MiB"),
        gauge("bbs", "LRPsMissing", 2.0, "Metric"),
        gauge("gorouter", "responses.5xx", 1.0, ""),
        counter("gorouter", "total_requests", 10, 110),
        counter("gorouter", "total_requests", 5, 115),
        counter("DopplerServer", "listeners.totalReceivedMessageCount", 3, 9),
        container(0, 12.5),
        container(1, 50.0),
        request(3, 200),
        request(3, 200),
        request(40, 200),
        request(300, 502),
        request(7000, 200),
        log(),
        log(),
        log(),
    ]
}

/// The compat scheme with its `_delta` gauges, every event type, and an
/// environment.
fn compat(mut config: ExporterConfig) -> ExporterConfig {
    config.naming = Naming::Compat {
        namespace: "firehose".into(),
        delta: true,
        node_index: "0".into(),
    };
    config.environment = Some("prod".into());
    config.filters = Filters::new(
        &[
            "ValueMetric",
            "CounterEvent",
            "ContainerMetric",
            "HttpStartStop",
            "LogMessage",
        ]
        .map(String::from),
        &[],
        &[],
        None,
        None,
    )
    .unwrap();
    config.source.set_filter_type(config.filters.subscription());
    config
}

fn all_received(parsed: &Exposition) -> bool {
    let got = parsed.value("firehose_total_envelopes_received", &[]);
    got == Some(sent().len() as f64)
}

/// The relayed series and the Go self metrics: the body up to the
/// exporter's own metrics, with timestamps that are not zero masked.
fn comparable(body: &str) -> String {
    let end = body
        .find("# HELP cf_firehose_exporter_")
        .unwrap_or(body.len());
    body[..end]
        .lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((series, value))
                if series.starts_with("firehose_last_") && value != "0.0" && value != "0" =>
            {
                format!("{series} <unix time>")
            }
            _ => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect()
}

#[tokio::test]
async fn a_fixed_input_scrapes_as_the_golden_file() {
    let harness = Harness::start_with(Default::default(), Default::default(), compat).await;
    for e in sent() {
        harness.send(&e).await;
    }
    let (body, parsed) = harness.scrape_until("all received", all_received).await;
    let got = comparable(&body);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("the golden file");
    if got != golden {
        let diff: Vec<String> = diff_lines(&golden, &got);
        panic!("the scrape differs from {GOLDEN}:\n{}", diff.join("\n"));
    }

    // The names the issue names, from the envelopes that carry them.
    let vm = [
        ("bosh_deployment", "cf"),
        ("bosh_job_name", "diego-cell"),
        ("environment", "prod"),
        ("origin", "rep"),
        ("unit", "MiB"),
    ];
    assert_eq!(
        parsed.value("firehose_value_metric_rep_capacity_remaining_memory", &vm),
        Some(2048.0)
    );
    assert_eq!(
        parsed.value("firehose_counter_event_gorouter_total_requests_total", &[]),
        Some(115.0)
    );
    assert_eq!(
        parsed.value("firehose_counter_event_gorouter_total_requests_delta", &[]),
        Some(5.0)
    );
    let container = [("application_id", APP), ("instance_index", "1")];
    assert_eq!(
        parsed.value("firehose_container_metric_cpu_percentage", &container),
        Some(50.0)
    );
    let bucket = [
        ("le", "0.005"),
        ("bosh_deployment", "cf"),
        ("app_name", "web"),
    ];
    assert_eq!(
        parsed.value("firehose_http_duration_seconds_bucket", &bucket),
        Some(2.0)
    );
    assert_eq!(
        parsed.value("firehose_http_total", &[("status_code", "502")]),
        Some(1.0)
    );
    assert_eq!(
        parsed.value("firehose_value_metric_bbs_lr_ps_missing", &[]),
        Some(2.0)
    );
    assert_eq!(
        parsed.value(
            "firehose_counter_event_doppler_server_listeners_total_received_message_count_total",
            &[]
        ),
        Some(9.0)
    );
    // The Go self metrics count what was sent, by kind.
    for (name, value) in [
        ("firehose_total_value_metrics_received", 4.0),
        ("firehose_total_counter_events_received", 3.0),
        ("firehose_total_container_metrics_received", 2.0),
        ("firehose_total_http_start_stop_received", 5.0),
        ("firehose_total_metrics_received", 14.0),
        ("firehose_value_metrics_cached", 3.0),
        ("firehose_counter_events_cached", 2.0),
        ("firehose_container_metrics_cached", 2.0),
        ("firehose_http_start_stop_cached", 2.0),
        ("firehose_slow_consumer_alert", 0.0),
    ] {
        assert_eq!(
            parsed.value(name, &[("environment", "prod")]),
            Some(value),
            "{name}"
        );
    }
    // No native name leaks through.
    for s in &parsed.samples {
        assert!(
            s.name.starts_with("firehose_") || s.name.starts_with("cf_firehose_exporter_"),
            "{}",
            s.name
        );
    }
}

/// The lines only in one of the two, marked `-` (expected) and `+` (got).
fn diff_lines(expected: &str, got: &str) -> Vec<String> {
    let (e, g): (BTreeSet<&str>, BTreeSet<&str>) =
        (expected.lines().collect(), got.lines().collect());
    let mut out: Vec<String> = e.difference(&g).map(|l| format!("- {l}")).collect();
    out.extend(g.difference(&e).map(|l| format!("+ {l}")));
    if out.is_empty() {
        out.push("(the same lines in another order)".into());
    }
    out
}

#[tokio::test]
async fn the_rlp_gives_the_same_compat_series_as_the_firehose() {
    let harness = Harness::start_with(Default::default(), Default::default(), compat).await;
    for e in sent() {
        harness.send(&e).await;
    }
    let (_, firehose) = harness.scrape_until("all received", all_received).await;

    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let exporter = common::rlp_exporter_sent(&foundation, compat, &sent()).await;
    let rlp = common::eventually("everything counted", || async {
        let body = common::scrape(&exporter).await;
        let parsed = common::exposition::parse(&body).unwrap();
        let done = parsed.value("firehose_log_messages_total", &[]) == Some(3.0)
            && parsed.value("firehose_http_duration_seconds_count", &[]) == Some(5.0);
        done.then_some(parsed)
    })
    .await;
    let n = rlp.assert_same_as(&firehose, |s| {
        [
            "value_metric_",
            "counter_event_",
            "container_metric_",
            "http_",
            "log_",
        ]
        .iter()
        .any(|kind| s.name.starts_with(&format!("firehose_{kind}")))
    });
    assert!(n > 40, "{n}");
}
