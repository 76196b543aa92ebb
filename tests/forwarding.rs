//! Remote-write from ingestion, over loopback: every value an envelope sets
//! goes out as a sample at the envelope's own time, under the labels
//! `/metrics` shows; what the exporter counts itself goes out at an
//! interval with its shard label; `--web.disable-exposition` leaves only the
//! self metrics on `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cf_firehose_exporter::app::ExporterConfig;
use cf_firehose_exporter::envelope::events::envelope::EventType;
use cf_firehose_exporter::envelope::{CounterEvent, Envelope, ValueMetric};
use cf_firehose_exporter::exposition::remote_write::{EndpointConfig, ForwardConfig, ShardLabel};
use common::receiver::{Received, Receiver};
use common::{Harness, eventually};

/// 2023-11-14T22:13:20Z, in nanoseconds.
const T0: i64 = 1_700_000_000_000_000_000;

fn base(event_type: EventType, timestamp: Option<i64>) -> Envelope {
    Envelope {
        origin: "rep".into(),
        event_type: event_type as i32,
        deployment: Some("cf".into()),
        job: Some("diego-cell".into()),
        index: Some("c-0".into()),
        ip: Some("10.0.0.5".into()),
        timestamp,
        ..Default::default()
    }
}

fn gauge(name: &str, value: f64, timestamp: Option<i64>) -> Envelope {
    Envelope {
        value_metric: Some(ValueMetric {
            name: name.into(),
            value,
            unit: "MiB".into(),
        }),
        ..base(EventType::ValueMetric, timestamp)
    }
}

fn counter(name: &str, delta: u64, total: Option<u64>, timestamp: Option<i64>) -> Envelope {
    Envelope {
        counter_event: Some(CounterEvent {
            name: name.into(),
            delta,
            total,
        }),
        ..base(EventType::CounterEvent, timestamp)
    }
}

