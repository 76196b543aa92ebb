//! Shared pieces of the integration tests: a simulated foundation and an
//! exporter reading it, all on loopback ports chosen by the system.
#![allow(dead_code)]

pub mod binary;
pub mod exposition;
pub mod pki;
#[allow(dead_code)]
pub mod prometheus;
pub mod receiver;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::app::{Exporter, ExporterConfig};
use cf_firehose_exporter::cli::SourceArgs;
use cf_firehose_exporter::envelope::Envelope;
use cf_firehose_exporter::envelope::v2::{self, proto};
use cf_firehose_exporter::sim::traffic_controller::{FrameKind, TcSettings};
use cf_firehose_exporter::sim::{Foundation, SimClient};
use prost::Message;

pub use exposition::Exposition;

/// Longest any test waits for a condition.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A simulated foundation and an exporter connected to it.
pub struct Harness {
    pub foundation: Foundation,
    pub exporter: Exporter,
    http: reqwest::Client,
}

/// Exporter settings pointing at `foundation`, serving on a free loopback port.
pub fn config_for(foundation: &Foundation, expiration: Duration) -> ExporterConfig {
    let mut source = SourceArgs::new(
        foundation.uaa_url(),
        foundation.client.id.clone(),
        foundation.client.secret.clone(),
        foundation.doppler_url(),
    );
    source.min_retry_delay = Duration::from_millis(50);
    source.max_retry_delay = Duration::from_millis(500);
    let source = source.resolve().expect("valid source settings");
    ExporterConfig {
        source,
        expiration,
        environment: None,
        filters: Default::default(),
        drop_tags: Vec::new(),
        http_buckets: cf_firehose_exporter::naming::DEFAULT_HTTP_BUCKETS.to_vec(),
        naming: Default::default(),
        max_series: 1_000_000,
        series_limits: Default::default(),
        listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        telemetry_path: "/metrics".into(),
        openmetrics: true,
        web: Default::default(),
        http_limits: Default::default(),
        forwarding: None,
        expose_series: true,
    }
}

/// Starts an exporter on the RLP of `foundation` that also asks for logs,
/// with `tweak` applied to its settings, and sends it the v2 form of
/// `envelopes` once it has subscribed.
#[allow(dead_code)]
pub async fn rlp_exporter_sent(
    foundation: &Foundation,
    tweak: impl FnOnce(ExporterConfig) -> ExporterConfig,
    envelopes: &[Envelope],
) -> Exporter {
    let mut config = tweak(rlp_config(foundation));
    if let cf_firehose_exporter::source::Endpoint::Rlp(rlp) = &mut config.source.endpoint {
        rlp.logs = true;
    }
    let exporter = Exporter::start(config).await.expect("exporter starts");
    assert!(
        foundation.rlp.wait_for_connections(1, PATIENCE).await,
        "the exporter never subscribed"
    );
    let batch: Vec<_> = envelopes
        .iter()
        .filter_map(cf_firehose_exporter::sim::v2::to_v2)
        .collect();
    assert_eq!(batch.len(), envelopes.len(), "every envelope has a v2 form");
    assert_eq!(foundation.rlp.publish(&batch).await, 1);
    exporter
}

/// Exporter settings reading the RLP of `foundation` with its client
/// certificate, on the shard `test`.
pub fn rlp_config(foundation: &Foundation) -> ExporterConfig {
    use cf_firehose_exporter::source::{Endpoint, RlpEndpoint};
    let mut config = config_for(foundation, Duration::from_secs(600));
    config.source.uaa = None;
    config.source.endpoint = Endpoint::Rlp(RlpEndpoint {
        address: foundation.rlp_address(),
        server_name: "reverselogproxy".into(),
        tls: foundation
            .rlp_client_files()
            .expect("client certificate files"),
        shard_id: "test".into(),
        logs: false,
    });
    config
}

impl Harness {
    /// Starts both and waits for the exporter's connection.
    pub async fn start() -> Self {
        Self::start_with(SimClient::default(), TcSettings::default(), |c| c).await
    }

