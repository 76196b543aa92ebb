//! The binary under the environment a Go firehose_exporter job sets: it
//! starts, streams, keeps what its variables mean, and names once what has no
//! effect here.

mod common;

use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use common::pki::Pki;

/// The variables v5 and v6 jobs share, at their generations' defaults:
/// zeros for the retry settings, empty filters.
fn uaa_job(foundation: &Foundation) -> tokio::process::Command {
    let mut command = common::binary::command();
    command
        .env("FIREHOSE_EXPORTER_UAA_URL", foundation.uaa_url())
        .env("FIREHOSE_EXPORTER_UAA_CLIENT_ID", &foundation.client.id)
        .env(
            "FIREHOSE_EXPORTER_UAA_CLIENT_SECRET",
            foundation.client.secret.expose(),
        )
        .env("FIREHOSE_EXPORTER_DOPPLER_SUBSCRIPTION_ID", "prometheus")
        .env("FIREHOSE_EXPORTER_DOPPLER_IDLE_TIMEOUT", "0")
        .env("FIREHOSE_EXPORTER_DOPPLER_MIN_RETRY_DELAY", "0")
        .env("FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_DELAY", "0")
        .env("FIREHOSE_EXPORTER_DOPPLER_MAX_RETRY_COUNT", "0")
        .env("FIREHOSE_EXPORTER_DOPPLER_METRIC_EXPIRATION", "5m")
        .env("FIREHOSE_EXPORTER_FILTER_DEPLOYMENTS", "")
        .env("FIREHOSE_EXPORTER_FILTER_EVENTS", "")
        .env("FIREHOSE_EXPORTER_METRICS_NAMESPACE", "firehose")
        .env("FIREHOSE_EXPORTER_METRICS_CLEANUP_INTERVAL", "2m")
        .env("FIREHOSE_EXPORTER_SKIP_SSL_VERIFY", "false")
        // Not the job's :9186, so that tests run side by side.
        .env("FIREHOSE_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:0");
    command
}

/// A v5 job passes every variable of its generation, its defaults as they
/// are (zeros for the retry settings, empty filters), the web certificate
/// under the Go exporter's spelling and `--log.format logger:stderr`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_job_starts_streams_serves_https_and_names_what_has_no_effect() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let pki = Pki::new("go-v5-job");
    let started = common::binary::start(
        uaa_job(&foundation)
            .args(["--log.format", "logger:stderr"])
            .env("FIREHOSE_EXPORTER_DOPPLER_URL", foundation.doppler_url())
            .env("FIREHOSE_EXPORTER_METRICS_ENVIRONMENT", "prod")
            .env("FIREHOSE_EXPORTER_WEB_TELEMETRY_PATH", "/metrics")
            .env(
                "FIREHOSE_EXPORTER_WEB_TLS_CERTFILE",
                pki.dir.join("server.pem"),
            )
            .env(
                "FIREHOSE_EXPORTER_WEB_TLS_KEYFILE",
                pki.dir.join("server.key"),
            ),
    )
    .await;
    let (address, warnings) = (&started.address, &started.warnings);

    let ignored = started.without_effect();
    assert_eq!(ignored.len(), 1, "{warnings:#?}");
    for flag in [
        "--metrics.cleanup-interval",
        "--metrics.namespace",
        "--log.format logger:stderr",
    ] {
        assert!(ignored[0].contains(flag), "{flag} in {}", ignored[0]);
    }
    // Given, but with a meaning here: not in the warning.
    for flag in ["--doppler.min-retry-delay", "--doppler.metric-expiration"] {
        assert!(!ignored[0].contains(flag), "{flag} in {}", ignored[0]);
    }
    // Logs in logfmt, saying the names are native and how to get the old ones.
    assert!(!started.json, "{:#?}", started.logged);
    let naming: Vec<_> = started
        .logged
        .iter()
        .filter(|l| l.contains("metric names are native"))
        .collect();
    assert_eq!(naming.len(), 1, "{:#?}", started.logged);
    assert!(
        naming[0].contains("--metrics.naming firehose_exporter"),
        "{}",
        naming[0]
    );

    let delivered = common::eventually("a connection to the Traffic Controller", || async {
        let frame = common::hex(common::COUNTER_EVENT);
        let n = foundation
            .traffic_controller
            .publish(frame, FrameKind::Metric)
            .await;
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(delivered, 1);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{address}/metrics");
    let body = common::eventually("the counter served over HTTPS", || async {
        let body = client.get(&url).send().await.ok()?.text().await.ok()?;
        // Not the exporter's own token_requests_total: the relayed counter.
        body.lines()
            .any(|l| l.starts_with("requests_total{"))
            .then_some(body)
    })
    .await;
    let line = body
        .lines()
        .find(|l| l.starts_with("requests_total{"))
        .expect("the counter's series");
    assert!(line.contains("environment=\"prod\""), "{line}");
    assert!(
        line.ends_with(" 1234") || line.ends_with(" 1234.0"),
        "{line}"
    );
    // Plain HTTP is not served.
    let plain = reqwest::get(format!("http://{address}/metrics")).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
}

/// A v6 job reads the RLP gateway with a UAA token, and passes its
/// generation's variables at their defaults (`USE_LEGACY_FIREHOSE` without
/// the prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v6_job_streams_from_the_gateway() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let started = common::binary::start(
        uaa_job(&foundation)
            .env("FIREHOSE_EXPORTER_LOGGING_URL", foundation.gateway_url())
            .env("USE_LEGACY_FIREHOSE", "false")
            .env("FIREHOSE_EXPORTER_METRICS_ENVIRONMENT", "staging"),
    )
    .await;
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter reads the gateway"
    );
    let published = foundation
        .gateway
        .publish(&[common::v2_counter("v6_job", 77)])
        .await;
    assert_eq!(published, 1);
    let url = format!("http://{}/metrics", started.address);
    let body = common::eventually("the counter served", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        body.contains("v6_job_total{").then_some(body)
    })
    .await;
    let line = body
        .lines()
        .find(|l| l.starts_with("v6_job_total{"))
        .expect("the counter's series");
    assert!(line.contains("environment=\"staging\""), "{line}");
    assert!(line.ends_with(" 77") || line.ends_with(" 77.0"), "{line}");
    let ignored = started.without_effect();
    assert_eq!(ignored.len(), 1, "{:?}", started.warnings);
    assert!(
        ignored[0].contains("flags=\"--metrics.cleanup-interval, --metrics.namespace\""),
        "{}",
        ignored[0]
    );
}

