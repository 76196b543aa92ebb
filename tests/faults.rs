//! Every fault the simulated foundation can inject, over loopback: the
//! exporter recovers to streaming without a restart, the self metric that
//! tells an operator what happened moves, and the series that kept arriving
//! are intact afterwards.

mod common;

use std::time::Duration;

use cf_firehose_exporter::app::ExporterConfig;
use cf_firehose_exporter::envelope::{CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::sim::SimClient;
use cf_firehose_exporter::sim::faults::Fault;
use cf_firehose_exporter::sim::traffic_controller::TcSettings;
use common::{Exposition, Harness, eventually};

/// Quick timeouts so that every fault is met and left within a second.
fn quick(mut config: ExporterConfig) -> ExporterConfig {
    config.source.idle_timeout = Some(Duration::from_secs(1));
    if let Some(uaa) = &mut config.source.uaa {
        uaa.timeout = Duration::from_millis(300);
    }
    config.source.max_frame_size = 1 << 20;
    config.source.min_retry_delay = Duration::from_millis(20);
    config.source.max_retry_delay = Duration::from_millis(200);
    config
}

/// Pings often enough that a live connection is never idle for a second.
fn chatty() -> TcSettings {
    TcSettings {
        ping_interval: Duration::from_millis(50),
        pong_timeout: Duration::from_secs(5),
    }
}

fn progress(total: u64) -> Envelope {
    Envelope {
        origin: "gorouter".into(),
        event_type: 7,
        counter_event: Some(CounterEvent {
            name: "total_requests".into(),
            delta: 1,
            total: Some(total),
        }),
        ..Default::default()
    }
}

fn steady() -> Envelope {
    Envelope {
        origin: "rep".into(),
        event_type: 6,
        value_metric: Some(ValueMetric {
            name: "CapacityTotalMemory".into(),
            value: 16384.0,
            unit: "MiB".into(),
        }),
        job: Some("diego-cell".into()),
        ..Default::default()
    }
}

fn metric(p: &Exposition, name: &str, label: Option<(&str, &str)>) -> f64 {
    let labels: Vec<(&str, &str)> = label.into_iter().collect();
    p.value(name, &labels).unwrap_or(0.0)
}

const RECONNECTS: &str = "cf_firehose_exporter_reconnects_total";
const CONNECT_ERRORS: &str = "cf_firehose_exporter_connect_errors_total";
const TOKENS: &str = "cf_firehose_exporter_token_requests_total";
const DROPPED: &str = "cf_firehose_exporter_envelopes_dropped_total";
const ALERTS: &str = "cf_firehose_exporter_slow_consumer_alerts_total";

/// What a fault should leave behind.
struct Expect {
    /// The self metric that must have moved, as a test.
    moved: fn(&Exposition) -> bool,
    /// Whether the fault costs the connection.
    reconnects: bool,
    /// Whether it lasts until healed (and `up` is 0 meanwhile).
    lasting: bool,
}

async fn recovers_from(fault: Fault, expect: Expect) {
    let h = Harness::start_with(SimClient::default(), chatty(), quick).await;
    let tc = &h.foundation.traffic_controller;
    h.send(&steady()).await;
    h.send(&progress(10)).await;
    h.scrape_until("the first total", |p| {
        p.value("total_requests_total", &[]) == Some(10.0)
    })
    .await;

    h.foundation.inject(fault).await;
    if expect.lasting {
        // While the fault lasts: not up, not ready, the last data still served.
        let (_, parsed) = h
            .scrape_until(&format!("{fault} to show"), |p| {
                (expect.moved)(p) && p.value("cf_firehose_exporter_up", &[]) == Some(0.0)
            })
            .await;
        assert_eq!(
            parsed.value("CapacityTotalMemory", &[("unit", "MiB")]),
            Some(16384.0)
        );
        assert_eq!(parsed.value("total_requests_total", &[]), Some(10.0));
        assert_eq!(h.get("/-/ready").await.status(), 503);
        assert_eq!(h.get("/-/healthy").await.status(), 200);
        h.foundation.heal();
    }
    if expect.reconnects {
        eventually("the reconnection", || async {
            (tc.accepted() >= 2 && tc.connections() == 1).then_some(())
        })
        .await;
    }

    h.send(&progress(20)).await;
    let (body, parsed) = h
        .scrape_until("the total sent after the fault", |p| {
            p.value("total_requests_total", &[]) == Some(20.0)
        })
        .await;
    assert!(
        (expect.moved)(&parsed),
        "{fault}: the self metric did not move\n{body}"
    );
    assert_eq!(
        parsed.value("CapacityTotalMemory", &[("unit", "MiB")]),
        Some(16384.0),
        "{fault}: a series from before is intact"
    );
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
    assert_eq!(h.get("/-/ready").await.status(), 200);
    if !expect.reconnects {
        assert_eq!(tc.accepted(), 1, "{fault} must not cost the connection");
    }
}

#[tokio::test]
async fn close_1000() {
    recovers_from(
        Fault::CloseNormal,
        Expect {
            moved: |p| metric(p, RECONNECTS, Some(("reason", "close_normal"))) == 1.0,
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn close_1008_is_a_slow_consumer_alert() {
    recovers_from(
        Fault::ClosePolicy,
        Expect {
            moved: |p| {
                metric(p, RECONNECTS, Some(("reason", "close_policy_violation"))) == 1.0
                    && metric(p, ALERTS, None) == 1.0
            },
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn tcp_reset_without_close_frame() {
    recovers_from(
        Fault::Reset,
        Expect {
            moved: |p| metric(p, RECONNECTS, Some(("reason", "error"))) == 1.0,
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn silent_hang_is_cut_by_the_idle_timeout() {
    recovers_from(
        Fault::Hang,
        Expect {
            moved: |p| metric(p, RECONNECTS, Some(("reason", "idle_timeout"))) == 1.0,
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn a_401_until_a_new_token_is_used() {
    recovers_from(
        Fault::RevokeTokens,
        Expect {
            moved: |p| {
                metric(p, CONNECT_ERRORS, Some(("reason", "unauthorized"))) == 1.0
                    && metric(p, TOKENS, Some(("result", "success"))) == 2.0
            },
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn a_503_before_the_upgrade() {
    recovers_from(
        Fault::Unavailable,
        Expect {
            moved: |p| metric(p, CONNECT_ERRORS, Some(("reason", "rejected"))) >= 1.0,
            reconnects: true,
            lasting: true,
        },
    )
    .await;
}

#[tokio::test]
async fn uaa_down() {
    recovers_from(
        Fault::UaaDown,
        Expect {
            moved: |p| {
                metric(p, CONNECT_ERRORS, Some(("reason", "uaa_error"))) >= 1.0
                    && metric(p, TOKENS, Some(("result", "error"))) >= 1.0
            },
            reconnects: true,
            lasting: true,
        },
    )
    .await;
}

#[tokio::test]
async fn uaa_answering_500() {
    recovers_from(
        Fault::UaaError,
        Expect {
            moved: |p| metric(p, TOKENS, Some(("result", "error"))) >= 1.0,
            reconnects: true,
            lasting: true,
        },
    )
    .await;
}

#[tokio::test]
async fn uaa_bad_credentials_is_a_credentials_problem() {
    recovers_from(
        Fault::UaaBadCredentials,
        Expect {
            moved: |p| {
                metric(p, TOKENS, Some(("result", "credentials"))) >= 1.0
                    && metric(p, CONNECT_ERRORS, Some(("reason", "uaa_credentials"))) >= 1.0
                    && metric(p, TOKENS, Some(("result", "error"))) == 0.0
            },
            reconnects: true,
            lasting: true,
        },
    )
    .await;
}

#[tokio::test]
async fn uaa_slower_than_the_timeout() {
    recovers_from(
        Fault::UaaSlow(Duration::from_secs(2)),
        Expect {
            moved: |p| metric(p, TOKENS, Some(("result", "error"))) >= 1.0,
            reconnects: true,
            lasting: true,
        },
    )
    .await;
}

#[tokio::test]
async fn frames_that_are_not_envelopes() {
    recovers_from(
        Fault::Garbage,
        Expect {
            moved: |p| {
                metric(p, "cf_firehose_exporter_decode_errors_total", None) == 3.0
                    && metric(p, DROPPED, Some(("reason", "unknown_event_type"))) == 1.0
                    && metric(p, DROPPED, Some(("reason", "missing_field"))) == 1.0
            },
            reconnects: false,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn an_oversized_frame_is_counted_and_the_connection_reset() {
    recovers_from(
        Fault::Oversized,
        Expect {
            moved: |p| {
                metric(p, DROPPED, Some(("reason", "frame_too_large"))) == 1.0
                    && metric(p, RECONNECTS, Some(("reason", "frame_too_large"))) == 1.0
            },
            reconnects: true,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn the_legacy_dropped_messages_counter_is_a_slow_consumer_alert() {
    recovers_from(
        Fault::DroppedMessages,
        Expect {
            moved: |p| {
                metric(p, ALERTS, None) == 1.0
                    && !p
                        .find("TruncatingBuffer_DroppedMessages_total", &[])
                        .is_empty()
            },
            reconnects: false,
            lasting: false,
        },
    )
    .await;
}

#[tokio::test]
async fn repeated_normal_closes_are_a_slow_consumer_alert() {
    let h = Harness::start_with(SimClient::default(), chatty(), quick).await;
    let tc = &h.foundation.traffic_controller;
    for n in 1..=3u64 {
        h.foundation.inject(Fault::CloseNormal).await;
        eventually("the reconnection", || async {
            (tc.accepted() == n + 1 && tc.connections() == 1).then_some(())
        })
        .await;
    }
    h.send(&progress(1)).await;
    let (_, parsed) = h
        .scrape_until("the counter", |p| {
            p.value("total_requests_total", &[]) == Some(1.0)
        })
        .await;
    assert_eq!(metric(&parsed, ALERTS, None), 1.0);
    assert_eq!(
        metric(&parsed, RECONNECTS, Some(("reason", "close_normal"))),
        3.0
    );
}

#[tokio::test]
async fn a_token_expiring_mid_stream_is_renewed_before_the_next_handshake() {
    let client = SimClient {
        token_lifetime: Duration::from_secs(1),
        ..SimClient::default()
    };
    let h = Harness::start_with(client, chatty(), quick).await;
    let tc = &h.foundation.traffic_controller;
    // The stream outlives its token: the Traffic Controller checks only at the handshake.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.send(&progress(5)).await;
    h.scrape_until("a total after expiry", |p| {
        p.value("total_requests_total", &[]) == Some(5.0)
    })
    .await;
    assert_eq!(tc.accepted(), 1);
    h.foundation.inject(Fault::CloseNormal).await;
    eventually("the reconnection", || async {
        (tc.accepted() == 2 && tc.connections() == 1).then_some(())
    })
    .await;
    h.send(&progress(6)).await;
    let (_, parsed) = h
        .scrape_until("a total after the reconnection", |p| {
            p.value("total_requests_total", &[]) == Some(6.0)
        })
        .await;
    assert_eq!(
        tc.refused(),
        0,
        "the expired token was replaced before it was refused"
    );
    assert_eq!(metric(&parsed, TOKENS, Some(("result", "success"))), 2.0);
}
