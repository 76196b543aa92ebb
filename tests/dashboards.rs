//! The dashboards and rules against a real Prometheus: the simulated
//! foundation feeds the exporter, Debian's Prometheus scrapes it with every
//! rule file of `alerts/` loaded, and every query of every dashboard panel,
//! every recording rule and every alert expression is asked of it. A query
//! that returns nothing fails with its dashboard and panel. Breaking the
//! stream sends the "not streaming" alert pending. The dashboards' structure
//! is checked without Prometheus.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cf_firehose_exporter::cli::CommonArgs;
use cf_firehose_exporter::envelope::events::{Envelope, LogMessage};
use cf_firehose_exporter::sim::args::WorkloadArgs;
use cf_firehose_exporter::sim::demo::{Demo, start_demo};
use cf_firehose_exporter::sim::faults::Fault;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use common::prometheus::{get_json, start_prometheus, targets_up, urlencode};
use prost::Message;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DASHBOARDS: [&str; 3] = [
    "cf-platform-kpis.json",
    "cf-apps.json",
    "cf-firehose-exporter.json",
];
/// Grafana's own variables, which every dashboard may use.
const BUILT_IN: [&str; 4] = ["__rate_interval", "__interval", "__range", "__name"];

fn dashboard(name: &str) -> Value {
    let path = Path::new(ROOT).join("dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("alerts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    files.sort();
    files
}

/// The variables `text` uses: `$name` and `${name}`.
fn variables_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let braced = bytes.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            // `$1` in a label_replace is a group, not a variable.
            if end > start && !bytes[start].is_ascii_digit() {
                found.insert(text[start..end].to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// What is wrong with a dashboard's structure, one line each.
fn problems(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    if schema < 36 {
        out.push(format!("schemaVersion {schema} is older than 36"));
    }
    let variables = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let defined: BTreeSet<String> = variables
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    match variables.first() {
        Some(v)
            if v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus" => {}
        _ => out.push("the first variable is not the Prometheus data source `datasource`".into()),
    }
    let from_variable = |ds: &Value| ds["uid"] == "${datasource}";
    let mut used = BTreeSet::new();
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or("?");
        if !from_variable(&v["datasource"]) {
            out.push(format!("variable {name} does not read $datasource"));
        }
        let query = v["query"]["query"].as_str().unwrap_or("");
        if !query.starts_with("label_values(") {
            out.push(format!(
                "variable {name} is not a label_values query: {query}"
            ));
        }
        used.extend(variables_in(query));
    }
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().cloned().unwrap_or_default() {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        if !ids.insert(p["id"].as_u64().unwrap_or(0)) {
            out.push(format!("panel id {} of {title} is not unique", p["id"]));
        }
        if p["type"] == "row" {
            continue;
        }
        if !from_variable(&p["datasource"]) {
            out.push(format!(
                "{title}: the panel's data source is not $datasource"
            ));
        }
        if p["description"].as_str().unwrap_or("").trim().is_empty() {
            out.push(format!("{title}: no description"));
        }
        let defaults = &p["fieldConfig"]["defaults"];
        if defaults["unit"].as_str().unwrap_or("").is_empty() {
            out.push(format!("{title}: no unit"));
        }
        if defaults["thresholds"]["steps"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            out.push(format!("{title}: no thresholds"));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            out.push(format!("{title}: no query"));
        }
        for t in targets {
            if !from_variable(&t["datasource"]) {
                out.push(format!("{title}: a query's data source is not $datasource"));
            }
            used.extend(variables_in(t["expr"].as_str().unwrap_or("")));
        }
    }
    for name in used {
        if !defined.contains(&name) && !BUILT_IN.contains(&name.as_str()) {
            out.push(format!("${name} is used but not defined"));
        }
    }
    out
}

#[test]
fn every_dashboard_is_well_formed_and_as_generated() {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        assert_eq!(problems(&d), Vec::<String>::new(), "{name}");
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{name}: uid taken"
        );
    }
    // The committed JSON is what the generator writes.
    let generator = Path::new(ROOT).join("dashboards/generate.py");
    let output = std::process::Command::new("python3")
        .arg(&generator)
        .arg("--check")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_structure_check_finds_what_is_wrong() {
    let mut d = dashboard("cf-apps.json");
    let panels = d["panels"].as_array_mut().unwrap();
    let (first, second) = (panels[1]["id"].clone(), 2);
    panels[2]["id"] = first;
    panels[1]["datasource"] = serde_json::json!({"type": "prometheus", "uid": "prom-1"});
    panels[1]["targets"][0]["expr"] = "cpu{app_name=~\"$application\"}".into();
    panels[second]["description"] = "".into();
    d["schemaVersion"] = 27.into();
    let found = problems(&d);
    for expected in [
        "schemaVersion 27 is older than 36",
        "is not unique",
        "the panel's data source is not $datasource",
        "$application is used but not defined",
        "no description",
    ] {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected} not in {found:#?}"
        );
    }
}

