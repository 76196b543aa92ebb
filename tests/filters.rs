//! The `--filter.*` and `--metrics.drop-tags` flags over loopback: what they
//! exclude never reaches the store, what they keep does, and the
//! subscription asks the server for no more than they need.

mod common;

use cf_firehose_exporter::app::ExporterConfig;
use cf_firehose_exporter::cli::{CommonArgs, ExporterCli as Cli};
use cf_firehose_exporter::envelope::events::{LogMessage, envelope::EventType};
use cf_firehose_exporter::envelope::{ContainerMetric, CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::ingest::filter::Filters;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use clap::Parser;
use common::Harness;
use prost::Message;

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn gauge(origin: &str, deployment: &str, name: &str) -> Envelope {
    Envelope {
        origin: origin.into(),
        event_type: EventType::ValueMetric as i32,
        value_metric: Some(ValueMetric {
            name: name.into(),
            value: 1.0,
            unit: "MiB".into(),
        }),
        deployment: (!deployment.is_empty()).then(|| deployment.into()),
        ..Default::default()
    }
}

fn counter(origin: &str, name: &str) -> Envelope {
    Envelope {
        origin: origin.into(),
        event_type: EventType::CounterEvent as i32,
        counter_event: Some(CounterEvent {
            name: name.into(),
            delta: 1,
            total: Some(7),
        }),
        ..Default::default()
    }
}

fn container() -> Envelope {
    Envelope {
        origin: "rep".into(),
        event_type: EventType::ContainerMetric as i32,
        container_metric: Some(ContainerMetric {
            application_id: "f47ac10b-58cc-4372-a567-0e02b2c3d479".into(),
            instance_index: 0,
            cpu_percentage: 1.0,
            memory_bytes: 1,
            disk_bytes: 1,
            memory_bytes_quota: None,
            disk_bytes_quota: None,
        }),
        tags: [
            ("app_name".to_string(), "shop".to_string()),
            ("process_instance_id".to_string(), "6d5f1e0a".to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

/// Starts an exporter whose flags are `args`, and sends it `envelopes`
/// followed by a sentinel the filters let through; returns the family names
/// in the store (the sentinel left out) and the harness.
async fn run(args: &[&str], envelopes: &[Envelope]) -> (Vec<String>, Harness) {
    let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
    let common: CommonArgs = cli.common;
    let h = Harness::start_with(Default::default(), Default::default(), |c| {
        let mut source = c.source.clone();
        source.set_filter_type(Some("metrics"));
        let built = ExporterConfig::new(source, &common).expect("valid filters");
        ExporterConfig {
            filters: built.filters,
            drop_tags: built.drop_tags,
            http_buckets: built.http_buckets,
            source: built.source,
            ..c
        }
    })
    .await;
    for e in envelopes {
        h.send(e).await;
    }
    h.send(&gauge("rep", "cf", "sentinel")).await;
    h.scrape_until("the sentinel", |p| !p.find("sentinel", &[]).is_empty())
        .await;
    let names = h
        .exporter
        .store
        .snapshot()
        .iter()
        .map(|f| f.name.to_string())
        .filter(|n| n != "sentinel")
        .collect();
    (names, h)
}

fn filtered(h: &Harness) -> u64 {
    h.exporter.telemetry.envelopes_filtered.get()
}

#[tokio::test]
async fn events_keep_only_the_listed_types() {
    let (names, h) = run(
        &["--filter.events", "ValueMetric"],
        &[
            gauge("rep", "cf", "kept"),
            counter("gorouter", "gone"),
            container(),
        ],
    )
    .await;
    assert_eq!(names, strings(&["kept"]));
    assert_eq!(filtered(&h), 2);
}

#[tokio::test]
async fn deployments_keep_only_the_listed_ones() {
    let (names, h) = run(
        &["--filter.deployments", "cf,cf-mysql"],
        &[
            gauge("rep", "cf", "from_cf"),
            gauge("mysql", "cf-mysql", "from_mysql"),
            gauge("redis", "cf-redis", "from_redis"),
            gauge("app", "", "from_nowhere"),
        ],
    )
    .await;
    assert_eq!(names, strings(&["from_cf", "from_mysql"]));
    assert_eq!(filtered(&h), 2);
}

#[tokio::test]
async fn origins_keep_only_the_listed_ones() {
    let (names, h) = run(
        &["--filter.origins", "rep,bbs"],
        &[
            gauge("bbs", "cf", "from_bbs"),
            gauge("gorouter", "cf", "from_gorouter"),
            counter("uaa", "from_uaa"),
        ],
    )
    .await;
    assert_eq!(names, strings(&["from_bbs"]));
    assert_eq!(filtered(&h), 2);
}

#[tokio::test]
async fn metric_names_keep_matches_and_drop_exclusions() {
    let (names, h) = run(
        &[
            "--filter.metric-names",
            "Capacity.*|requests_total|sentinel",
            "--filter.metric-names-exclude",
            ".*Disk",
        ],
        &[
            gauge("rep", "cf", "CapacityRemainingMemory"),
            gauge("rep", "cf", "CapacityRemainingDisk"),
            gauge("rep", "cf", "ContainerCount"),
            counter("gorouter", "requests"),
            counter("gorouter", "responses"),
        ],
    )
    .await;
    assert_eq!(names, strings(&["CapacityRemainingMemory", "requests"]));
    assert_eq!(filtered(&h), 3);
}

#[tokio::test]
async fn dropped_tags_never_become_labels() {
    let (_, h) = run(
        &["--metrics.drop-tags", "process_instance_id"],
        &[container()],
    )
    .await;
    let (_, parsed) = h.scrape().await;
    let cpu = parsed.find("cpu", &[("app_name", "shop")]);
    assert_eq!(cpu.len(), 1);
    assert!(!cpu[0].labels.contains_key("process_instance_id"));
    assert_eq!(filtered(&h), 0);
}

#[tokio::test]
async fn asking_for_log_messages_subscribes_to_them() {
    let cli = Cli::try_parse_from([
        "x",
        "--uaa.url=http://uaa",
        "--uaa.client-id=c",
        "--uaa.client-secret=s",
        "--doppler.url=ws://tc",
    ])
    .unwrap();
    let source = cli.source.resolve().unwrap();
    let query = |events: &[&str]| {
        let common = CommonArgs {
            filter_events: strings(events),
            ..CommonArgs::default()
        };
        let config = ExporterConfig::new(source.clone(), &common).unwrap();
        config
            .source
            .endpoint
            .url()
            .and_then(|u| u.query())
            .map(str::to_owned)
    };
    assert_eq!(query(&[]).as_deref(), Some("filter-type=metrics"));
    assert_eq!(
        query(&["ValueMetric"]).as_deref(),
        Some("filter-type=metrics")
    );
    assert_eq!(query(&["LogMessage"]).as_deref(), Some("filter-type=logs"));
    assert_eq!(query(&["LogMessage", "ContainerMetric"]), None);
    let bad = CommonArgs {
        filter_events: strings(&["Heartbeat"]),
        ..CommonArgs::default()
    };
    let err = ExporterConfig::new(source, &bad).unwrap_err().to_string();
    assert!(err.starts_with("--filter.events: "), "{err}");

    // Over the wire: a logs subscription gets the log message, and only it.
    let h = Harness::start_with(Default::default(), Default::default(), |mut c| {
        c.filters = Filters::new(&strings(&["LogMessage"]), &[], &[], None, None).unwrap();
        c.source.set_filter_type(c.filters.subscription());
        c
    })
    .await;
    let tc = &h.foundation.traffic_controller;
    let log = Envelope {
        origin: "rep".into(),
        event_type: EventType::LogMessage as i32,
        log_message: Some(LogMessage {
            message: b"hello".to_vec(),
            message_type: 1,
            timestamp: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let metric = gauge("rep", "cf", "not_for_a_logs_subscription");
    assert_eq!(
        tc.publish(metric.encode_to_vec().into(), FrameKind::Metric)
            .await,
        0
    );
    assert_eq!(
        tc.publish(log.encode_to_vec().into(), FrameKind::Log).await,
        1
    );
    h.scrape_until("the log message", |p| {
        p.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "LogMessage")],
        ) == Some(1.0)
    })
    .await;
}
