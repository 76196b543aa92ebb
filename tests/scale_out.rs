//! Scale-out end to end: three exporter processes share one subscription;
//! the simulator splits the stream between them at random, envelope by
//! envelope, as Doppler does; each process forwards what it gets by
//! remote-write into a real store (Debian's Prometheus with its receiver
//! and an out-of-order window, then Debian's VictoriaMetrics). The store
//! then holds exactly the sequence that was sent: every gauge sample and
//! every counter total at its envelope's time, no duplicate, no gap.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::envelope::events::envelope::EventType;
use cf_firehose_exporter::envelope::{CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use common::prometheus::{Running, free_port, get_json, urlencode};
use prost::Message;
use serde_json::Value;

const PROCESSES: usize = 3;
const GAUGES: usize = 20;
const COUNTERS: usize = 10;
const ROUNDS: usize = 30;
/// Longest the store may take to hold everything.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// Samples of each series by name: (milliseconds, value), in time order.
type Stored = BTreeMap<String, Vec<(i64, f64)>>;

/// The known sequence: `ROUNDS` samples of each series, one second apart,
/// the series' own offset keeping every timestamp distinct; the envelopes
/// in the order sent, and what the store must hold.
fn sequence(base_ms: i64) -> (Vec<Envelope>, Stored) {
    let mut envelopes = Vec::new();
    let mut expected = Stored::new();
    for round in 0..ROUNDS {
        for j in 0..GAUGES + COUNTERS {
            let at_ms = base_ms + round as i64 * 1000 + j as i64;
            let mut envelope = Envelope {
                origin: "scale".into(),
                deployment: Some("cf".into()),
                job: Some("diego-cell".into()),
                index: Some(format!("c-{}", j % 3)),
                ip: Some("10.0.0.5".into()),
                timestamp: Some(at_ms * 1_000_000),
                ..Default::default()
            };
            let (name, value) = if j < GAUGES {
                let value = j as f64 * 1000.0 + round as f64 + 0.25;
                envelope.event_type = EventType::ValueMetric as i32;
                envelope.value_metric = Some(ValueMetric {
                    name: format!("gauge{j}"),
                    value,
                    unit: "count".into(),
                });
                (format!("gauge{j}"), value)
            } else {
                let total = (round as u64 + 1) * (j as u64 + 1) * 7;
                envelope.event_type = EventType::CounterEvent as i32;
                envelope.counter_event = Some(CounterEvent {
                    name: format!("counter{j}"),
                    delta: (j as u64 + 1) * 7,
                    total: Some(total),
                });
                (format!("counter{j}_total"), total as f64)
            };
            expected.entry(name).or_default().push((at_ms, value));
            envelopes.push(envelope);
        }
    }
    (envelopes, expected)
}

/// Where the exporters read.
enum Transport {
    Firehose,
    Rlp,
}

/// Starts the exporter processes on one subscription, each writing to `url`.
async fn exporters(
    foundation: &Foundation,
    transport: &Transport,
    url: &str,
) -> Vec<common::binary::Started> {
    let mut started = Vec::new();
    for shard in 0..PROCESSES {
        let mut command = common::binary::command();
        command.args([
            "--web.listen-address=127.0.0.1:0",
            &format!("--remote-write.url={url}"),
            &format!("--remote-write.shard=exporter-{shard}"),
            "--remote-write.batch-age=100ms",
            "--remote-write.interval=1s",
        ]);
        match transport {
            Transport::Firehose => {
                command.args([
                    format!("--uaa.url={}", foundation.uaa_url()),
                    format!("--uaa.client-id={}", foundation.client.id),
                    format!("--doppler.url={}", foundation.doppler_url()),
                    "--doppler.subscription-id=scale-out".into(),
                ]);
                command.env(
                    "FIREHOSE_EXPORTER_UAA_CLIENT_SECRET",
                    foundation.client.secret.expose(),
                );
            }
            Transport::Rlp => {
                let files = foundation.rlp_client_files().unwrap();
                command.args([
                    format!("--logging.url={}", foundation.rlp_address()),
                    format!("--logging.tls.ca={}", files.ca.unwrap().display()),
                    format!("--logging.tls.cert={}", files.cert.display()),
                    format!("--logging.tls.key={}", files.key.display()),
                    "--metrics.shard_id=scale-out".into(),
                ]);
            }
        }
        started.push(common::binary::start(&mut command).await);
    }
    let connected = match transport {
        Transport::Firehose => {
            foundation
                .traffic_controller
                .wait_for_connections(PROCESSES, common::PATIENCE)
                .await
        }
        Transport::Rlp => {
            foundation
                .rlp
                .wait_for_connections(PROCESSES, common::PATIENCE)
                .await
        }
    };
    assert!(connected, "every exporter subscribed");
    started
}

/// Sends each envelope on its own, so that each goes to one process chosen
/// at random.
async fn send(foundation: &Foundation, transport: &Transport, envelopes: &[Envelope]) {
    for envelope in envelopes {
        let delivered = match transport {
            Transport::Firehose => {
                let frame = Bytes::from(envelope.encode_to_vec());
                foundation
                    .traffic_controller
                    .publish(frame, FrameKind::Metric)
                    .await
            }
            Transport::Rlp => {
                let v2 = cf_firehose_exporter::sim::v2::to_v2(envelope).unwrap();
                foundation.rlp.publish(&[v2]).await
            }
        };
        assert_eq!(delivered, 1, "one process took the envelope");
    }
}

/// The value of `name` summed over the series with `labels`, in `body`.
fn sum(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let parsed = common::exposition::parse(body).unwrap();
    parsed.find(name, labels).iter().map(|s| s.value).sum()
}

/// Each process got part of the stream and forwarded exactly that part:
/// nothing dropped or refused, nothing sent twice.
async fn check_the_split(started: &[common::binary::Started], envelopes: usize) {
    let client = reqwest::Client::new();
    let mut received = Vec::new();
    let mut sent = 0.0;
    for process in started {
        let url = format!("http://{}/metrics", process.address);
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        let got = sum(&body, "cf_firehose_exporter_envelopes_received_total", &[])
            + sum(
                &body,
                "cf_firehose_exporter_v2_envelopes_received_total",
                &[],
            );
        received.push(got);
        sent += sum(
            &body,
            "cf_firehose_exporter_remote_write_samples_total",
            &[("result", "sent")],
        );
        for result in ["dropped", "failed"] {
            assert_eq!(
                sum(
                    &body,
                    "cf_firehose_exporter_remote_write_samples_total",
                    &[("result", result)]
                ),
                0.0,
                "{result} in\n{body}"
            );
        }
    }
    assert!(received.iter().all(|&n| n > 0.0), "{received:?}");
    assert_eq!(
        received.iter().sum::<f64>(),
        envelopes as f64,
        "{received:?}"
    );
    assert_eq!(
        sent, envelopes as f64,
        "samples sent by the processes together"
    );
}

/// Polls `read` until it gives `expected`, for at most [`STORE_PATIENCE`];
/// returns what it read last.
async fn until_stored<F: Future<Output = Stored>>(
    expected: &Stored,
    read: impl Fn() -> F,
) -> Stored {
    let deadline = tokio::time::Instant::now() + STORE_PATIENCE;
    loop {
        let stored = read().await;
        if &stored == expected || tokio::time::Instant::now() > deadline {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where the store and what it was sent differ, for the failure message.
fn differences(expected: &Stored, stored: &Stored) -> String {
    let mut out = Vec::new();
    for (name, samples) in expected {
        match stored.get(name) {
            None => out.push(format!("{name}: missing")),
            Some(got) if got != samples => {
                out.push(format!("{name}: sent {samples:?}\n  stored {got:?}"))
            }
            Some(_) => {}
        }
    }
    for name in stored.keys().filter(|n| !expected.contains_key(*n)) {
        out.push(format!("{name}: never sent"));
    }
    out.join("\n")
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> i64 {
    cf_firehose_exporter::telemetry::unix_now_ms()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cf-firehose-exporter-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every series with origin `scale` Prometheus holds, as raw samples.
async fn stored_in_prometheus(client: &reqwest::Client, base: &str) -> Stored {
    let query = urlencode(r#"{origin="scale"}[3h]"#);
    let time = now_ms() as f64 / 1000.0 + 60.0;
    let url = format!("{base}/api/v1/query?query={query}&time={time}");
    let mut stored = Stored::new();
    let Some(json) = get_json(client, &url).await else {
        return stored;
    };
    for series in json["data"]["result"].as_array().into_iter().flatten() {
        let name = series["metric"]["__name__"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let samples = stored.entry(name).or_default();
        for pair in series["values"].as_array().into_iter().flatten() {
            let at = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
            let value: f64 = pair[1].as_str().unwrap().parse().unwrap();
            samples.push((at, value));
        }
        samples.sort_by_key(|s| s.0);
    }
    stored
}

/// Every series with origin `scale` VictoriaMetrics holds, as exported.
async fn stored_in_victoria(client: &reqwest::Client, base: &str) -> Stored {
    let _ = client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let url = format!(
        "{base}/api/v1/export?match[]={}",
        urlencode(r#"{origin="scale"}"#)
    );
    let mut stored = Stored::new();
    let Ok(response) = client.get(url).send().await else {
        return stored;
    };
    let body = response.text().await.unwrap_or_default();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let series: Value = serde_json::from_str(line).unwrap();
        let name = series["metric"]["__name__"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let samples = stored.entry(name).or_default();
        let values = series["values"].as_array().unwrap();
        let times = series["timestamps"].as_array().unwrap();
        for (value, at) in values.iter().zip(times) {
            samples.push((at.as_i64().unwrap(), value.as_f64().unwrap()));
        }
        samples.sort_by_key(|s| s.0);
    }
    stored
}

/// Each series came to the store under one label set, whichever process
/// sent it, and without a shard label. `series` is the `data` of the
/// store's `/api/v1/series` answer: one label map per series.
fn one_label_set_each(series: &[Value]) {
    let mut names = std::collections::HashSet::new();
    for labels in series {
        assert!(labels.get("exporter_shard").is_none(), "{labels}");
        let name = labels["__name__"].as_str().expect("every series is named");
        names.insert(name.to_owned());
    }
    assert_eq!(names.len(), series.len(), "a series split by label set");
    assert_eq!(names.len(), GAUGES + COUNTERS, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_subscription_write_the_sequence_into_prometheus() {
    let Some(binary) = common::prometheus::binary() else {
        return;
    };
    let dir = temp_dir("scale-out-prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 3h\n",
    )
    .unwrap();
    let (_prometheus, base) = common::prometheus::start_prometheus_with(
        binary,
        &dir,
        &config,
        &["--web.enable-remote-write-receiver"],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{base}/-/ready")).await;

    scale_out_into(&base, Transport::Firehose, || {
        stored_in_prometheus(&client, &base)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_one_shard_write_the_sequence_into_victoria_metrics() {
    let Some(binary) = common::required_tool(
        "victoria-metrics",
        "CF_FIREHOSE_EXPORTER_REQUIRE_VICTORIA_METRICS",
    ) else {
        return;
    };
    let dir = temp_dir("scale-out-victoria");
    let port = free_port();
    let child = std::process::Command::new(binary)
        .arg(format!("-storageDataPath={}", dir.join("data").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=1y")
        .arg("-search.disableCache")
        .arg("-search.latencyOffset=0s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("victoria-metrics starts");
    let _victoria = Running::new(child, dir);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("{base}/health")).await;

    scale_out_into(&base, Transport::Rlp, || stored_in_victoria(&client, &base)).await;
}

/// Three exporters read `transport` on one subscription and write into the
/// store at `base`; the simulator sends the known sequence. The store, as
/// `read` gives it, must then hold exactly the sequence, each series under
/// one label set, and every process must have had its part.
async fn scale_out_into<F: Future<Output = Stored>>(
    base: &str,
    transport: Transport,
    read: impl Fn() -> F,
) {
    let client = reqwest::Client::new();
    let foundation = Foundation::start_local().await.unwrap();
    let started = exporters(&foundation, &transport, &format!("{base}/api/v1/write")).await;
    let (envelopes, expected) = sequence(now_ms() - 10 * 60 * 1000);
    send(&foundation, &transport, &envelopes).await;

    let stored = until_stored(&expected, read).await;
    assert!(stored == expected, "{}", differences(&expected, &stored));
    let query = urlencode(r#"{origin="scale"}"#);
    let series = get_json(&client, &format!("{base}/api/v1/series?match[]={query}"))
        .await
        .unwrap();
    one_label_set_each(series["data"].as_array().unwrap());
    check_the_split(&started, envelopes.len()).await;
}
