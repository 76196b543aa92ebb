//! The gRPC Reverse Log Proxy transport against the simulated RLP over
//! loopback, with mutual TLS and certificates made for each test: the
//! subscription asked for, data, certificates refused either way with a
//! clear error, a server name other than the default, a connection reset
//! mid-stream, a stream ended by the server, and backoff while the RLP
//! refuses subscriptions.

mod common;

use std::time::Duration;

use cf_firehose_exporter::app::{Exporter, ExporterConfig};
use cf_firehose_exporter::envelope::v2::proto::selector;
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::pki::SimPki;
use cf_firehose_exporter::source::Endpoint;
use common::{landing_page_with, scrape, total, v2_counter as counter};

async fn foundation() -> Foundation {
    Foundation::start_local()
        .await
        .expect("simulated foundation")
}

/// The RLP settings of `config`, to change.
fn rlp(config: &mut ExporterConfig) -> &mut cf_firehose_exporter::source::RlpEndpoint {
    match &mut config.source.endpoint {
        Endpoint::Rlp(rlp) => rlp,
        other => panic!("not the RLP: {other}"),
    }
}

/// Another CA's files, in a folder of their own.
fn other_pki(name: &str) -> cf_firehose_exporter::source::tls::MutualTlsFiles {
    let dir = std::env::temp_dir().join(format!(
        "cf-firehose-exporter-rlp-{name}-{}",
        std::process::id()
    ));
    SimPki::generate("another CA")
        .unwrap()
        .write_client_files(&dir)
        .unwrap()
}

async fn streaming(foundation: &Foundation, exporter: &Exporter) {
    assert!(
        foundation
            .rlp
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter subscribed"
    );
    landing_page_with(exporter, "<p>RLP: <strong id=\"state\">streaming</strong>").await;
}

#[tokio::test]
async fn the_subscription_names_the_shard_prefers_tags_and_selects_metrics() {
    let foundation = foundation().await;
    let exporter = Exporter::start(common::rlp_config(&foundation))
        .await
        .unwrap();
    streaming(&foundation, &exporter).await;
    let batch: Vec<_> = (1..=150).map(|i| counter(&format!("c{i}"), i)).collect();
    assert_eq!(foundation.rlp.publish(&batch).await, 1);
    let body = common::eventually("the batch stored", || async {
        let body = scrape(&exporter).await;
        total(&body, "c150").is_some().then_some(body)
    })
    .await;
    assert_eq!(total(&body, "c1"), Some(1.0));
    assert_eq!(total(&body, "c99"), Some(99.0));
    assert!(body.contains("cf_firehose_exporter_up 1\n"), "{body}");
    assert!(
        body.contains("cf_firehose_exporter_decode_errors_total 0\n"),
        "{body}"
    );
    let requests = foundation.rlp.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.shard_id, "test");
    assert!(request.use_preferred_tags);
    let mut kinds: Vec<&str> = request
        .selectors
        .iter()
        .map(|s| match s.message {
            Some(selector::Message::Counter(_)) => "counter",
            Some(selector::Message::Gauge(_)) => "gauge",
            Some(selector::Message::Timer(_)) => "timer",
            _ => "other",
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["counter", "gauge", "timer"]);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let foundation = foundation().await;
    let mut config = common::rlp_config(&foundation);
    rlp(&mut config).tls.ca = other_pki("wrong-ca").ca;
    let exporter = Exporter::start(config).await.unwrap();
    let page = landing_page_with(&exporter, "UnknownIssuer").await;
    assert!(
        page.contains("TLS handshake (as reverselogproxy) failed"),
        "{page}"
    );
    assert!(page.contains("cannot reach the RLP"), "{page}");
    assert_eq!(foundation.rlp.accepted(), 0);
    let body = scrape(&exporter).await;
    assert!(body.contains("cf_firehose_exporter_up 0\n"), "{body}");
    assert!(
        !body.contains("connect_errors_total{reason=\"unreachable\"} 0\n"),
        "{body}"
    );
}