fn forwarding_to(receiver: &Receiver) -> impl FnOnce(ExporterConfig) -> ExporterConfig {
    let url = receiver.url();
    move |mut config| {
        let mut endpoint = EndpointConfig::new(url);
        endpoint.batch_age = Duration::from_millis(50);
        endpoint.external_labels = vec![("foundation".to_string(), "test".to_string())].into();
        config.forwarding = Some(ForwardConfig {
            endpoints: vec![endpoint],
            shard: ShardLabel {
                name: "exporter_shard".into(),
                value: "a".into(),
            },
            interval: Duration::from_millis(200),
        });
        config
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn values_at(samples: &[Received]) -> Vec<(i64, f64)> {
    samples.iter().map(|s| (s.timestamp_ms, s.value)).collect()
}

#[tokio::test]
async fn every_value_set_goes_out_at_its_envelopes_time_and_the_aggregates_with_the_shard() {
    let receiver = Receiver::start().await;
    let h = Harness::start_with(
        Default::default(),
        Default::default(),
        forwarding_to(&receiver),
    )
    .await;
    // The same gauge five times: the first is translated, the rest take
    // the remembered path.
    for i in 0..5 {
        h.send(&gauge(
            "CapacityRemainingMemory",
            i as f64,
            Some(T0 + i * 1_000_000_000),
        ))
        .await;
    }
    for (i, total) in [10, 20, 30].into_iter().enumerate() {
        let at = T0 + i as i64 * 1_000_000_000 + 500_000_000;
        h.send(&counter("requests", 1, Some(total), Some(at))).await;
    }
    // Deltas alone: this exporter's own sum.
    for _ in 0..3 {
        h.send(&counter("dropped", 2, None, Some(T0))).await;
    }
    let before = cf_firehose_exporter::telemetry::unix_now_ms();
    h.send(&gauge("NoTime", 1.0, None)).await;
    // A day ahead of this host's clock: sent at its arrival instead.
    let ahead = (before + 86_400_000) * 1_000_000;
    h.send(&gauge("Ahead", 2.0, Some(ahead))).await;

    let done = |r: &Receiver| {
        r.named("CapacityRemainingMemory").len() == 5
            && r.named("requests_total").len() == 3
            && !r.named("dropped_total").is_empty()
            && r.named("Ahead").len() == 1
            && r.named("NoTime").len() == 1
    };
    eventually("the samples at the receiver", || async {
        done(&receiver).then_some(())
    })
    .await;
    let after = cf_firehose_exporter::telemetry::unix_now_ms();

    let gauges = receiver.named("CapacityRemainingMemory");
    assert_eq!(
        values_at(&gauges),
        (0..5)
            .map(|i| (T0 / 1_000_000 + i * 1000, i as f64))
            .collect::<Vec<_>>()
    );
    let series = labels(&[
        ("__name__", "CapacityRemainingMemory"),
        ("bosh_deployment", "cf"),
        ("bosh_job_id", "c-0"),
        ("bosh_job_ip", "10.0.0.5"),
        ("bosh_job_name", "diego-cell"),
        ("foundation", "test"),
        ("origin", "rep"),
        ("unit", "MiB"),
    ]);
    assert!(gauges.iter().all(|s| s.labels == series), "{gauges:?}");
    // The labels are those /metrics shows, with the external ones.
    let (_, scraped) = h.scrape().await;
    let shown = scraped.find("CapacityRemainingMemory", &[]);
    assert_eq!(shown.len(), 1);
    let mut expected = shown[0].labels.clone();
    expected.insert("__name__".into(), "CapacityRemainingMemory".into());
    expected.insert("foundation".into(), "test".into());
    assert_eq!(expected, series);

    assert_eq!(
        values_at(&receiver.named("requests_total")),
        [
            (T0 / 1_000_000 + 500, 10.0),
            (T0 / 1_000_000 + 1500, 20.0),
            (T0 / 1_000_000 + 2500, 30.0)
        ]
    );
    let ahead = &receiver.named("Ahead")[0];
    let no_time = &receiver.named("NoTime")[0];
    for sample in [ahead, no_time] {
        assert!(
            (before..=after).contains(&sample.timestamp_ms),
            "{sample:?} not between {before} and {after}"
        );
    }

    // What the envelopes set carries no shard; the aggregates all do.
    let samples = receiver.samples();
    let (aggregates, relayed): (Vec<&Received>, Vec<&Received>) = samples
        .iter()
        .partition(|s| s.labels.contains_key("exporter_shard"));
    assert_eq!(relayed.len(), 5 + 3 + 2);
    assert!(aggregates.iter().all(|s| s.labels["exporter_shard"] == "a"));
    let dropped = eventually("the whole delta sum", || async {
        let last = receiver.named("dropped_total").pop()?;
        (last.value == 6.0).then_some(last)
    })
    .await;
    assert_eq!(dropped.labels["foundation"], "test");
    // The aggregates hold none of the series the envelopes set.
    assert!(
        aggregates
            .iter()
            .all(|s| !["CapacityRemainingMemory", "requests_total"].contains(&s.name())),
        "{aggregates:?}"
    );

    let (body, parsed) = h.scrape().await;
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_remote_write_future_timestamps_total",
            &[]
        ),
        Some(1.0),
        "{body}"
    );
    let sent = parsed
        .value(
            "cf_firehose_exporter_remote_write_samples_total",
            &[("result", "sent")],
        )
        .unwrap();
    assert!(sent >= 10.0, "{sent}");
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_remote_write_samples_total",
            &[("result", "dropped")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn without_exposition_metrics_holds_only_the_exporters_own() {
    let receiver = Receiver::start().await;
    let forwarding = forwarding_to(&receiver);
    let h = Harness::start_with(Default::default(), Default::default(), move |c| {
        let mut c = forwarding(c);
        c.expose_series = false;
        c
    })
    .await;
    h.send(&gauge("CapacityRemainingMemory", 7.0, Some(T0)))
        .await;
    let sample = eventually("the sample at the receiver", || async {
        receiver.named("CapacityRemainingMemory").pop()
    })
    .await;
    assert_eq!(sample.value, 7.0);
    let (body, parsed) = h.scrape().await;
    assert!(
        parsed.find("CapacityRemainingMemory", &[]).is_empty(),
        "{body}"
    );
    assert!(
        parsed
            .samples
            .iter()
            .all(|s| s.name.starts_with("cf_firehose_exporter_")),
        "{body}"
    );
    assert_eq!(
        parsed.value(
            "cf_firehose_exporter_envelopes_received_total",
            &[("event_type", "ValueMetric")]
        ),
        Some(1.0),
        "{body}"
    );
}
