//! Histogram series from the store to both text formats: golden bodies,
//! accepted by the strict parser and by promtool, and a histogram that
//! clashes with a gauge of the same name counted like any other conflict.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::exposition::{Exposition, Format};
use cf_firehose_exporter::naming::{MetricKind, SeriesUpdate, Value};
use cf_firehose_exporter::store::{Applied, SeriesStore};
use cf_firehose_exporter::telemetry::Telemetry;

/// client_golang's default buckets.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn update(family: &str, kind: MetricKind, labels: &[(&str, &str)], value: Value) -> SeriesUpdate {
    SeriesUpdate {
        family: family.into(),
        kind,
        original: family.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        buckets: DEFAULT_BUCKETS.to_vec(),
    }
}

/// A store with two histogram families (one with labels in two series,
/// one without labels and with a bucket layout of its own), a counter and
/// a gauge, and what their exposition must say.
fn fixed() -> (Arc<SeriesStore>, Telemetry) {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let now = tokio::time::Instant::now();
    let app = |name| [("app_name", name), ("method", "GET")];
    for (labels, seconds) in [
        (app("web"), 0.003),
        (app("web"), 0.04),
        (app("web"), 0.04),
        (app("web"), 0.7),
        (app("web"), 30.0),
        (app("worker"), 0.2),
    ] {
        let applied = store.apply(
            update(
                "http_duration_seconds",
                MetricKind::Histogram,
                &labels,
                Value::Observe(seconds),
            ),
            now,
        );
        assert_ne!(applied, Applied::Conflict);
    }
    for bytes in [100.0, 2500.0, 1e6] {
        let mut sizes = update(
            "http_response_size_bytes",
            MetricKind::Histogram,
            &[],
            Value::Observe(bytes),
        );
        sizes.buckets = vec![1000.0, 100_000.0];
        store.apply(sizes, now);
    }
    store.apply(
        update("http", MetricKind::Counter, &app("web"), Value::Add(5.0)),
        now,
    );
    store.apply(
        update("numCPUS", MetricKind::Gauge, &[], Value::Set(4.0)),
        now,
    );
    (store, telemetry)
}

/// The relayed families of a body: what comes before the self metrics.
fn relayed(body: &str) -> &str {
    let end = body
        .find("# HELP cf_firehose_exporter_")
        .expect("self metrics present");
    &body[..end]
}

/// Compares `body` with the golden file `name`; with
/// `CF_FIREHOSE_EXPORTER_UPDATE_GOLDEN` set, writes it instead.
fn golden(name: &str, body: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CF_FIREHOSE_EXPORTER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, body).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(body, expected, "{name} differs from the golden file");
}

#[test]
fn histograms_match_the_golden_bodies_in_both_formats() {
    let (store, telemetry) = fixed();
    let exposition = Exposition::new(store, telemetry);
    let text = exposition.encode(Format::PrometheusText);
    golden("histograms.prom", relayed(&text));
    let openmetrics = exposition.encode(Format::OpenMetrics);
    golden("histograms.om", relayed(&openmetrics));
}

#[test]
fn the_strict_parser_accepts_histograms_with_their_values() {
    let (store, telemetry) = fixed();
    let exposition = Exposition::new(store, telemetry);
    let text = exposition.encode(Format::PrometheusText);
    let openmetrics = exposition.encode(Format::OpenMetrics);
    for parsed in [
        common::exposition::parse(&text).expect("text 0.0.4 is valid"),
        common::exposition::parse_openmetrics(&openmetrics).expect("OpenMetrics is valid"),
    ] {
        assert_eq!(parsed.types["http_duration_seconds"], "histogram");
        let web = [("app_name", "web"), ("method", "GET")];
        let bucket = |le| {
            let mut labels = web.to_vec();
            labels.push(("le", le));
            parsed.value("http_duration_seconds_bucket", &labels)
        };
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(3.0));
        assert_eq!(bucket("1.0"), Some(4.0));
        assert_eq!(bucket("10.0"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        assert_eq!(parsed.value("http_duration_seconds_count", &web), Some(5.0));
        let sum = parsed.value("http_duration_seconds_sum", &web).unwrap();
        assert!((sum - 30.783).abs() < 1e-9, "{sum}");
        assert_eq!(
            parsed
                .find("http_duration_seconds_bucket", &[("app_name", "worker")])
                .len(),
            12
        );
        assert_eq!(
            parsed.value("http_response_size_bytes_bucket", &[("le", "100000.0")]),
            Some(2.0)
        );
        assert_eq!(
            parsed.value("http_response_size_bytes_count", &[]),
            Some(3.0)
        );
    }
}

#[test]
fn promtool_accepts_histograms_in_both_formats() {
    let (store, telemetry) = fixed();
    let exposition = Exposition::new(store, telemetry);
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let body = exposition.encode(format);
        let Some((code, report)) = common::promtool_check_metrics(&body) else {
            return;
        };
        // 0: clean; 3: lint problems only (the relayed names' conventions).
        // promtool reads both bodies with its 0.0.4 parser, to which
        // OpenMetrics' `# EOF` is a comment: a bad `le` or a histogram
        // sample without its suffix fails either with 1.
        assert!(
            matches!(code, Some(0) | Some(3)),
            "promtool refused {format:?}:\n{report}"
        );
        assert!(
            !report.contains("histogram"),
            "promtool finds fault with a histogram in {format:?}:\n{report}"
        );
    }
}

#[test]
fn a_histogram_and_a_gauge_of_one_name_are_a_counted_conflict() {
    let (store, telemetry) = fixed();
    let gauge = update(
        "http_duration_seconds",
        MetricKind::Gauge,
        &[],
        Value::Set(1.0),
    );
    assert_eq!(
        store.apply(gauge, tokio::time::Instant::now()),
        Applied::Conflict
    );
    let sum = update(
        "http_duration_seconds_sum",
        MetricKind::Gauge,
        &[],
        Value::Set(1.0),
    );
    assert_eq!(
        store.apply(sum, tokio::time::Instant::now()),
        Applied::Conflict
    );
    let exposition = Exposition::new(store, telemetry);
    let parsed = common::exposition::parse(&exposition.encode(Format::PrometheusText)).unwrap();
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_series_rejected_total",
            &[("reason", "conflict")]
        ),
        Some(2.0)
    );
    assert_eq!(parsed.types["http_duration_seconds"], "histogram");
    assert!(parsed.find("http_duration_seconds_sum", &[]).len() == 2);
}