    /// Starts with a given client, keepalive and a tweak of the exporter's settings.
    pub async fn start_with(
        client: SimClient,
        tc: TcSettings,
        tweak: impl FnOnce(ExporterConfig) -> ExporterConfig,
    ) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let foundation = Foundation::start(any, any, client, tc)
            .await
            .expect("simulated foundation");
        let config = tweak(config_for(&foundation, Duration::from_secs(600)));
        let exporter = Exporter::start(config).await.expect("exporter starts");
        let harness = Self {
            foundation,
            exporter,
            http: reqwest::Client::new(),
        };
        assert!(
            harness
                .foundation
                .traffic_controller
                .wait_for_connections(1, PATIENCE)
                .await,
            "the exporter never connected"
        );
        harness
    }

    /// Sends one envelope as one binary frame.
    pub async fn send(&self, envelope: &Envelope) {
        self.send_frame(Bytes::from(envelope.encode_to_vec())).await;
    }

    /// Sends raw bytes as one binary frame.
    pub async fn send_frame(&self, frame: Bytes) {
        let delivered = self
            .foundation
            .traffic_controller
            .publish(frame, FrameKind::Metric)
            .await;
        assert_eq!(delivered, 1, "no connection took the frame");
    }

    /// GETs a path of the exporter.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("http://{}{path}", self.exporter.address);
        self.http.get(url).send().await.expect("exporter answers")
    }

    /// Scrapes /metrics and checks the body strictly.
    pub async fn scrape(&self) -> (String, Exposition) {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.expect("body");
        let parsed =
            exposition::parse(&body).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{body}"));
        (body, parsed)
    }

    /// Scrapes until `done` holds, for at most [`PATIENCE`], and returns a
    /// scrape taken after it held. A scrape copies the store shard by
    /// shard, so one body can show a later update without an earlier one in
    /// a shard it had already copied; a scrape that starts afterwards shows
    /// everything stored before the update that made `done` hold.
    pub async fn scrape_until(
        &self,
        what: &str,
        done: impl Fn(&Exposition) -> bool,
    ) -> (String, Exposition) {
        eventually(what, || async {
            let (_, first) = self.scrape().await;
            if !done(&first) {
                return None;
            }
            let (body, parsed) = self.scrape().await;
            done(&parsed).then_some((body, parsed))
        })
        .await
    }
}

/// The command `name` when it runs, else `None` after saying the test is
/// skipped; panics instead when the environment variable `require` is set
/// (CI sets it, so that a missing tool cannot turn into a silent pass).
pub fn required_tool(name: &'static str, require: &str) -> Option<&'static str> {
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(name);
    }
    if std::env::var_os(require).is_some() {
        panic!("{name} is required here ({require} is set) but was not found");
    }
    let package = if name == "promtool" {
        "prometheus"
    } else {
        name
    };
    eprintln!("SKIPPED: {name} not found; install Debian's `{package}` package to run this test");
    None
}

/// What `promtool check metrics` makes of `body`: its exit code and its
/// report (stdout and stderr). `None` where promtool is not installed and
/// not required.
#[allow(dead_code)]
pub fn promtool_check_metrics(body: &str) -> Option<(Option<i32>, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool = required_tool("promtool", "CF_FIREHOSE_EXPORTER_REQUIRE_PROMTOOL")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.code(), report))
}

/// Polls `check` every 20 ms until it yields, for at most [`PATIENCE`].
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The body of one scrape of `exporter`'s `/metrics`.
pub async fn scrape(exporter: &Exporter) -> String {
    let url = format!("http://{}/metrics", exporter.address);
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The exporter's landing page once it mentions `needle`.
pub async fn landing_page_with(exporter: &Exporter, needle: &str) -> String {
    let landing = format!("http://{}/", exporter.address);
    eventually(&format!("{needle:?} on the landing page"), || async {
        let page = reqwest::get(&landing).await.ok()?.text().await.ok()?;
        page.contains(needle).then_some(page)
    })
    .await
}

/// The value of the one series of `name_total`, if any.
pub fn total(body: &str, name: &str) -> Option<f64> {
    let parsed = exposition::parse(body).ok()?;
    parsed.value(&format!("{name}_total"), &[])
}

/// A v2 counter of gorouter named `name` at `total`.
pub fn v2_counter(name: &str, total: u64) -> proto::Envelope {
    proto::Envelope {
        source_id: "gorouter".into(),
        tags: [
            ("origin", "gorouter"),
            ("deployment", "cf"),
            ("job", "router"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        message: Some(v2::Message::Counter(proto::Counter {
            name: name.into(),
            delta: 1,
            total,
        })),
        ..Default::default()
    }
}

/// The protocol brief's test vectors (§1.11), as the unit tests use them.
#[allow(unused_imports)]
pub use cf_firehose_exporter::envelope::vectors::{CONTAINER_METRIC, COUNTER_EVENT, VALUE_METRIC};

/// Decodes a hex test vector.
pub fn hex(s: &str) -> Bytes {
    cf_firehose_exporter::envelope::vectors::bytes(s).into()
}
