//! The v1 pipeline end to end over loopback: simulated UAA and Traffic
//! Controller → websocket → decoding → naming → store → /metrics.

mod common;

use std::collections::BTreeMap;

use cf_firehose_exporter::envelope::{CounterEvent, Envelope, ValueMetric};
use common::{CONTAINER_METRIC, COUNTER_EVENT, Harness, VALUE_METRIC, eventually, hex};

const APP_GUID: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(origin: &str, name: &str, value: f64, tags: &[(&str, &str)]) -> Envelope {
    Envelope {
        origin: origin.into(),
        event_type: 6,
        value_metric: Some(ValueMetric {
            name: name.into(),
            value,
            unit: "count".into(),
        }),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn counter(name: &str, total: u64) -> Envelope {
    Envelope {
        origin: "gorouter".into(),
        event_type: 7,
        counter_event: Some(CounterEvent {
            name: name.into(),
            delta: 1,
            total: Some(total),
        }),
        ..Default::default()
    }
}

/// Relayed samples only: the exporter's own metrics left out.
fn relayed(parsed: &common::Exposition) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut samples: Vec<_> = parsed
        .samples
        .iter()
        .filter(|s| !s.name.starts_with("cf_firehose_exporter_"))
        .map(|s| (s.name.clone(), s.labels.clone(), s.value))
        .collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    samples
}

#[tokio::test]
async fn protocol_vectors_give_exactly_the_expected_series() {
    let h = Harness::start().await;
    for vector in [VALUE_METRIC, CONTAINER_METRIC, COUNTER_EVENT] {
        h.send_frame(hex(vector)).await;
    }
    let (body, parsed) = h
        .scrape_until("the three vectors", |p| {
            !p.find("requests_total", &[]).is_empty()
        })
        .await;
    let container = |unit: &str| {
        labels(&[
            ("app_name", "myapp"),
            ("instance_id", "0"),
            ("origin", "rep"),
            ("source_id", APP_GUID),
            ("unit", unit),
        ])
    };
    assert_eq!(
        relayed(&parsed),
        vec![
            ("cpu".into(), container("percentage"), 1.5),
            ("disk".into(), container("bytes"), 209715200.0),
            ("disk_quota".into(), container("bytes"), 1073741824.0),
            ("memory".into(), container("bytes"), 104857600.0),
            ("memory_quota".into(), container("bytes"), 1073741824.0),
            (
                "numCPUS".into(),
                labels(&[
                    ("bosh_deployment", "cf"),
                    ("bosh_job_id", "idx-1"),
                    ("bosh_job_ip", "10.0.0.5"),
                    ("bosh_job_name", "diego-cell"),
                    ("origin", "rep"),
                    ("source_id", "rep"),
                    ("unit", "count"),
                ]),
                4.0
            ),
            (
                "requests_total".into(),
                labels(&[("origin", "gorouter")]),
                1234.0
            ),
        ],
        "{body}"
    );
    assert_eq!(parsed.types["requests_total"], "counter");
    assert_eq!(parsed.types["numCPUS"], "gauge");
    assert_eq!(parsed.types["cpu"], "gauge");
    assert_eq!(parsed.help["numCPUS"], "Cloud Foundry gauge 'numCPUS'");
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "ValueMetric")]
        ),
        Some(1.0)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "ContainerMetric")]
        ),
        Some(1.0)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "CounterEvent")]
        ),
        Some(1.0)
    );
    assert_eq!(parsed.value("cf_firehose_exporter_series", &[]), Some(7.0));
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
    assert_eq!(
        parsed.value("cf_firehose_exporter_connections", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn envelopes_differing_by_one_tag_are_two_series() {
    let h = Harness::start().await;
    h.send(&gauge("bbs", "TasksStarted", 3.0, &[("cell-id", "cell-a")]))
        .await;
    h.send(&gauge("bbs", "TasksStarted", 5.0, &[("cell-id", "cell-b")]))
        .await;
    h.send(&gauge("bbs", "TasksStarted", 4.0, &[("cell-id", "cell-a")]))
        .await;
    h.send(&counter("sentinel", 1)).await;
    let (_, parsed) = h
        .scrape_until("the sentinel", |p| {
            !p.find("sentinel_total", &[]).is_empty()
        })
        .await;
    let series = parsed.find("TasksStarted", &[]);
    assert_eq!(series.len(), 2);
    assert_eq!(
        parsed.value("TasksStarted", &[("cell_id", "cell-a")]),
        Some(4.0)
    );
    assert_eq!(
        parsed.value("TasksStarted", &[("cell_id", "cell-b")]),
        Some(5.0)
    );
}

#[tokio::test]
async fn special_characters_in_tag_values_are_escaped() {
    let h = Harness::start().await;
    let nasty = "say \"hi\"\\back\nslash";
    h.send(&gauge("app", "quotes", 1.0, &[("note", nasty)]))
        .await;
    let (body, parsed) = h
        .scrape_until("the gauge", |p| !p.find("quotes", &[]).is_empty())
        .await;
    assert!(body.contains(r#"note="say \"hi\"\\back\nslash""#), "{body}");
    assert_eq!(parsed.find("quotes", &[])[0].labels["note"], nasty);
}

#[tokio::test]
async fn a_guid_origin_never_reaches_a_metric_name() {
    let h = Harness::start().await;
    let origin = "3f1a2b4c-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
    h.send(&gauge(origin, "jvm.memory.used", 42.0, &[])).await;
    let (body, parsed) = h
        .scrape_until("the gauge", |p| !p.find("jvm_memory_used", &[]).is_empty())
        .await;
    assert_eq!(
        parsed.value("jvm_memory_used", &[("origin", origin)]),
        Some(42.0)
    );
    let compact: String = origin.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    for sample in &parsed.samples {
        assert!(
            !sample.name.contains("3f1a2b4c") && !sample.name.contains(&compact[..8]),
            "{}",
            sample.name
        );
    }
    assert!(!body.lines().any(|l| l.starts_with("firehose_")));
}

#[tokio::test]
async fn a_refused_token_is_renewed_and_the_stream_resumes() {
    let h = Harness::start().await;
    let tc = &h.foundation.traffic_controller;
    assert_eq!(h.foundation.uaa.tokens_issued(), 1);
    // The platform forgets the token, then cuts the stream: the reconnect
    // with the cached token gets 401.
    h.foundation.uaa.revoke_all();
    tc.close_all(1000, "");
    eventually("a second accepted connection", || async {
        (tc.accepted() == 2 && tc.connections() == 1).then_some(())
    })
    .await;
    assert_eq!(tc.refused(), 1, "exactly one handshake refused");
    assert_eq!(h.foundation.uaa.tokens_issued(), 2, "exactly one new token");
    h.send(&counter("after_renewal", 7)).await;
    let (_, parsed) = h
        .scrape_until("the counter", |p| {
            !p.find("after_renewal_total", &[]).is_empty()
        })
        .await;
    assert_eq!(parsed.value("after_renewal_total", &[]), Some(7.0));
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_token_requests_total",
            &[("result", "success")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn after_a_close_or_a_reset_it_reconnects_and_keeps_counting() {
    let h = Harness::start().await;
    let tc = &h.foundation.traffic_controller;
    h.send(&counter("total_requests", 10)).await;
    h.scrape_until("10", |p| p.value("total_requests_total", &[]) == Some(10.0))
        .await;

    tc.close_all(1000, "");
    eventually("reconnect after close", || async {
        (tc.accepted() == 2 && tc.connections() == 1).then_some(())
    })
    .await;
    h.send(&counter("total_requests", 25)).await;
    h.scrape_until("25", |p| p.value("total_requests_total", &[]) == Some(25.0))
        .await;

    tc.drop_all();
    eventually("reconnect after reset", || async {
        (tc.accepted() == 3 && tc.connections() == 1).then_some(())
    })
    .await;
    h.send(&counter("total_requests", 40)).await;
    let (_, parsed) = h
        .scrape_until("40", |p| p.value("total_requests_total", &[]) == Some(40.0))
        .await;
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_reconnects_total",
            &[("reason", "close_normal")]
        ),
        Some(1.0)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_reconnects_total",
            &[("reason", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        h.foundation.uaa.tokens_issued(),
        1,
        "the cached token was reused"
    );
}

#[tokio::test]
async fn malformed_frames_are_counted_and_skipped() {
    let h = Harness::start().await;
    h.send_frame(bytes::Bytes::from_static(&[0xff, 0xff, 0xff]))
        .await;
    h.send(&Envelope {
        origin: "x".into(),
        event_type: 6,
        ..Default::default()
    })
    .await;
    h.send(&counter("after_garbage", 3)).await;
    let (_, parsed) = h
        .scrape_until("the counter", |p| {
            !p.find("after_garbage_total", &[]).is_empty()
        })
        .await;
    assert_eq!(
        parsed.value("cf_firehose_exporter_decode_errors_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_dropped_total",
            &[("reason", "missing_field")]
        ),
        Some(1.0)
    );
    assert_eq!(parsed.value("after_garbage_total", &[]), Some(3.0));
    assert_eq!(
        h.foundation.traffic_controller.accepted(),
        1,
        "bad frames do not cost the connection"
    );
}

#[tokio::test]
async fn the_exporter_answers_pings_and_keeps_its_connection() {
    use cf_firehose_exporter::sim::SimClient;
    use cf_firehose_exporter::sim::traffic_controller::TcSettings;
    use std::time::Duration;
    // Pings every 20 ms, closing with 1008 if one is unanswered for 200 ms.
    let tc = TcSettings {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(200),
    };
    let h = Harness::start_with(SimClient::default(), tc, |c| c).await;
    for total in 1..=40u64 {
        h.send(&counter("pinged", total)).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, parsed) = h
        .scrape_until("the last total", |p| {
            p.value("pinged_total", &[]) == Some(40.0)
        })
        .await;
    assert_eq!(
        h.foundation.traffic_controller.accepted(),
        1,
        "never cut off for missing pings"
    );
    assert!(
        parsed
            .find("cf_firehose_exporter_reconnects_total", &[])
            .is_empty()
    );
}

#[tokio::test]
async fn slow_consumer_signals_raise_the_alert_counter() {
    let h = Harness::start().await;
    let tc = &h.foundation.traffic_controller;
    // The legacy in-band counter from Doppler, relayed as a counter too.
    h.send(&Envelope {
        origin: "doppler".into(),
        event_type: 7,
        counter_event: Some(CounterEvent {
            name: "TruncatingBuffer.DroppedMessages".into(),
            delta: 5,
            total: Some(5),
        }),
        ..Default::default()
    })
    .await;
    h.scrape_until("one alert", |p| {
        p.value("cf_firehose_exporter_slow_consumer_alerts_total", &[]) == Some(1.0)
    })
    .await;
    // A keepalive close.
    tc.close_all(
        1008,
        cf_firehose_exporter::sim::traffic_controller::KEEPALIVE_REASON,
    );
    let (_, parsed) = h
        .scrape_until("two alerts", |p| {
            p.value("cf_firehose_exporter_slow_consumer_alerts_total", &[]) == Some(2.0)
        })
        .await;
    assert_eq!(
        parsed.value(
            "TruncatingBuffer_DroppedMessages_total",
            &[("origin", "doppler")]
        ),
        Some(5.0)
    );
    eventually("the reconnect", || async {
        (tc.accepted() == 2 && tc.connections() == 1).then_some(())
    })
    .await;
    let (_, parsed) = h.scrape().await;
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_reconnects_total",
            &[("reason", "close_policy_violation")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn huge_names_values_and_label_counts_are_refused_and_the_scrape_stays_small() {
    let h = Harness::start().await;
    for i in 0..5 {
        let name = format!("{i}{}", "n".repeat(1 << 20));
        h.send(&gauge("rep", &name, 1.0, &[])).await;
        // The same huge name as a counter: it would be a conflict, were it kept.
        h.send(&counter(&name, 1)).await;
        let value = format!("{i}{}", "v".repeat(100 << 10));
        h.send(&gauge("rep", "big_label", 1.0, &[("tag", value.as_str())]))
            .await;
    }
    let tags: Vec<(String, String)> = (0..100).map(|i| (format!("t{i}"), "x".into())).collect();
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.send(&gauge("rep", "many_labels", 1.0, &tags)).await;
    h.send(&gauge("rep", "after", 2.0, &[])).await;
    let (body, parsed) = h
        .scrape_until("the gauge after the refused ones", |p| {
            p.value("after", &[("origin", "rep")]).is_some()
        })
        .await;
    let rejected = |reason: &str| {
        parsed
            .value(
                "cf_firehose_exporter_series_rejected_total",
                &[("reason", reason)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(rejected("name_too_long"), 10.0);
    assert_eq!(rejected("label_value_too_long"), 5.0);
    assert_eq!(rejected("too_many_labels"), 1.0);
    assert_eq!(rejected("conflict"), 0.0);
    assert!(body.len() < 64 << 10, "{} bytes", body.len());
    assert!(!body.contains("nnnnnnnn") && !body.contains("vvvvvvvv"));
    assert!(
        h.exporter.store.families() <= 3,
        "{}",
        h.exporter.store.families()
    );
}