#[tokio::test]
async fn a_client_certificate_the_rlp_does_not_trust_is_refused() {
    let foundation = foundation().await;
    let mut config = common::rlp_config(&foundation);
    let stranger = other_pki("wrong-client");
    rlp(&mut config).tls.cert = stranger.cert;
    rlp(&mut config).tls.key = stranger.key;
    let exporter = Exporter::start(config).await.unwrap();
    common::eventually("the RLP refusing the handshake", || async {
        (foundation.rlp.handshakes_failed() > 0).then_some(())
    })
    .await;
    let page = landing_page_with(&exporter, "reconnecting after").await;
    assert!(page.contains("cannot reach the RLP"), "{page}");
    assert_eq!(foundation.rlp.accepted(), 0);
}

#[tokio::test]
async fn the_server_name_checked_is_reverselogproxy_unless_told_otherwise() {
    let foundation = foundation().await;
    let mut config = common::rlp_config(&foundation);
    rlp(&mut config).server_name = "doppler.service.cf.internal".into();
    let wrong = Exporter::start(config).await.unwrap();
    let page = landing_page_with(&wrong, "certificate not valid for name").await;
    assert!(page.contains("as doppler.service.cf.internal"), "{page}");
    let mut config = common::rlp_config(&foundation);
    rlp(&mut config).server_name = "localhost".into();
    let right = Exporter::start(config).await.unwrap();
    streaming(&foundation, &right).await;
}

