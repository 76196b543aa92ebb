//! /metrics over real HTTP: the format each Accept header gets, golden
//! bodies in both formats for a fixed store, gzip, and overlapping scrapes
//! sharing one encoding.

mod common;

use std::io::Read;

use cf_firehose_exporter::exposition::Format;
use common::{CONTAINER_METRIC, COUNTER_EVENT, Harness, VALUE_METRIC, hex};

const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_2_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
const PROMETHEUS_3_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The gauges the three protocol vectors give, the same in both formats.
const GAUGES: &str = "\
# HELP cpu Cloud Foundry gauge 'containerMetric.cpuPercentage'
# TYPE cpu gauge
cpu{app_name=\"myapp\",instance_id=\"0\",origin=\"rep\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",unit=\"percentage\"} 1.5
# HELP disk Cloud Foundry gauge 'containerMetric.diskBytes'
# TYPE disk gauge
disk{app_name=\"myapp\",instance_id=\"0\",origin=\"rep\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",unit=\"bytes\"} 209715200.0
# HELP disk_quota Cloud Foundry gauge 'containerMetric.diskBytesQuota'
# TYPE disk_quota gauge
disk_quota{app_name=\"myapp\",instance_id=\"0\",origin=\"rep\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",unit=\"bytes\"} 1073741824.0
# HELP memory Cloud Foundry gauge 'containerMetric.memoryBytes'
# TYPE memory gauge
memory{app_name=\"myapp\",instance_id=\"0\",origin=\"rep\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",unit=\"bytes\"} 104857600.0
# HELP memory_quota Cloud Foundry gauge 'containerMetric.memoryBytesQuota'
# TYPE memory_quota gauge
memory_quota{app_name=\"myapp\",instance_id=\"0\",origin=\"rep\",source_id=\"f47ac10b-58cc-4372-a567-0e02b2c3d479\",unit=\"bytes\"} 1073741824.0
# HELP numCPUS Cloud Foundry gauge 'numCPUS'
# TYPE numCPUS gauge
numCPUS{bosh_deployment=\"cf\",bosh_job_id=\"idx-1\",bosh_job_ip=\"10.0.0.5\",bosh_job_name=\"diego-cell\",origin=\"rep\",source_id=\"rep\",unit=\"count\"} 4.0
";

/// The counter in the text format 0.0.4: typed under its sample name.
const COUNTER_TEXT: &str = "\
# HELP requests_total Cloud Foundry counter 'requests'
# TYPE requests_total counter
requests_total{origin=\"gorouter\"} 1234.0
";

/// The counter in OpenMetrics: typed under its family name.
const COUNTER_OPENMETRICS: &str = "\
# HELP requests Cloud Foundry counter 'requests'
# TYPE requests counter
requests_total{origin=\"gorouter\"} 1234.0
";

/// An exporter holding exactly the three protocol vectors.
async fn fixed() -> Harness {
    let h = Harness::start().await;
    for v in [VALUE_METRIC, CONTAINER_METRIC, COUNTER_EVENT] {
        h.send_frame(hex(v)).await;
    }
    h.scrape_until("the three vectors", |p| {
        p.value("requests_total", &[]).is_some()
    })
    .await;
    h
}

struct Answer {
    content_type: String,
    content_encoding: Option<String>,
    vary: Vec<String>,
    body: Vec<u8>,
}

async fn get(h: &Harness, headers: &[(&str, &str)]) -> Answer {
    // No automatic decompression: the test sees what goes over the wire.
    let mut request = reqwest::Client::new().get(format!("http://{}/metrics", h.exporter.address));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("exporter answers");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    Answer {
        content_type: header("content-type").join(", "),
        content_encoding: header("content-encoding").into_iter().next(),
        vary: header("vary"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// The relayed families, which come before the self metrics.
fn relayed(body: &str) -> &str {
    assert!(body.starts_with("# HELP cpu "), "relayed families first");
    &body[..body
        .find("# HELP cf_firehose_exporter_")
        .expect("self metrics present")]
}

#[tokio::test]
async fn both_formats_are_golden_for_a_fixed_store_and_parse() {
    let h = fixed().await;

    let text = get(&h, &[]).await;
    assert_eq!(text.content_type, TEXT);
    let text = String::from_utf8(text.body).unwrap();
    assert_eq!(relayed(&text), format!("{GAUGES}{COUNTER_TEXT}"));
    let parsed = common::exposition::parse(&text).unwrap();
    assert_eq!(parsed.types["requests_total"], "counter");
    assert!(common::exposition::parse_openmetrics(&text).is_err());

    let om = get(&h, &[("accept", PROMETHEUS_2)]).await;
    assert_eq!(om.content_type, OPENMETRICS);
    let om = String::from_utf8(om.body).unwrap();
    assert_eq!(relayed(&om), format!("{GAUGES}{COUNTER_OPENMETRICS}"));
    assert!(om.ends_with("} 1\n# EOF\n"), "{om}");
    let parsed = common::exposition::parse_openmetrics(&om).unwrap();
    assert_eq!(parsed.types["requests"], "counter");
    assert_eq!(
        parsed.value("requests_total", &[("origin", "gorouter")]),
        Some(1234.0)
    );
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
}

#[tokio::test]
async fn the_content_type_is_exact_for_each_accept_header() {
    let h = fixed().await;
    for (accept, expected) in [
        (None, TEXT),
        (Some(PROMETHEUS_2), OPENMETRICS),
        (Some(PROMETHEUS_2_PROTOBUF), OPENMETRICS),
        (Some(PROMETHEUS_3), OPENMETRICS),
        (Some(PROMETHEUS_3_PROTOBUF), OPENMETRICS),
        (Some("text/plain;version=0.0.4"), TEXT),
        (Some("*/*"), TEXT),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            TEXT,
        ),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let answer = get(&h, &headers).await;
        assert_eq!(answer.content_type, expected, "Accept: {accept:?}");
        assert!(answer.vary.iter().any(|v| v.eq_ignore_ascii_case("accept")));
        let body = String::from_utf8(answer.body).unwrap();
        assert_eq!(body.ends_with("# EOF\n"), expected == OPENMETRICS);
    }
}

#[tokio::test]
async fn gzip_round_trips_in_both_formats() {
    let h = fixed().await;
    for accept in ["text/plain", PROMETHEUS_3] {
        let plain = get(&h, &[("accept", accept)]).await;
        assert_eq!(plain.content_encoding, None);
        let zipped = get(&h, &[("accept", accept), ("accept-encoding", "gzip")]).await;
        assert_eq!(zipped.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(zipped.content_type, plain.content_type);
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(zipped.body.as_slice())
            .read_to_string(&mut unzipped)
            .expect("valid gzip");
        let plain = String::from_utf8(plain.body).unwrap();
        assert_eq!(relayed(&unzipped), relayed(&plain));
        assert!(zipped.body.len() < unzipped.len() / 2, "it compresses");
    }
}

#[tokio::test]
async fn overlapping_scrapes_share_one_encoding() {
    let h = fixed().await;
    // Enough series that an encoding takes a while.
    let now = tokio::time::Instant::now();
    for i in 0..20_000 {
        h.exporter.store.apply(
            cf_firehose_exporter::naming::SeriesUpdate {
                family: "filler".into(),
                kind: cf_firehose_exporter::naming::MetricKind::Gauge,
                original: "filler".into(),
                labels: vec![("i".into(), i.to_string())],
                value: cf_firehose_exporter::naming::Value::Set(1.0),
                buckets: Vec::new(),
            },
            now,
        );
    }
    let before = h.exporter.scrape_encodings(Format::PrometheusText);
    let scrapes: Vec<_> = (0..32)
        .map(|_| {
            let url = format!("http://{}/metrics", h.exporter.address);
            tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() })
        })
        .collect();
    for scrape in scrapes {
        let body = scrape.await.unwrap();
        assert!(common::exposition::parse(&body).is_ok());
    }
    let encodings = h.exporter.scrape_encodings(Format::PrometheusText) - before;
    assert!(
        (1..32).contains(&encodings),
        "32 overlapping scrapes took {encodings} encodings"
    );
}

#[tokio::test]
async fn openmetrics_can_be_turned_off() {
    let h = Harness::start_with(Default::default(), Default::default(), |mut c| {
        c.openmetrics = false;
        c
    })
    .await;
    let answer = get(&h, &[("accept", PROMETHEUS_2)]).await;
    assert_eq!(answer.content_type, TEXT);
}
