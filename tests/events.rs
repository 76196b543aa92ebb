//! HTTP requests, logs and errors over loopback from the simulator: what
//! was sent comes out as counters and histograms, each request counted
//! once, with bounded labels, the same through the Firehose and the RLP.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cf_firehose_exporter::envelope::events::{self, Envelope, HttpStartStop, LogMessage};
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::workload::uuid;
use common::Harness;
use common::exposition::{Exposition, Sample};

const APP: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
/// The durations sent, in seconds, one per request in turn.
const DURATIONS: [f64; 5] = [0.003, 0.02, 0.07, 0.3, 2.0];
const REQUESTS: usize = 40;

fn router(event_type: i32) -> Envelope {
    let mut e = Envelope {
        origin: "gorouter".into(),
        event_type,
        deployment: Some("cf".into()),
        job: Some("router".into()),
        index: Some("r-0".into()),
        ip: Some("10.0.0.9".into()),
        ..Default::default()
    };
    e.tags.insert("app_name".into(), "web".into());
    e.tags.insert("space_name".into(), "prod".into());
    e.tags.insert("organization_name".into(), "acme".into());
    e
}

/// Request `i`: its server side, then its client side.
fn request(i: usize) -> [Envelope; 2] {
    let status = if i % 4 == 3 { 503 } else { 200 };
    let method = if i.is_multiple_of(2) {
        events::Method::Get
    } else {
        events::Method::Post
    };
    let duration = (DURATIONS[i % DURATIONS.len()] * 1e9) as i64;
    [events::PeerType::Server, events::PeerType::Client].map(|peer| {
        let mut e = router(4);
        e.http_start_stop = Some(HttpStartStop {
            start_timestamp: 1_000_000_000,
            stop_timestamp: 1_000_000_000 + duration,
            request_id: uuid(&format!("00000000-0000-0000-0000-{i:012}")),
            peer_type: peer as i32,
            method: method as i32,
            uri: format!("https://web.example.com/item/{i}"),
            remote_address: format!("10.1.0.{i}:5000"),
            user_agent: "curl/8.5.0".into(),
            status_code: status,
            content_length: 1500,
            application_id: Some(uuid(APP)),
            instance_index: Some((i % 2) as i32),
            instance_id: None,
            forwarded: vec!["203.0.113.7".into()],
        });
        e
    })
}

/// Diego's `spike` timer as v1 carries it: no method, no status.
fn spike() -> Envelope {
    let mut e = router(4);
    e.origin = "rep".into();
    e.http_start_stop = Some(HttpStartStop {
        start_timestamp: 1,
        stop_timestamp: 2,
        application_id: Some(uuid(APP)),
        ..Default::default()
    });
    e
}

fn log(err: bool, text: &str) -> Envelope {
    let mut e = router(5);
    e.origin = "rep".into();
    e.tags.clear();
    e.log_message = Some(LogMessage {
        message: text.as_bytes().to_vec(),
        message_type: if err { 2 } else { 1 },
        timestamp: 1,
        app_id: Some(APP.into()),
        source_type: Some("APP/PROC/WEB".into()),
        source_instance: Some("0".into()),
    });
    e
}

fn error() -> Envelope {
    let mut e = router(8);
    e.origin = "doppler".into();
    e.tags.clear();
    // A v2 envelope names its source; v1 carries it as a tag.
    e.tags.insert("source_id".into(), "doppler".into());
    e.error = Some(events::Error {
        source: "doppler".into(),
        code: 42,
        message: "lost the connection".into(),
    });
    e
}

/// Everything sent: requests (both sides), a spike, 7 OUT lines of 10
/// bytes and 3 ERR lines of 5, and 4 errors.
fn sent() -> Vec<Envelope> {
    let mut all: Vec<Envelope> = (0..REQUESTS).flat_map(request).collect();
    all.push(spike());
    all.extend((0..7).map(|_| log(false, "0123456789")));
    all.extend((0..3).map(|_| log(true, "oops\n")));
    all.extend((0..4).map(|_| error()));
    all
}

/// Whether a sample is of the series made of events, not the exporter's own.
fn is_relayed(s: &Sample) -> bool {
    ["http_", "log_", "error_"]
        .iter()
        .any(|prefix| s.name.starts_with(prefix))
}

/// The series made of events, without the exporter's own.
fn relayed(parsed: &Exposition) -> Vec<&Sample> {
    parsed.samples.iter().filter(|s| is_relayed(s)).collect()
}

fn sum(parsed: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    parsed.find(name, labels).iter().map(|s| s.value).sum()
}