/// A v6 job with `USE_LEGACY_FIREHOSE=true` reads the v1 Firehose at its
/// `--logging.url`; with `--metrics.naming firehose_exporter` its
/// dashboards find the names they query, and `--metrics.namespace` has its
/// meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v6_job_on_the_legacy_firehose_streams_under_the_go_names() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let started = common::binary::start(
        uaa_job(&foundation)
            .env("FIREHOSE_EXPORTER_LOGGING_URL", foundation.doppler_url())
            .env("USE_LEGACY_FIREHOSE", "true")
            .env("FIREHOSE_EXPORTER_METRICS_ENVIRONMENT", "staging")
            .env("FIREHOSE_EXPORTER_METRICS_NAMING", "firehose_exporter"),
    )
    .await;
    assert!(
        foundation
            .traffic_controller
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter reads the Firehose"
    );
    assert_eq!(foundation.gateway.connections(), 0);
    let delivered = foundation
        .traffic_controller
        .publish(common::hex(common::COUNTER_EVENT), FrameKind::Metric)
        .await;
    assert_eq!(delivered, 1);
    let url = format!("http://{}/metrics", started.address);
    const NAME: &str = "firehose_counter_event_gorouter_requests_total{";
    let body = common::eventually("the counter served", || async {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        body.contains(NAME).then_some(body)
    })
    .await;
    let parsed = common::exposition::parse(&body).unwrap();
    let env = [("environment", "staging")];
    assert_eq!(
        parsed.value("firehose_counter_event_gorouter_requests_total", &env),
        Some(1234.0)
    );
    assert_eq!(
        parsed.value("firehose_total_counter_events_received", &env),
        Some(1.0)
    );
    // The native name is not served beside it.
    assert!(parsed.find("requests_total", &[]).is_empty());
    let ignored = started.without_effect();
    assert_eq!(ignored.len(), 1, "{:?}", started.warnings);
    assert!(
        ignored[0].ends_with(" flags=--metrics.cleanup-interval"),
        "{}",
        ignored[0]
    );
    assert!(
        started
            .logged
            .iter()
            .any(|l| l.contains("metric names are the Go firehose_exporter's")),
        "{:#?}",
        started.logged
    );
}