/// Log lines of an app the workload runs, with its tags, as Diego sends them.
fn app_log(tags: &BTreeMap<String, String>, error: bool) -> Envelope {
    let mut e = Envelope {
        origin: "rep".into(),
        event_type: 5,
        deployment: Some("cf".into()),
        job: Some("diego-cell".into()),
        log_message: Some(LogMessage {
            message: b"GET /healthz 200".to_vec(),
            message_type: if error { 2 } else { 1 },
            timestamp: 1,
            app_id: tags.get("source_id").cloned(),
            source_type: Some("APP/PROC/WEB".into()),
            source_instance: Some("0".into()),
        }),
        ..Default::default()
    };
    for (key, value) in tags {
        e.tags.insert(key.clone(), value.clone());
    }
    e
}

async fn demo() -> Demo {
    // A store for remote-write, so that its self metrics, which its panels
    // and alerts read, have data.
    let receiver = common::receiver::Receiver::start_discarding().await;
    let mut common = CommonArgs {
        listen_address: "127.0.0.1:0".parse().unwrap(),
        filter_events: [
            "ValueMetric",
            "CounterEvent",
            "ContainerMetric",
            "HttpStartStop",
            "LogMessage",
            "Error",
        ]
        .map(String::from)
        .to_vec(),
        ..CommonArgs::default()
    };
    common.remote_write.rw_urls = vec![receiver.url().to_string()];
    let workload = WorkloadArgs {
        rate: 5000,
        cells: 3,
        apps: 10,
        seed: 3,
    };
    start_demo(&common, &workload, &Default::default(), Default::default())
        .await
        .expect("demo starts")
}