#[tokio::test]
async fn a_connection_reset_mid_stream_is_survived() {
    let foundation = foundation().await;
    let exporter = Exporter::start(common::rlp_config(&foundation))
        .await
        .unwrap();
    streaming(&foundation, &exporter).await;
    // Batches keep coming while the connection is cut under them.
    for total in 1..=20u64 {
        let batch: Vec<_> = (0..100).map(|_| counter("before", total)).collect();
        foundation.rlp.publish(&batch).await;
    }
    foundation.rlp.reset_all();
    common::eventually("the exporter subscribed again", || async {
        (foundation.rlp.accepted() >= 2 && foundation.rlp.connections() == 1).then_some(())
    })
    .await;
    assert_eq!(foundation.rlp.publish(&[counter("after", 7)]).await, 1);
    let body = common::eventually("data after the reset", || async {
        let body = scrape(&exporter).await;
        (total(&body, "after") == Some(7.0)).then_some(body)
    })
    .await;
    assert!(
        body.contains("reconnects_total{reason=\"error\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("cf_firehose_exporter_up 1\n"), "{body}");
}

#[tokio::test]
async fn a_stream_the_server_ends_is_opened_again_at_once_and_loses_nothing() {
    let foundation = foundation().await;
    let mut config = common::rlp_config(&foundation);
    // Any backoff would show: the new stream must come at once.
    config.source.min_retry_delay = Duration::from_secs(30);
    config.source.max_retry_delay = Duration::from_secs(30);
    let exporter = Exporter::start(config).await.unwrap();
    streaming(&foundation, &exporter).await;
    foundation.rlp.publish(&[counter("before_end", 5)]).await;
    foundation.rlp.end_all();
    common::eventually("a new stream", || async {
        (foundation.rlp.accepted() == 2 && foundation.rlp.connections() == 1).then_some(())
    })
    .await;
    foundation.rlp.publish(&[counter("after_end", 6)]).await;
    let body = common::eventually("both counters", || async {
        let body = scrape(&exporter).await;
        (total(&body, "after_end") == Some(6.0)).then_some(body)
    })
    .await;
    assert_eq!(total(&body, "before_end"), Some(5.0));
    assert!(
        body.contains("reconnects_total{reason=\"ended\"} 1\n"),
        "{body}"
    );
}

#[tokio::test]
async fn refused_subscriptions_are_retried_with_backoff_and_reported() {
    let foundation = foundation().await;
    foundation.rlp.set_refusal(Some(tonic::Code::Unavailable));
    let mut config = common::rlp_config(&foundation);
    config.source.min_retry_delay = Duration::from_millis(100);
    config.source.max_retry_delay = Duration::from_secs(10);
    let exporter = Exporter::start(config).await.unwrap();
    let page = landing_page_with(&exporter, "gRPC status Unavailable").await;
    assert!(
        page.contains("the simulated RLP refuses subscriptions"),
        "{page}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // 100 ms doubling: attempts at about 0, 0.1, 0.3, 0.7 and 1.5 s. A client
    // retrying every 50 ms without backoff would have made some 30.
    let attempts = foundation.rlp.requests().len();
    assert!((3..=7).contains(&attempts), "{attempts} attempts");
    let body = scrape(&exporter).await;
    assert!(
        body.contains(&format!(
            "connect_errors_total{{reason=\"rejected\"}} {attempts}\n"
        )) || body.contains("connect_errors_total{reason=\"rejected\"}"),
        "{body}"
    );
    foundation.rlp.set_refusal(None);
    foundation
        .rlp
        .wait_for_connections(1, common::PATIENCE)
        .await;
    landing_page_with(&exporter, "streaming").await;
}

/// The binary started with only what a Go v7 BOSH job sets for its
/// transport streams from the RLP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_of_a_v7_job_streams_from_the_rlp() {
    let foundation = foundation().await;
    let files = foundation.rlp_client_files().unwrap();
    let started = common::binary::start(
        common::binary::command()
            .env("FIREHOSE_EXPORTER_LOGGING_URL", foundation.rlp_address())
            .env(
                "FIREHOSE_EXPORTER_LOGGING_TLS_CA",
                files.ca.as_ref().unwrap(),
            )
            .env("FIREHOSE_EXPORTER_LOGGING_TLS_CERT", &files.cert)
            .env("FIREHOSE_EXPORTER_LOGGING_TLS_KEY", &files.key)
            .env("FIREHOSE_EXPORTER_SHARD_ID", "firehose_exporter")
            .env("FIREHOSE_EXPORTER_METRICS_ENVIRONMENT", "prod")
            // The rest of what a v7 job sets, at its defaults.
            .env("FIREHOSE_EXPORTER_METRICS_NAMESPACE", "firehose")
            .env("FIREHOSE_EXPORTER_METRICS_EXPIRATION", "10m")
            .env("FIREHOSE_EXPORTER_METRICS_BATCH_SIZE", "-1")
            .env("FIREHOSE_EXPORTER_NODE_INDEX", "0")
            .env("FIREHOSE_EXPORTER_TIMER_ROLLUP_BUFFER_SIZE", "16384")
            .env("FIREHOSE_EXPORTER_RETRO_COMPAT_DISABLE", "false")
            .env("FIREHOSE_EXPORTER_RETRO_COMPAT_ENABLE_DELTA", "false")
            .env("FIREHOSE_EXPORTER_FILTER_DEPLOYMENTS", "")
            .env("FIREHOSE_EXPORTER_FILTER_EVENTS", "")
            .env("FIREHOSE_EXPORTER_SKIP_SSL_VERIFY", "false")
            .env("FIREHOSE_EXPORTER_ENABLE_PROFILER", "false")
            .env("FIREHOSE_EXPORTER_LOG_LEVEL", "info")
            .env("FIREHOSE_EXPORTER_LOG_IN_JSON", "true")
            .env("FIREHOSE_EXPORTER_WEB_TELEMETRY_PATH", "/metrics")
            // Not the job's :9186, so that tests run side by side.
            .env("FIREHOSE_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:0"),
    )
    .await;
    let address = &started.address;
    // FIREHOSE_EXPORTER_LOG_IN_JSON=true: every line is a JSON object.
    assert!(started.json, "{:#?}", started.logged);
    assert!(started.logged.len() >= 3, "{:#?}", started.logged);
    let ignored = started.without_effect();
    // Named once, the given flags without effect and no other.
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(
        ignored[0].contains(
            "\"flags\":\"--metrics.batch_size, --metrics.timer_rollup_buffer_size, \
             --metrics.namespace, --metrics.node_index\""
        ),
        "{}",
        ignored[0]
    );
    assert!(
        foundation
            .rlp
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter subscribed"
    );
    assert_eq!(foundation.rlp.requests()[0].shard_id, "firehose_exporter");
    foundation.rlp.publish(&[counter("v7_job", 42)]).await;
    let url = format!("http://{address}/metrics");
    let body = common::eventually("the counter served", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        body.contains("v7_job_total{").then_some(body)
    })
    .await;
    let line = body
        .lines()
        .find(|l| l.starts_with("v7_job_total{"))
        .expect("the counter's series");
    assert!(line.ends_with(" 42") || line.ends_with(" 42.0"), "{line}");
    assert!(line.contains("environment=\"prod\""), "{line}");
    assert!(body.contains("cf_firehose_exporter_up 1\n"), "{body}");
}
