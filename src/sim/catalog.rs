//! The catalog of the metrics Cloud Foundry components emit
//! (`cf-metrics.tsv`): origin, name, type, unit, instance group and typical
//! value, and a plausible range of values from the latter.

/// The catalog: origin, name, type, unit, bosh_job, typical_value, source.
const CATALOG: &str = include_str!("cf-metrics.tsv");

/// One metric of the catalog.
pub(super) struct Row<'a> {
    pub(super) origin: &'a str,
    pub(super) name: &'a str,
    pub(super) counter: bool,
    pub(super) unit: &'a str,
    pub(super) group: &'a str,
    pub(super) typical: &'a str,
}

/// The catalog's rows, legacy and removed metrics left out.
pub(super) fn catalog() -> impl Iterator<Item = Row<'static>> {
    CATALOG.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        let [origin, name, kind, unit, job, typical, ..] = f[..] else {
            return None;
        };
        if job.contains("legacy") || job.contains("removed") {
            return None;
        }
        let group = job.split([' ', '(', ';', ',', '/']).next().unwrap_or("");
        Some(Row {
            origin,
            name,
            counter: kind == "counter",
            unit,
            group,
            typical,
        })
    })
}

/// A plausible range for a gauge, from the catalog's typical value.
pub(super) fn value_range(name: &str, typical: &str) -> (f64, f64) {
    match name {
        "CapacityTotalMemory" => return (65536.0, 65536.0),
        "CapacityRemainingMemory" => return (8000.0, 40000.0),
        "CapacityAllocatedMemory" => return (20000.0, 57000.0),
        "CapacityTotalDisk" => return (200000.0, 200000.0),
        "CapacityRemainingDisk" => return (60000.0, 150000.0),
        "CapacityTotalContainers" => return (250.0, 250.0),
        "CapacityRemainingContainers" => return (150.0, 240.0),
        _ => {}
    }
    let numbers = leading_numbers(typical);
    match numbers[..] {
        [lo, hi, ..] if hi >= lo => (lo, hi),
        [v, ..] => (v, v),
        [] => (0.0, 100.0),
    }
}

/// The numbers at the start of a typical-value text, e.g. `1e8..5e9 ns` → [1e8, 5e9].
fn leading_numbers(text: &str) -> Vec<f64> {
    let mut numbers = Vec::new();
    for part in text
        .split(['.', ' ', '-', ';', '~', '<', '=', '('])
        .filter(|p| !p.is_empty())
        .take(3)
    {
        match part.parse::<f64>() {
            Ok(n) if n.is_finite() => numbers.push(n),
            _ => {
                // Allow "0.5" split by '.': rejoin is not worth it; stop at words.
                if !numbers.is_empty() || part.chars().any(|c| c.is_alphabetic()) {
                    break;
                }
            }
        }
    }
    numbers
}