/// Prometheus scraping `target` every second, evaluating every rule file
/// every second.
fn prometheus_for(binary: &str, target: &str, name: &str) -> (common::prometheus::Running, String) {
    let dir = std::env::temp_dir().join(format!(
        "cf-firehose-exporter-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let rules: String = rule_files()
        .iter()
        .map(|f| format!("  - '{}'\n", f.display()))
        .collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{rules}\
             scrape_configs:\n\
             \x20 - job_name: cf-firehose-exporter\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    start_prometheus(binary, &dir, &config)
}

/// The result of an instant query: its samples, or the error Prometheus gave.
async fn instant(client: &reqwest::Client, base: &str, promql: &str) -> Result<Vec<Value>, String> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(promql));
    let json = get_json(client, &url)
        .await
        .ok_or_else(|| "no answer".to_owned())?;
    if json["status"] != "success" {
        return Err(format!("{}: {}", json["errorType"], json["error"]));
    }
    Ok(json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Asks `promql` until it returns samples, for at most `patience`.
async fn samples(
    client: &reqwest::Client,
    base: &str,
    promql: &str,
    patience: Duration,
) -> Result<Vec<Value>, String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let result = instant(client, base, promql).await?;
        if !result.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(result);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The metric names a PromQL expression reads: the identifiers that are
/// neither functions, keywords, label names nor durations.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 24] = [
        // Those that a list of label names follows, first.
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        // Aggregations, which may stand before `by (...)` rather than `(`.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    let mut names = BTreeSet::new();
    let (bytes, mut i, mut braces, mut parens_after_grouping) = (expr.as_bytes(), 0, 0, Vec::new());
    let mut grouping = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'{' => braces += 1,
            b'}' => braces -= 1,
            b'"' => {
                // Skip a string.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' => {
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            b'(' => parens_after_grouping.push(std::mem::take(&mut grouping)),
            b')' => {
                parens_after_grouping.pop();
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().chars().next();
                let in_label_list = parens_after_grouping.last() == Some(&true);
                // The first six keywords take a list of label names.
                if KEYWORDS[..6].contains(&word) {
                    grouping = true;
                } else if braces == 0
                    && !in_label_list
                    && next != Some('(')
                    && !KEYWORDS.contains(&word)
                {
                    names.insert(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_found_in_expressions() {
    let found = metrics_in(
        "sum by (bosh_deployment) (rate(dropped_total{origin=\"loggregator.doppler\"}[5m])) \
         / on(x) group_left(y) bosh_deployment:cf_router_5xx:ratio_rate5m > bool 0.01 or on() vector(0)",
    );
    assert_eq!(
        found,
        [
            "bosh_deployment:cf_router_5xx:ratio_rate5m",
            "dropped_total"
        ]
        .map(String::from)
        .into()
    );
}

/// The demo foundation and exporter, scraped by a real Prometheus with every
/// rule file loaded; `None` where Prometheus is not installed.
struct Observed {
    demo: Demo,
    _prometheus: common::prometheus::Running,
    base: String,
    client: reqwest::Client,
}

async fn observed(name: &str) -> Option<Observed> {
    let binary = common::prometheus::binary()?;
    let demo = demo().await;
    let exporter = demo.exporter.address.to_string();
    let (prometheus, base) = prometheus_for(binary, &exporter, name);
    let client = reqwest::Client::new();
    targets_up(&client, &base, 1).await;
    Some(Observed {
        demo,
        _prometheus: prometheus,
        base,
        client,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_rule_and_alert_returns_data_from_a_real_prometheus() {
    let Some(observed) = observed("dashboards").await else {
        return;
    };
    let (demo, base, client) = (&observed.demo, &observed.base, &observed.client);
    let foundation = demo.simulation.foundation.clone();
    // Logs of every app of the workload, with the tags of its container
    // metrics, twice a second for as long as the test runs.
    let address = demo.exporter.address;
    let logging = tokio::spawn(async move {
        let url = format!("http://{address}/metrics");
        let keep = [
            "source_id",
            "app_name",
            "space_name",
            "organization_name",
            "instance_id",
        ];
        for i in 0u64.. {
            let body = match reqwest::get(&url).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let apps: BTreeSet<BTreeMap<String, String>> = common::exposition::parse(&body)
                .map(|parsed| {
                    parsed
                        .find("cpu", &[("origin", "rep")])
                        .into_iter()
                        .map(|s| {
                            s.labels
                                .iter()
                                .filter(|(k, _)| keep.contains(&k.as_str()))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            for tags in &apps {
                let frame = app_log(tags, i % 3 == 0).encode_to_vec();
                foundation
                    .traffic_controller
                    .publish(frame.into(), FrameKind::Log)
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let patience = Duration::from_secs(30);

    let mut failures = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        let title = d["title"].as_str().unwrap().to_owned();
        // Each variable takes the first value its query finds, in order.
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let substitute = |text: &str, values: &BTreeMap<String, String>| {
            let mut text = text
                .replace("$__rate_interval", "1m")
                .replace("${datasource}", "prometheus");
            for (k, v) in values.iter().rev() {
                text = text
                    .replace(&format!("${{{k}}}"), v)
                    .replace(&format!("${k}"), v);
            }
            text
        };
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let query = substitute(v["query"]["query"].as_str().unwrap(), &values);
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap();
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let found = samples(
                client,
                base,
                &format!("group by ({}) ({selector})", label.trim()),
                patience,
            )
            .await
            .unwrap_or_default();
            let mut options: Vec<String> = found
                .iter()
                .filter_map(|s| s["metric"][label.trim()].as_str().map(str::to_owned))
                .collect();
            options.sort();
            let Some(first) = options.into_iter().next() else {
                failures.push(format!(
                    "{title}: variable {} has no values ({query})",
                    v["name"]
                ));
                continue;
            };
            // An exact value, regex-escaped for =~.
            values.insert(v["name"].as_str().unwrap().to_owned(), regex_escape(&first));
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = substitute(t["expr"].as_str().unwrap(), &values);
                match samples(client, base, &expr, patience).await {
                    Ok(found) if !found.is_empty() => {}
                    Ok(_) => failures.push(format!(
                        "{title} / {}: `{expr}` returned nothing",
                        p["title"]
                    )),
                    Err(error) => failures.push(format!(
                        "{title} / {}: `{expr}` failed: {error}",
                        p["title"]
                    )),
                }
            }
        }
    }

    // Every rule, as Prometheus evaluates it.
    let rules = get_json(client, &format!("{base}/api/v1/rules"))
        .await
        .unwrap();
    let mut counted = (0, 0);
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let (name, query) = (
                rule["name"].as_str().unwrap(),
                rule["query"].as_str().unwrap(),
            );
            if let Some(error) = rule["lastError"].as_str().filter(|e| !e.is_empty()) {
                failures.push(format!("rule {name}: {error}"));
            }
            if rule["type"] == "recording" {
                counted.0 += 1;
                match samples(client, base, name, patience).await {
                    Ok(found) if !found.is_empty() => {}
                    _ => failures.push(format!("recording rule {name} (`{query}`) has no data")),
                }
            } else {
                counted.1 += 1;
                if let Err(error) = instant(client, base, query).await {
                    failures.push(format!("alert {name}: `{query}` failed: {error}"));
                }
                for metric in metrics_in(query) {
                    let found = samples(client, base, &format!("count({metric})"), patience).await;
                    if found.as_ref().is_ok_and(|f| f.is_empty()) || found.is_err() {
                        failures.push(format!("alert {name} reads {metric}, which has no data"));
                    }
                }
            }
        }
    }
    logging.abort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        counted.0 >= 60 && counted.1 >= 14,
        "{counted:?} rules evaluated"
    );
}

fn regex_escape(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            // The regex's backslash, written twice inside a PromQL string.
            let special = ".+*?()|[]{}^$\\".contains(c);
            let escape: &[char] = if special { &['\\', '\\'] } else { &[] };
            escape.iter().copied().chain([c])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_sends_the_not_streaming_alert_pending() {
    let Some(observed) = observed("not-streaming").await else {
        return;
    };
    let (demo, base, client) = (&observed.demo, &observed.base, &observed.client);
    let alert = |state: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let json = get_json(&client, &format!("{base}/api/v1/alerts")).await?;
            json["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "CFFirehoseExporterNotStreaming"
                        && a["state"] == state
                })
                .then_some(())
        }
    };
    // Streaming: up is 1 and the alert is quiet.
    let up = samples(
        client,
        base,
        "cf_firehose_exporter_up == 1",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(alert("pending").await.is_none() && alert("firing").await.is_none());
    // The Traffic Controller answers 503 and cuts the stream.
    demo.simulation.foundation.inject(Fault::Unavailable).await;
    common::eventually("the not-streaming alert pending", || alert("pending")).await;
}