fn check(parsed: &Exposition) {
    let n = REQUESTS as f64;
    // Each request once: the client sides and the spike are not counted.
    assert_eq!(sum(parsed, "http_total", &[]), n);
    assert_eq!(
        sum(parsed, "http_total", &[("status_code", "503")]),
        n / 4.0
    );
    assert_eq!(sum(parsed, "http_total", &[("method", "POST")]), n / 2.0);
    assert_eq!(sum(parsed, "http_duration_seconds_count", &[]), n);
    assert_eq!(sum(parsed, "http_response_size_bytes_count", &[]), n);
    assert_eq!(sum(parsed, "http_response_size_bytes_sum", &[]), n * 1500.0);
    let total: f64 = (0..REQUESTS).map(|i| DURATIONS[i % 5]).sum();
    assert!((sum(parsed, "http_duration_seconds_sum", &[]) - total).abs() < 1e-6);
    // Buckets: cumulative counts of the durations sent.
    for (le, expected) in [
        ("0.005", 8.0),
        ("0.01", 8.0),
        ("0.025", 16.0),
        ("0.1", 24.0),
        ("0.5", 32.0),
        ("2.5", 40.0),
        ("+Inf", 40.0),
    ] {
        assert_eq!(
            sum(parsed, "http_duration_seconds_bucket", &[("le", le)]),
            expected,
            "le {le}"
        );
    }
    let allowed: BTreeSet<&str> = [
        "app_name",
        "space_name",
        "organization_name",
        "source_id",
        "instance_id",
        "method",
        "status_code",
        "origin",
        "bosh_deployment",
        "bosh_job_name",
        "bosh_job_id",
        "bosh_job_ip",
        "le",
    ]
    .into();
    for s in parsed
        .samples
        .iter()
        .filter(|s| s.name.starts_with("http_"))
    {
        for key in s.labels.keys() {
            assert!(allowed.contains(key.as_str()), "{} has label {key}", s.name);
        }
        assert_eq!(s.labels["source_id"], APP);
        assert_eq!(s.labels["bosh_deployment"], "cf");
        assert_eq!(s.labels["app_name"], "web");
        assert_eq!(
            s.name == "http_total",
            s.labels.contains_key("status_code"),
            "{s:?}"
        );
    }
    let app = [("source_id", APP), ("source_type", "APP/PROC/WEB")];
    let out = [app[0], app[1], ("message_type", "OUT")];
    let err = [app[0], app[1], ("message_type", "ERR")];
    assert_eq!(parsed.value("log_messages_total", &out), Some(7.0));
    assert_eq!(parsed.value("log_bytes_total", &out), Some(70.0));
    assert_eq!(parsed.value("log_messages_total", &err), Some(3.0));
    assert_eq!(parsed.value("log_bytes_total", &err), Some(15.0));
    assert_eq!(
        parsed.value(
            "error_events_total",
            &[("source", "doppler"), ("code", "42")]
        ),
        Some(4.0)
    );
}

fn done(parsed: &Exposition) -> bool {
    sum(parsed, "http_total", &[]) >= REQUESTS as f64
        && sum(parsed, "error_events_total", &[]) >= 4.0
        && sum(parsed, "log_messages_total", &[]) >= 10.0
}

#[tokio::test]
async fn requests_logs_and_errors_from_the_firehose_are_counted_as_sent() {
    let harness = Harness::start_with(Default::default(), Default::default(), |mut config| {
        // Logs widen the subscription.
        config.filters = cf_firehose_exporter::ingest::filter::Filters::new(
            &["HttpStartStop", "LogMessage", "Error"].map(String::from),
            &[],
            &[],
            None,
            None,
        )
        .unwrap();
        config.source.set_filter_type(config.filters.subscription());
        config
    })
    .await;
    for e in sent() {
        harness.send(&e).await;
    }
    let (_, parsed) = harness.scrape_until("everything counted", done).await;
    check(&parsed);
    let before: BTreeMap<_, _> = relayed(&parsed)
        .into_iter()
        .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
        .collect();
    // Again: every counter goes up, none goes down.
    for e in sent() {
        harness.send(&e).await;
    }
    let (_, again) = harness
        .scrape_until("counted twice", |p| {
            sum(p, "http_total", &[]) >= 2.0 * REQUESTS as f64
        })
        .await;
    for s in relayed(&again) {
        let old = before[&(s.name.clone(), s.labels.clone())];
        assert!(s.value >= old, "{} went from {old} to {}", s.name, s.value);
    }
    assert_eq!(sum(&again, "http_total", &[]), 2.0 * REQUESTS as f64);
}

#[tokio::test]
async fn the_rlp_gives_the_same_series_as_the_firehose() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let exporter = common::rlp_exporter_sent(&foundation, |c| c, &sent()).await;
    let parsed = common::eventually("everything counted", || async {
        let body = common::scrape(&exporter).await;
        let parsed = common::exposition::parse(&body).unwrap();
        done(&parsed).then_some(parsed)
    })
    .await;
    check(&parsed);

    let harness = Harness::start_with(Default::default(), Default::default(), |mut config| {
        config.source.set_filter_type(None);
        config
    })
    .await;
    for e in sent() {
        harness.send(&e).await;
    }
    let (_, firehose) = harness.scrape_until("everything counted", done).await;
    let n = parsed.assert_same_as(&firehose, is_relayed);
    // 3 http_total, 2 × 14 duration and 2 × 10 size samples, 4 log, 1 error.
    assert_eq!(n, 56);
}
