//! Staying up under sustained trouble, over loopback: a silent hang caught
//! in time (paused clock), fifty faults in a row while counting, ten thousand
//! random frames, a flood of new series against the cap, and a source that
//! gives up when told to.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::app::{Exporter, ExporterConfig, RunError};
use cf_firehose_exporter::envelope::{self, CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::sim::faults::Fault;
use cf_firehose_exporter::sim::traffic_controller::TcSettings;
use cf_firehose_exporter::sim::uaa::UaaMode;
use cf_firehose_exporter::sim::{Foundation, SimClient};
use cf_firehose_exporter::source::supervisor::SourceError;
use common::{CONTAINER_METRIC, COUNTER_EVENT, Harness, VALUE_METRIC, eventually, hex};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

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

fn sum_of(parsed: &common::Exposition, name: &str) -> f64 {
    parsed.find(name, &[]).iter().map(|s| s.value).sum()
}

#[tokio::test(start_paused = true)]
async fn a_silent_hang_is_detected_within_the_idle_timeout_and_one_backoff_step() {
    // The defaults: idle timeout 60 s, first retry after at most 500 ms.
    let h = Harness::start_with(SimClient::default(), TcSettings::default(), |mut c| {
        c.source.idle_timeout = Some(Duration::from_secs(60));
        c.source.min_retry_delay = Duration::from_millis(500);
        c.source.max_retry_delay = Duration::from_secs(60);
        c
    })
    .await;
    let tc = &h.foundation.traffic_controller;
    h.send(&counter("before_hang", 1)).await;
    h.scrape_until("the counter", |p| {
        p.value("before_hang_total", &[]) == Some(1.0)
    })
    .await;

    let hung_at = Instant::now();
    h.foundation.inject(Fault::Hang).await;
    let step = Duration::from_millis(50);
    while !(tc.accepted() == 2 && tc.connections() == 1) {
        assert!(
            hung_at.elapsed() < Duration::from_secs(600),
            "never reconnected"
        );
        tokio::time::sleep(step).await;
    }
    let detected = hung_at.elapsed();
    assert!(
        detected >= Duration::from_secs(59) && detected <= Duration::from_millis(60_500) + step,
        "reconnected after {detected:?}"
    );
    h.send(&counter("before_hang", 2)).await;
    let (_, parsed) = h
        .scrape_until("the counter after", |p| {
            p.value("before_hang_total", &[]) == Some(2.0)
        })
        .await;
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_reconnects_total",
            &[("reason", "idle_timeout")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn soak_fifty_faults_while_counting() {
    const FAULTS: u64 = 50;
    const COUNTERS: usize = 16;
    let h = Harness::start_with(
        SimClient::default(),
        TcSettings {
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_secs(5),
        },
        |mut c| {
            c.source.min_retry_delay = Duration::from_millis(5);
            c.source.max_retry_delay = Duration::from_millis(50);
            c.source.idle_timeout = Some(Duration::from_secs(5));
            c
        },
    )
    .await;
    let tc = &h.foundation.traffic_controller;
    let mut totals = [0u64; COUNTERS];
    let mut sent = 0u64;
    let mut round = |totals: &mut [u64; COUNTERS], frames: u64| {
        let mut batch = Vec::new();
        for i in 0..frames {
            let c = (i as usize * 7 + sent as usize) % COUNTERS;
            totals[c] += 1 + i % 5;
            batch.push(counter(&format!("soak_{c}"), totals[c]));
        }
        sent += frames;
        batch
    };
    for fault in 0..FAULTS {
        // A few hundred frames, then a close or a reset.
        for envelope in round(&mut totals, 200 + (fault * 37) % 200) {
            h.send(&envelope).await;
        }
        let kind = if fault % 2 == 0 {
            Fault::CloseNormal
        } else {
            Fault::Reset
        };
        h.foundation.inject(kind).await;
        eventually("the reconnection", || async {
            (tc.accepted() == fault + 2 && tc.connections() == 1).then_some(())
        })
        .await;
    }
    for envelope in round(&mut totals, COUNTERS as u64 * 3) {
        h.send(&envelope).await;
    }
    let expected: BTreeMap<String, f64> = totals
        .iter()
        .enumerate()
        .map(|(c, t)| (format!("soak_{c}_total"), *t as f64))
        .collect();
    let (_, parsed) = h
        .scrape_until("every counter at its last total", |p| {
            expected
                .iter()
                .all(|(name, total)| p.value(name, &[]) == Some(*total))
        })
        .await;
    assert_eq!(
        sum_of(&parsed, "cf_firehose_exporter_reconnects_total"),
        FAULTS as f64,
        "one reconnection per fault, no more"
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_reconnects_total",
            &[("reason", "close_normal")]
        ),
        Some((FAULTS / 2) as f64)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_dropped_total",
            &[("reason", "queue_full")]
        ),
        Some(0.0),
        "nothing dropped for lack of room"
    );
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
}

/// Random bytes, or a protocol vector with a few bytes flipped, inserted,
/// removed or cut off.
fn random_frame(rng: &mut StdRng, vectors: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_bool(0.3) {
        let len = rng.random_range(0..300);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut frame = vectors[rng.random_range(0..vectors.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..frame.len().max(1));
        match rng.random_range(0..4) {
            0 if !frame.is_empty() => frame[at] ^= 1 << rng.random_range(0..8),
            1 => frame.insert(at.min(frame.len()), rng.random()),
            2 if !frame.is_empty() => {
                frame.remove(at);
            }
            _ => frame.truncate(at),
        }
    }
    frame
}

#[tokio::test]
async fn ten_thousand_random_frames_are_counted_and_the_good_ones_around_them_applied() {
    let h = Harness::start().await;
    let vectors: Vec<Vec<u8>> = [VALUE_METRIC, CONTAINER_METRIC, COUNTER_EVENT]
        .iter()
        .map(|v| hex(v).to_vec())
        .collect();
    let mut rng = StdRng::seed_from_u64(20261126);
    let mut rejected: BTreeMap<&str, f64> = BTreeMap::new();
    let mut good = Vec::new();
    for i in 0..10_000u64 {
        if i % 10 == 0 {
            let name = format!("good_{i}");
            h.send(&counter(&name, i + 1)).await;
            good.push((format!("{name}_total"), (i + 1) as f64));
            continue;
        }
        let frame = random_frame(&mut rng, &vectors);
        if let Err(e) = envelope::decode(&frame) {
            *rejected.entry(e.reason()).or_default() += 1.0;
        }
        h.send_frame(Bytes::from(frame)).await;
    }
    h.send(&counter("last_good", 1)).await;
    let (_, parsed) = h
        .scrape_until("the last good frame", |p| {
            p.value("last_good_total", &[]) == Some(1.0)
        })
        .await;
    for (name, total) in &good {
        assert_eq!(parsed.value(name, &[]), Some(*total), "{name}");
    }
    assert!(rejected.values().sum::<f64>() > 5_000.0, "{rejected:?}");
    assert_eq!(
        parsed.value("cf_firehose_exporter_decode_errors_total", &[]),
        rejected.get("malformed").copied(),
    );
    for reason in ["unknown_event_type", "missing_field"] {
        assert_eq!(
            parsed.value(
                "cf_firehose_exporter_envelopes_dropped_total",
                &[("reason", reason)]
            ),
            Some(rejected.get(reason).copied().unwrap_or(0.0)),
            "{reason}"
        );
    }
    assert_eq!(
        h.foundation.traffic_controller.accepted(),
        1,
        "bad frames never cost the connection"
    );
}

#[tokio::test]
async fn a_flood_of_new_series_stops_at_the_cap_and_existing_ones_keep_updating() {
    const CAP: usize = 1_000;
    const FLOOD: usize = 3_000;
    let h = Harness::start_with(SimClient::default(), TcSettings::default(), |mut c| {
        c.max_series = CAP;
        c
    })
    .await;
    let gauge = |instance: usize, value: f64| Envelope {
        origin: "app".into(),
        event_type: 6,
        value_metric: Some(ValueMetric {
            name: "requests_in_flight".into(),
            value,
            unit: String::new(),
        }),
        tags: [("instance".to_string(), format!("i-{instance}"))].into(),
        ..Default::default()
    };
    for i in 0..FLOOD {
        h.send(&gauge(i, 1.0)).await;
    }
    // An existing series still takes new values at the cap.
    h.send(&gauge(7, 42.0)).await;
    let (_, parsed) = h
        .scrape_until("the update of an existing series", |p| {
            p.value("requests_in_flight", &[("instance", "i-7")]) == Some(42.0)
        })
        .await;
    assert_eq!(parsed.find("requests_in_flight", &[]).len(), CAP);
    assert_eq!(
        parsed.value("cf_firehose_exporter_series", &[]),
        Some(CAP as f64)
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_series_rejected_total",
            &[("reason", "cap")]
        ),
        Some((FLOOD - CAP) as f64)
    );
    assert_eq!(h.exporter.store.len(), CAP);
    assert_eq!(
        h.exporter.store.families(),
        1,
        "one family, however many values"
    );
}

#[tokio::test]
async fn the_source_gives_up_after_max_retry_count_and_stops_the_exporter() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let foundation = Foundation::start(any, any, SimClient::default(), TcSettings::default())
        .await
        .unwrap();
    foundation.uaa.set_mode(UaaMode::Down);
    let mut config: ExporterConfig = common::config_for(&foundation, Duration::from_secs(600));
    config.source.max_retry_count = Some(3);
    config.source.min_retry_delay = Duration::from_millis(5);
    let exporter = Exporter::start(config).await.unwrap();
    let result = tokio::time::timeout(common::PATIENCE, exporter.wait())
        .await
        .expect("the exporter stops by itself");
    match result {
        Err(RunError::Source(SourceError::RetriesExhausted {
            attempts,
            last_error,
        })) => {
            assert_eq!(attempts, 3);
            assert!(last_error.starts_with("UAA unreachable"), "{last_error}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    assert_eq!(foundation.uaa.requests(), 3);
}

#[tokio::test]
async fn on_stop_the_websocket_is_closed_with_1000() {
    let h = Harness::start().await;
    h.send(&counter("x", 1)).await;
    h.scrape_until("the counter", |p| p.value("x_total", &[]) == Some(1.0))
        .await;
    let tc_closes = {
        let Harness {
            foundation,
            exporter,
            ..
        } = h;
        let started = Instant::now();
        exporter.stop().await.expect("a clean stop");
        assert!(started.elapsed() < Duration::from_secs(5));
        eventually("the close frame", || async {
            (!foundation.traffic_controller.client_closes().is_empty()).then_some(())
        })
        .await;
        foundation.traffic_controller.client_closes()
    };
    assert_eq!(tc_closes, vec![1000]);
}

#[tokio::test]
async fn several_connections_share_the_subscription_and_every_envelope_is_applied() {
    let h = Harness::start_with(SimClient::default(), TcSettings::default(), |mut c| {
        c.source.connections = 3;
        c
    })
    .await;
    let tc = &h.foundation.traffic_controller;
    assert!(tc.wait_for_connections(3, common::PATIENCE).await);
    // The server gives each envelope to one connection chosen at random.
    for i in 0..300u64 {
        h.send(&counter(&format!("spread_{i}"), i + 1)).await;
    }
    let (_, parsed) = h
        .scrape_until("all 300 counters", |p| {
            (0..300u64).all(|i| p.value(&format!("spread_{i}_total"), &[]) == Some((i + 1) as f64))
        })
        .await;
    assert_eq!(
        parsed.value("cf_firehose_exporter_connections", &[]),
        Some(3.0)
    );
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
    // Every connection cut: all three come back.
    let before = tc.accepted();
    tc.drop_all();
    eventually("three connections again", || async {
        (tc.accepted() == before + 3 && tc.connections() == 3).then_some(())
    })
    .await;
    assert_eq!(h.get("/-/ready").await.status(), 200);
}

#[tokio::test]
async fn a_server_that_drops_every_connection_at_once_gets_backoff_and_the_retry_cap() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let foundation = Foundation::start(any, any, SimClient::default(), TcSettings::default())
        .await
        .unwrap();
    foundation.traffic_controller.set_drop_on_accept(true);
    let mut config: ExporterConfig = common::config_for(&foundation, Duration::from_secs(600));
    config.source.min_retry_delay = Duration::from_millis(100);
    config.source.max_retry_delay = Duration::from_secs(10);
    config.source.max_retry_count = Some(4);
    let exporter = Exporter::start(config).await.unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(common::PATIENCE, exporter.wait())
        .await
        .expect("the retry cap fires");
    match result {
        Err(RunError::Source(SourceError::RetriesExhausted {
            attempts,
            last_error,
        })) => {
            assert_eq!(attempts, 4);
            assert!(last_error.starts_with("connection lost"), "{last_error}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    // Four handshakes, with backoff between: at least 50 + 100 + 200 ms
    // (each delay drawn between half and all of 100, 200, 400 ms).
    assert_eq!(foundation.traffic_controller.accepted(), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn text_frames_are_counted_as_decode_errors_and_skipped() {
    let h = Harness::start().await;
    for _ in 0..5 {
        assert_eq!(
            h.foundation
                .traffic_controller
                .publish_text("not an envelope")
                .await,
            1
        );
    }
    h.send(&counter("after_text", 7)).await;
    let (_, parsed) = h
        .scrape_until("the counter after the text frames", |p| {
            p.value("after_text_total", &[("origin", "gorouter")])
                .is_some()
        })
        .await;
    assert_eq!(
        parsed.value("cf_firehose_exporter_decode_errors_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        h.exporter.telemetry.connections.get(),
        1,
        "the connection stays"
    );
}
