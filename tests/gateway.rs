//! The RLP Gateway transport against the simulated gateway over loopback:
//! the same workload gives the same series as the Firehose and the RLP; events split
//! across reads, heartbeats alone, the `closing` event, a stale token and
//! refusals each do what the gateway's clients must.

mod common;

use common::{landing_page_with, scrape, total, v2_counter as counter};

use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::app::{Exporter, ExporterConfig};
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::args::WorkloadArgs;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use cf_firehose_exporter::sim::v2::to_v2;
use cf_firehose_exporter::sim::workload::Workload;
use cf_firehose_exporter::source::Endpoint;
use cf_firehose_exporter::source::gateway::read_url;
use prost::Message as _;

async fn foundation() -> Foundation {
    Foundation::start_local()
        .await
        .expect("simulated foundation")
}

/// Exporter settings for the gateway of `foundation`.
fn gateway_config(foundation: &Foundation) -> ExporterConfig {
    let mut config = common::config_for(foundation, Duration::from_secs(600));
    let url = read_url(&foundation.gateway_url(), "test", false).unwrap();
    config.source.endpoint = Endpoint::Gateway(url);
    config
}

/// The relayed series of a body, sorted: the self metrics and the
/// comments left out.
fn relayed(body: &str) -> Vec<String> {
    let mut lines: Vec<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("cf_firehose_exporter_"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn the_same_workload_gives_the_same_series_over_every_transport() {
    let foundation = foundation().await;
    let firehose = Exporter::start(common::config_for(&foundation, Duration::from_secs(600)))
        .await
        .unwrap();
    let gateway = Exporter::start(gateway_config(&foundation)).await.unwrap();
    let rlp = Exporter::start(common::rlp_config(&foundation))
        .await
        .unwrap();
    let patience = Duration::from_secs(10);
    assert!(
        foundation
            .traffic_controller
            .wait_for_connections(1, patience)
            .await
    );
    assert!(foundation.gateway.wait_for_connections(1, patience).await);
    assert!(foundation.rlp.wait_for_connections(1, patience).await);
    let args = WorkloadArgs {
        rate: 0,
        cells: 2,
        apps: 6,
        seed: 11,
    };
    let mut workload = Workload::new(&args);
    let mut batch = Vec::new();
    for _ in 0..workload.round_len() {
        let v1 = workload.next_envelope();
        let kind = match v1.log_message {
            Some(_) => FrameKind::Log,
            None => FrameKind::Metric,
        };
        foundation
            .traffic_controller
            .publish(Bytes::from(v1.encode_to_vec()), kind)
            .await;
        batch.extend(to_v2(&v1));
        if batch.len() == 100 {
            assert_eq!(foundation.gateway.publish(&batch).await, 1);
            assert_eq!(foundation.rlp.publish(&batch).await, 1);
            batch.clear();
        }
    }
    assert_eq!(foundation.gateway.publish(&batch).await, 1);
    assert_eq!(foundation.rlp.publish(&batch).await, 1);
    let (a, b, c) = common::eventually("the three exporters holding the same series", || async {
        let (a, b, c) = (
            relayed(&scrape(&firehose).await),
            relayed(&scrape(&gateway).await),
            relayed(&scrape(&rlp).await),
        );
        (a.len() > 200 && a == b && b == c).then_some((a, b, c))
    })
    .await;
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert!(a.iter().any(|l| l.starts_with("cpu{")), "container metrics");
    assert!(
        a.iter().any(|l| l.starts_with("total_requests_total{")),
        "counters"
    );
}

#[tokio::test]
async fn events_split_across_reads_arrive_whole() {
    let foundation = foundation().await;
    let exporter = Exporter::start(gateway_config(&foundation)).await.unwrap();
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, Duration::from_secs(10))
            .await
    );
    let batch: Vec<_> = (1..=50).map(|i| counter(&format!("c{i}"), i)).collect();
    assert_eq!(foundation.gateway.publish_split(&batch, 7).await, 1);
    let body = common::eventually("the split batch stored", || async {
        let body = scrape(&exporter).await;
        total(&body, "c50").is_some().then_some(body)
    })
    .await;
    assert_eq!(total(&body, "c1"), Some(1.0));
    assert_eq!(total(&body, "c37"), Some(37.0));
    assert!(
        body.contains("cf_firehose_exporter_decode_errors_total 0\n"),
        "{body}"
    );
}

