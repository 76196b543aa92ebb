//! A real Prometheus (Debian's `prometheus`) scrapes two exporters fed by the
//! simulated foundation, one answering in OpenMetrics and one in the text
//! format 0.0.4: both targets are up with no scrape error, and queries
//! return the gauge, counter and container metric values the foundation sent.
//! Required where `CF_FIREHOSE_EXPORTER_REQUIRE_PROMETHEUS` is set (CI);
//! skipped, saying so, where Prometheus is not installed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cf_firehose_exporter::app::Exporter;
use cf_firehose_exporter::envelope::{CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::exposition::Format;
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use common::{CONTAINER_METRIC, hex};
use prost::Message;

use common::prometheus::{get_json, start_prometheus, targets_up, urlencode};

fn prometheus() -> Option<&'static str> {
    common::prometheus::binary()
}

async fn exporter(foundation: &Foundation, subscription: &str, openmetrics: bool) -> Exporter {
    let mut config = common::config_for(foundation, Duration::from_secs(600));
    config.openmetrics = openmetrics;
    // Its own subscription id: each exporter gets the whole stream.
    config.source.endpoint = cf_firehose_exporter::source::Endpoint::Firehose(
        foundation
            .doppler_url()
            .parse::<url::Url>()
            .unwrap()
            .join(&format!("/firehose/{subscription}?filter-type=metrics"))
            .unwrap(),
    );
    Exporter::start(config).await.expect("exporter starts")
}

/// The one value a PromQL query returns, as Prometheus writes it.
async fn query(client: &reqwest::Client, base: &str, promql: &str) -> Option<String> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(promql));
    let json = get_json(client, &url).await?;
    let result = json["data"]["result"].as_array()?;
    (result.len() == 1).then(|| result[0]["value"][1].as_str().map(str::to_owned))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_both_formats_and_stores_what_the_sim_sent() {
    let Some(binary) = prometheus() else { return };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let foundation = Foundation::start(any, any, Default::default(), Default::default())
        .await
        .unwrap();
    let openmetrics = exporter(&foundation, "prometheus-om", true).await;
    let text = exporter(&foundation, "prometheus-text", false).await;
    assert!(
        foundation
            .traffic_controller
            .wait_for_connections(2, common::PATIENCE)
            .await
    );

    // What the foundation sends, to both subscriptions.
    let gauge = Envelope {
        origin: "rep".into(),
        event_type: 6,
        value_metric: Some(ValueMetric {
            name: "CapacityRemainingMemory".into(),
            value: 12345.5,
            unit: "MiB".into(),
        }),
        deployment: Some("cf".into()),
        job: Some("diego-cell".into()),
        ..Default::default()
    };
    let counter = Envelope {
        origin: "gorouter".into(),
        event_type: 7,
        counter_event: Some(CounterEvent {
            name: "total_requests".into(),
            delta: 3,
            total: Some(987654),
        }),
        ..Default::default()
    };
    let tc = &foundation.traffic_controller;
    for frame in [
        gauge.encode_to_vec().into(),
        counter.encode_to_vec().into(),
        hex(CONTAINER_METRIC),
    ] {
        assert_eq!(tc.publish(frame, FrameKind::Metric).await, 2);
    }

    let dir =
        std::env::temp_dir().join(format!("cf-firehose-exporter-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: openmetrics\n    static_configs:\n      - targets: ['{}']\n\
             \x20 - job_name: text\n    static_configs:\n      - targets: ['{}']\n",
            openmetrics.address, text.address
        ),
    )
    .unwrap();
    let (_running, base) = start_prometheus(binary, &dir, &config);
    let client = reqwest::Client::new();
    let targets = targets_up(&client, &base, 2).await;
    for target in &targets {
        assert_eq!(target["lastError"], "", "{target}");
    }

    for job in ["openmetrics", "text"] {
        let expect = [
            (
                format!(
                    "CapacityRemainingMemory{{job=\"{job}\",origin=\"rep\",bosh_job_name=\"diego-cell\",unit=\"MiB\"}}"
                ),
                "12345.5",
            ),
            (
                format!("total_requests_total{{job=\"{job}\",origin=\"gorouter\"}}"),
                "987654",
            ),
            (
                format!(
                    "cpu{{job=\"{job}\",app_name=\"myapp\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",instance_id=\"0\"}}"
                ),
                "1.5",
            ),
            (
                format!("memory{{job=\"{job}\",app_name=\"myapp\"}}"),
                "104857600",
            ),
            (format!("cf_firehose_exporter_up{{job=\"{job}\"}}"), "1"),
        ];
        for (promql, value) in expect {
            let got =
                common::eventually(&promql, || async { query(&client, &base, &promql).await })
                    .await;
            assert_eq!(got, value, "{promql}");
        }
    }
    assert!(openmetrics.scrape_encodings(Format::OpenMetrics) > 0);
    assert_eq!(openmetrics.scrape_encodings(Format::PrometheusText), 0);
    assert!(text.scrape_encodings(Format::PrometheusText) > 0);
    assert_eq!(text.scrape_encodings(Format::OpenMetrics), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_over_https_with_its_default_settings_and_with_http2() {
    let Some(binary) = prometheus() else { return };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let foundation = Foundation::start(any, any, Default::default(), Default::default())
        .await
        .unwrap();
    let pki = common::pki::Pki::new("prom-tls");
    let mut config = common::config_for(&foundation, Duration::from_secs(600));
    config.web = cf_firehose_exporter::http::web_config::WebSecurityArgs {
        tls_cert_file: Some(pki.path("server.pem")),
        tls_key_file: Some(pki.path("server.key")),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let exporter = Exporter::start(config).await.expect("exporter starts");
    let dir = std::env::temp_dir().join(format!(
        "cf-firehose-exporter-prom-tls-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pki.path("ca.pem");
    let file = dir.join("prometheus.yml");
    // One job as Prometheus comes, one asking for HTTP/2 whatever the default.
    std::fs::write(
        &file,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: https-default\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n\
             \x20   static_configs:\n      - targets: ['{address}']\n\
             \x20 - job_name: https-http2\n    scheme: https\n    enable_http2: true\n\
             \x20   tls_config:\n      ca_file: {ca}\n\
             \x20   static_configs:\n      - targets: ['{address}']\n",
            ca = ca.display(),
            address = exporter.address,
        ),
    )
    .unwrap();
    let (_running, base) = start_prometheus(binary, &dir, &file);
    let client = reqwest::Client::new();
    let targets = targets_up(&client, &base, 2).await;
    for target in &targets {
        assert_eq!(target["lastError"], "", "{target}");
    }
    for job in ["https-default", "https-http2"] {
        let promql = format!("cf_firehose_exporter_up{{job=\"{job}\"}}");
        let got =
            common::eventually(&promql, || async { query(&client, &base, &promql).await }).await;
        assert_eq!(got, "1", "{promql}");
    }
}
