//! Expiry through the real ingestion path and exposition, with paused time:
//! a series not updated within the expiration disappears from /metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::exposition::Exposition;
use cf_firehose_exporter::ingest::Ingest;
use cf_firehose_exporter::naming::native::NativeScheme;
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;
use common::{COUNTER_EVENT, VALUE_METRIC, hex};

#[tokio::test(start_paused = true)]
async fn a_series_not_updated_within_the_expiration_disappears() {
    let telemetry = Telemetry::new();
    let store = Arc::new(SeriesStore::new(
        Duration::from_secs(600),
        telemetry.clone(),
    ));
    let exposition = Exposition::new(store.clone(), telemetry.clone());
    let mut ingest = Ingest::new(NativeScheme::default(), store.clone(), telemetry.clone());
    let sweeper = tokio::spawn(store.clone().run_sweeper());

    ingest.batch(&[hex(VALUE_METRIC), hex(COUNTER_EVENT)]);
    let names = |text: &str| -> Vec<String> {
        common::exposition::parse(text)
            .unwrap()
            .samples
            .into_iter()
            .map(|s| s.name)
            .filter(|n| !n.starts_with("cf_firehose_exporter_"))
            .collect()
    };
    assert_eq!(
        names(&exposition.encode_text()),
        vec!["numCPUS", "requests_total"]
    );

    // Nine minutes on, the counter is updated again; the gauge is not.
    tokio::time::sleep(Duration::from_secs(540)).await;
    ingest.batch(&[hex(COUNTER_EVENT)]);
    // Two more minutes: the gauge is 11 minutes old, the counter 2.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let text = exposition.encode_text();
    assert_eq!(names(&text), vec!["requests_total"]);
    let parsed = common::exposition::parse(&text).unwrap();
    assert_eq!(
        parsed.value("cf_firehose_exporter_series_expired_total", &[]),
        Some(1.0)
    );
    assert_eq!(parsed.value("cf_firehose_exporter_series", &[]), Some(1.0));

    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(names(&exposition.encode_text()).is_empty());
    assert!(store.is_empty());
    sweeper.abort();
}
