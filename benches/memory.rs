//! Memory per series: fills a store with container-style series, the way a
//! large foundation's apps fill it (five gauges per instance, cpu with its own
//! unit, a dozen Cloud Controller tags each), and prints the growth of the
//! process's resident set per series.
//!
//! `cargo bench --bench memory` (or `-- 200000` for another count).

use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::naming::{MetricKind, SeriesUpdate, Value};
use cf_firehose_exporter::store::SeriesStore;
use cf_firehose_exporter::telemetry::Telemetry;

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let series: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss();
    let store = Arc::new(SeriesStore::new(Duration::from_secs(600), Telemetry::new()));
    let now = tokio::time::Instant::now();
    let families = ["cpu", "memory", "disk", "memory_quota", "disk_quota"];
    let instances = series.div_ceil(families.len());
    for instance in 0..instances {
        let app = instance / 4;
        let guid = |kind: u64, n: usize| format!("{kind:08x}-58cc-4372-a567-{n:012x}");
        let mut labels = vec![
            ("app_id".to_string(), guid(1, app)),
            ("app_name".to_string(), format!("app-{app}")),
            ("bosh_deployment".to_string(), "cf".to_string()),
            ("bosh_job_id".to_string(), guid(2, app % 100)),
            (
                "bosh_job_ip".to_string(),
                format!("10.0.{}.{}", app % 100 / 250, app % 250),
            ),
            ("bosh_job_name".to_string(), "diego-cell".to_string()),
            ("instance_id".to_string(), (instance % 4).to_string()),
            ("organization_id".to_string(), guid(3, app % 50)),
            ("organization_name".to_string(), format!("org-{}", app % 50)),
            ("origin".to_string(), "rep".to_string()),
            ("process_id".to_string(), guid(4, app)),
            ("process_instance_id".to_string(), guid(5, instance)),
            ("process_type".to_string(), "web".to_string()),
            ("source_id".to_string(), guid(1, app)),
            ("space_id".to_string(), guid(6, app % 200)),
            ("space_name".to_string(), format!("space-{}", app % 200)),
            ("unit".to_string(), "bytes".to_string()),
        ];
        labels.sort();
        // cpu is in percent, the others in bytes: two label sets per instance.
        let mut cpu = labels.clone();
        cpu.iter_mut().find(|(k, _)| k == "unit").unwrap().1 = "percentage".into();
        for family in families {
            store.apply(
                SeriesUpdate {
                    family: family.into(),
                    kind: MetricKind::Gauge,
                    original: family.into(),
                    labels: if family == "cpu" {
                        cpu.clone()
                    } else {
                        labels.clone()
                    },
                    value: Value::Set(instance as f64),
                    buckets: Vec::new(),
                },
                now,
            );
        }
    }
    let after = rss();
    let held = store.len();
    println!(
        "memory: {held} series, resident set grew {:.1} MiB: {:.0} bytes per series",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / held as f64
    );
}