#[tokio::test]
async fn heartbeats_alone_keep_the_stream_open() {
    let foundation = foundation().await;
    foundation.gateway.set_heartbeat(Duration::from_millis(100));
    let mut config = gateway_config(&foundation);
    config.source.idle_timeout = Some(Duration::from_millis(800));
    let exporter = Exporter::start(config).await.unwrap();
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, Duration::from_secs(10))
            .await
    );
    // Legacy heartbeat lines count as traffic too.
    foundation
        .gateway
        .write_all("heartbeat: 1700000000\n")
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(foundation.gateway.accepted(), 1, "never reconnected");
    let body = scrape(&exporter).await;
    assert!(body.contains("cf_firehose_exporter_up 1\n"));
    assert!(!body.contains("reason=\"idle_timeout\""), "{body}");
}

#[tokio::test]
async fn a_closing_event_is_followed_by_a_new_stream_at_once_and_loses_nothing() {
    let foundation = foundation().await;
    let mut config = gateway_config(&foundation);
    // Any backoff would show: the new stream must come at once.
    config.source.min_retry_delay = Duration::from_secs(30);
    config.source.max_retry_delay = Duration::from_secs(30);
    let exporter = Exporter::start(config).await.unwrap();
    let patience = Duration::from_secs(10);
    assert!(foundation.gateway.wait_for_connections(1, patience).await);
    assert_eq!(foundation.gateway.publish(&[counter("before", 5)]).await, 1);
    foundation.gateway.close_all();
    let started = tokio::time::Instant::now();
    common::eventually("a second stream", || async {
        (foundation.gateway.accepted() == 2 && foundation.gateway.connections() == 1).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(foundation.gateway.publish(&[counter("after", 7)]).await, 1);
    let body = common::eventually("both counters", || async {
        let body = scrape(&exporter).await;
        total(&body, "after").is_some().then_some(body)
    })
    .await;
    assert_eq!(total(&body, "before"), Some(5.0), "sent before the close");
    assert!(body.contains("cf_firehose_exporter_reconnects_total{reason=\"closing\"} 1\n"));
}

#[tokio::test]
async fn a_stale_token_gets_404_then_a_new_token_then_data() {
    let foundation = foundation().await;
    let exporter = Exporter::start(gateway_config(&foundation)).await.unwrap();
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, Duration::from_secs(10))
            .await
    );
    let issued = foundation.uaa.tokens_issued();
    foundation.uaa.revoke_all();
    foundation.gateway.end_all();
    common::eventually("a stream with a new token", || async {
        (foundation.gateway.connections() == 1 && foundation.gateway.accepted() == 2).then_some(())
    })
    .await;
    assert!(foundation.gateway.not_found() >= 1);
    assert!(
        foundation.uaa.tokens_issued() > issued,
        "a new token was fetched"
    );
    assert_eq!(foundation.gateway.publish(&[counter("fresh", 3)]).await, 1);
    common::eventually("data on the new stream", || async {
        (total(&scrape(&exporter).await, "fresh") == Some(3.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn refusals_are_reported_with_their_body_and_counted() {
    let foundation = foundation().await;
    foundation.gateway.set_refusal(Some(400));
    let exporter = Exporter::start(gateway_config(&foundation)).await.unwrap();
    let page = landing_page_with(&exporter, "missing_envelope_type").await;
    assert!(page.contains("HTTP 400"), "{page}");
    let body = scrape(&exporter).await;
    assert!(body.contains("cf_firehose_exporter_connect_errors_total{reason=\"rejected\"}"));
    foundation.gateway.set_refusal(Some(503));
    landing_page_with(&exporter, "streaming_unavailable").await;
    foundation.gateway.set_refusal(None);
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, Duration::from_secs(10))
            .await
    );
}

#[tokio::test]
async fn an_error_answer_whose_body_never_ends_is_reported_from_its_start() {
    let foundation = foundation().await;
    foundation.gateway.set_refusal(Some(599));
    let exporter = Exporter::start(gateway_config(&foundation)).await.unwrap();
    let page = landing_page_with(&exporter, "HTTP 503").await;
    assert!(page.contains("xxxx"), "{page}");
    assert!(
        !page.contains(&"x".repeat(400)),
        "only the start of the body is kept"
    );
}
