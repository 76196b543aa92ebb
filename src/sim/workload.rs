//! A workload modelled on a real foundation: platform components emitting
//! the metrics they really emit (origin, name, type and unit from the
//! catalog in `cf-metrics.tsv`) from BOSH VMs, and applications whose
//! instances emit container metrics with Cloud Controller's tags, Diego's
//! per-app gauges and counters, Metric Registrar metrics and router events.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::envelope::Envelope;
use crate::envelope::events::{self, ContainerMetric, CounterEvent, HttpStartStop, ValueMetric};
use crate::sim::args::WorkloadArgs;
use crate::sim::catalog::{Row, catalog, value_range};

/// BOSH deployment of every simulated VM.
pub const DEPLOYMENT: &str = "cf";

/// Origins that emit dropsonde v1 directly: the agent gives their v2 form
/// the source id `<deployment>/<job>`, which Doppler's v1 conversion puts
/// in the `source_id` tag (the others name themselves).
const V1_EMITTERS: &[&str] = &["gorouter", "routing_api", "tcp-router"];

#[derive(Debug, Clone)]
struct Vm {
    job: String,
    index: String,
    ip: String,
}

#[derive(Debug, Clone)]
struct App {
    guid: String,
    name: String,
    space: (String, String),
    org: (String, String),
    instances: u32,
    memory_quota: u64,
    disk_quota: u64,
    registrar: bool,
}

#[derive(Debug, Clone)]
enum Model {
    Gauge {
        name: String,
        unit: String,
        lo: f64,
        hi: f64,
        value: f64,
        rising: bool,
    },
    Counter {
        name: String,
        total: u64,
        max_delta: u64,
    },
    Container {
        app: usize,
        instance: u32,
        cpu: f64,
        memory: f64,
        disk: f64,
    },
    /// A router's requests to an app instance: each reported twice, as
    /// gorouter does, first its server side, then its client side.
    Http {
        app: usize,
        instance: u32,
        /// Events sent so far: even ones are the server side.
        sent: u64,
    },
}

#[derive(Debug, Clone)]
struct Series {
    template: Envelope,
    model: Model,
}

/// An endless, seeded stream of envelopes, cycling over every simulated series.
#[derive(Debug)]
pub struct Workload {
    series: Vec<Series>,
    apps: Vec<App>,
    cursor: usize,
    rng: StdRng,
}

/// The instance groups of a cf-deployment foundation and their sizes.
fn instance_groups(cells: u32) -> Vec<(&'static str, u32)> {
    vec![
        ("api", 2),
        ("cc-worker", 2),
        ("database", 1),
        ("diego-api", 2),
        ("diego-cell", cells.max(1)),
        ("doppler", 3),
        ("log-api", 2),
        ("nats", 2),
        ("router", 2),
        ("scheduler", 2),
        ("tcp-router", 1),
        ("uaa", 2),
    ]
}

impl Workload {
    /// The foundation `args` describes, with names, GUIDs and values from its seed.
    pub fn new(args: &WorkloadArgs) -> Self {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let mut vms = Vec::new();
        for (g, (job, count)) in instance_groups(args.cells).into_iter().enumerate() {
            for i in 0..count {
                vms.push(Vm {
                    job: job.into(),
                    index: guid(&mut rng),
                    ip: format!("10.0.{}.{}", g + 1, i + 10),
                });
            }
        }
        let mut w = Workload {
            series: Vec::new(),
            apps: Vec::new(),
            cursor: 0,
            rng,
        };
        w.platform(&vms);
        w.applications(args.apps, &vms);
        w
    }

    /// Envelopes in one round over every series.
    pub fn round_len(&self) -> usize {
        self.series.len()
    }

    /// The next envelope, stamped with the current time.
    pub fn next_envelope(&mut self) -> Envelope {
        let i = self.cursor;
        self.cursor = (self.cursor + 1) % self.series.len();
        let mut envelope = self.series[i].template.clone();
        envelope.timestamp = Some(unix_nanos());
        let rng = &mut self.rng;
        match &mut self.series[i].model {
            Model::Gauge {
                name,
                unit,
                lo,
                hi,
                value,
                rising,
            } => {
                *value = if *rising {
                    *value + rng.random_range(0.0..=(*hi - *lo).max(1.0) / 100.0)
                } else {
                    let step = (*hi - *lo) * 0.05;
                    (*value + rng.random_range(-step..=step)).clamp(*lo, *hi)
                };
                envelope.value_metric = Some(ValueMetric {
                    name: name.clone(),
                    value: round(*value),
                    unit: unit.clone(),
                });
            }
            Model::Counter {
                name,
                total,
                max_delta,
            } => {
                let delta = rng.random_range(0..=*max_delta);
                *total += delta;
                envelope.counter_event = Some(CounterEvent {
                    name: name.clone(),
                    delta,
                    total: Some(*total),
                });
            }
            Model::Container {
                app,
                instance,
                cpu,
                memory,
                disk,
            } => {
                let app = &self.apps[*app];
                *cpu = (*cpu + rng.random_range(-5.0..=5.0)).clamp(0.1, 180.0);
                let quota = app.memory_quota as f64;
                *memory = (*memory + rng.random_range(-0.02..=0.02) * quota)
                    .clamp(0.2 * quota, 0.95 * quota);
                *disk = (*disk + rng.random_range(0.0..=1024.0)).min(app.disk_quota as f64 * 0.9);
                envelope.container_metric = Some(ContainerMetric {
                    application_id: app.guid.clone(),
                    instance_index: *instance as i32,
                    cpu_percentage: round(*cpu),
                    memory_bytes: *memory as u64,
                    disk_bytes: *disk as u64,
                    memory_bytes_quota: Some(app.memory_quota),
                    disk_bytes_quota: Some(app.disk_quota),
                });
            }
            Model::Http {
                app,
                instance,
                sent,
            } => {
                let app = &self.apps[*app];
                let stop = unix_nanos();
                let start = stop - rng.random_range(1_000_000..300_000_000i64);
                let status = if rng.random_bool(0.02) { 502 } else { 200 };
                // Both sides of one request name the same method.
                let method = HTTP_METHODS[(*sent / 2 % 4) as usize];
                let peer = match *sent % 2 {
                    0 => events::PeerType::Server,
                    _ => events::PeerType::Client,
                };
                *sent += 1;
                envelope.http_start_stop = Some(HttpStartStop {
                    start_timestamp: start,
                    stop_timestamp: stop,
                    request_id: uuid(&guid(rng)),
                    peer_type: peer as i32,
                    method: method as i32,
                    uri: format!("https://{}.apps.example.com/", app.name),
                    remote_address: format!(
                        "10.1.0.{}:{}",
                        rng.random_range(2..250),
                        rng.random_range(30000..60000)
                    ),
                    user_agent: "curl/8.5.0".into(),
                    status_code: status,
                    content_length: rng.random_range(100..20000),
                    application_id: Some(uuid(&app.guid)),
                    instance_index: Some(*instance as i32),
                    instance_id: None,
                    forwarded: vec!["203.0.113.7".into()],
                });
            }
        }
        envelope
    }

    fn platform(&mut self, vms: &[Vm]) {
        let cells: Vec<String> = vms
            .iter()
            .filter(|v| v.job == "diego-cell")
            .map(|v| v.index.clone())
            .collect();
        for row in catalog() {
            let on: Vec<&Vm> = match row.group {
                "all" | "every" => vms.iter().collect(),
                group => vms.iter().filter(|v| v.job == group).collect(),
            };
            for vm in on {
                for tags in tag_variants(&row, &cells) {
                    let mut template = base(row.origin, vm);
                    let event_type = if row.counter { 7 } else { 6 };
                    template.event_type = event_type;
                    let source_id = match V1_EMITTERS.contains(&row.origin) {
                        true => format!("{DEPLOYMENT}/{}", vm.job),
                        false => row.origin.into(),
                    };
                    template.tags.insert("source_id".into(), source_id);
                    template.tags.extend(tags);
                    let model = if row.counter {
                        let quiet = ["0", "rare", "~0", "small", "sporadic"]
                            .iter()
                            .any(|q| row.typical.starts_with(q));
                        Model::Counter {
                            name: row.name.into(),
                            total: self.rng.random_range(0..10_000),
                            max_delta: if quiet { 1 } else { 50 },
                        }
                    } else {
                        let (lo, hi) = value_range(row.name, row.typical);
                        let rising = ["monotonic", "cumulative", "running total", "grows"]
                            .iter()
                            .any(|w| row.typical.contains(w));
                        Model::Gauge {
                            name: row.name.into(),
                            unit: row.unit.into(),
                            lo,
                            hi,
                            value: self.rng.random_range(lo..=hi),
                            rising,
                        }
                    };
                    self.series.push(Series { template, model });
                }
            }
        }
    }

    fn applications(&mut self, count: u32, vms: &[Vm]) {
        const NAMES: &[&str] = &[
            "billing",
            "catalog",
            "checkout",
            "inventory",
            "payments",
            "search",
            "orders",
            "gateway",
            "accounts",
            "notifications",
            "reports",
            "profile",
            "pricing",
            "shipping",
        ];
        const KINDS: &[&str] = &["api", "worker", "ui", "service"];
        let orgs: Vec<(String, String)> = ["retail", "finance", "platform"]
            .iter()
            .map(|o| (guid(&mut self.rng), o.to_string()))
            .collect();
        let spaces: Vec<(String, String)> = ["prod", "staging", "dev"]
            .iter()
            .map(|s| (guid(&mut self.rng), s.to_string()))
            .collect();
        let cells: Vec<&Vm> = vms.iter().filter(|v| v.job == "diego-cell").collect();
        let dopplers: Vec<&Vm> = vms.iter().filter(|v| v.job == "doppler").collect();
        let routers: Vec<&Vm> = vms.iter().filter(|v| v.job == "router").collect();
        for a in 0..count as usize {
            let name = format!(
                "{}-{}",
                NAMES[a % NAMES.len()],
                KINDS[(a / NAMES.len()) % KINDS.len()]
            );
            let name = if a >= NAMES.len() * KINDS.len() {
                format!("{name}-{a}")
            } else {
                name
            };
            let app = App {
                guid: guid(&mut self.rng),
                name,
                space: spaces[a % spaces.len()].clone(),
                org: orgs[a % orgs.len()].clone(),
                instances: self.rng.random_range(1..=4),
                memory_quota: [256u64, 512, 1024, 2048][self.rng.random_range(0..4)] << 20,
                disk_quota: 1 << 30,
                registrar: a % 3 == 0,
            };
            self.apps.push(app);
            let app = self.apps[a].clone();
            for instance in 0..app.instances {
                let cell = cells[(a + instance as usize) % cells.len()];
                let tags = app_tags(&app, instance, &guid(&mut self.rng));
                let with_tags = |origin: &str, vm: &Vm, event_type: i32| {
                    let mut e = base(origin, vm);
                    e.event_type = event_type;
                    e.tags.extend(tags.iter().cloned());
                    e
                };
                let memory = app.memory_quota as f64 * self.rng.random_range(0.3..0.8);
                self.series.push(Series {
                    template: with_tags("rep", cell, 9),
                    model: Model::Container {
                        app: a,
                        instance,
                        cpu: self.rng.random_range(0.5..40.0),
                        memory,
                        disk: self.rng.random_range(50.0..300.0) * (1 << 20) as f64,
                    },
                });
                // Diego's second and third per-app gauges, and its counters.
                let gauges: [(&str, &str, f64, f64, bool); 6] = [
                    ("container_age", "nanos", 1e9, 1e15, true),
                    ("cpu_entitlement", "percentage", 0.0, 100.0, false),
                    ("absolute_usage", "nanos", 1e9, 1e15, true),
                    ("absolute_entitlement", "nanos", 1e9, 1e15, true),
                    ("log_rate", "B/s", 0.0, 4096.0, false),
                    ("log_rate_limit", "B/s", 16384.0, 16384.0, false),
                ];
                for (name, unit, lo, hi, rising) in gauges {
                    let value = if rising {
                        lo
                    } else {
                        self.rng.random_range(lo..=hi)
                    };
                    self.series.push(Series {
                        template: with_tags("rep", cell, 6),
                        model: Model::Gauge {
                            name: name.into(),
                            unit: unit.into(),
                            lo,
                            hi,
                            value,
                            rising,
                        },
                    });
                }
                for name in ["rx_bytes", "tx_bytes"] {
                    self.series.push(Series {
                        template: with_tags("rep", cell, 7),
                        model: Model::Counter {
                            name: name.into(),
                            total: 0,
                            max_delta: 200_000,
                        },
                    });
                }
                if app.registrar {
                    let doppler = dopplers[a % dopplers.len()];
                    let mut registrar = |model: Model, extra: &[(&str, &str)]| {
                        let mut e = base("metric_registrar", doppler);
                        e.event_type = if matches!(model, Model::Counter { .. }) {
                            7
                        } else {
                            6
                        };
                        e.tags.insert("source_id".into(), app.guid.clone());
                        e.tags.insert("instance_id".into(), instance.to_string());
                        e.tags
                            .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                        self.series.push(Series { template: e, model });
                    };
                    for status in ["200", "500"] {
                        registrar(
                            Model::Counter {
                                name: "http_requests_total".into(),
                                total: 0,
                                max_delta: 40,
                            },
                            &[("method", "GET"), ("status", status)],
                        );
                    }
                    registrar(
                        Model::Gauge {
                            name: "jobs_queued".into(),
                            unit: String::new(),
                            lo: 0.0,
                            hi: 500.0,
                            value: 10.0,
                            rising: false,
                        },
                        &[("queue", "default")],
                    );
                }
                let router = routers[(a + instance as usize) % routers.len()];
                let mut http = base("gorouter", router);
                http.event_type = 4;
                // The app's tags gorouter knows from its routes.
                http.tags.extend(
                    app_tags(&app, instance, "")
                        .into_iter()
                        .filter(|(k, _)| ROUTE_TAGS.contains(&k.as_str())),
                );
                self.series.push(Series {
                    template: http,
                    model: Model::Http {
                        app: a,
                        instance,
                        sent: 0,
                    },
                });
            }
        }
    }
}

/// An envelope with the source fields of `vm` and no event yet.
fn base(origin: &str, vm: &Vm) -> Envelope {
    Envelope {
        origin: origin.into(),
        deployment: Some(DEPLOYMENT.into()),
        job: Some(vm.job.clone()),
        index: Some(vm.index.clone()),
        ip: Some(vm.ip.clone()),
        ..Default::default()
    }
}

/// The methods of the simulated requests, in turn.
const HTTP_METHODS: [events::Method; 4] = [
    events::Method::Get,
    events::Method::Get,
    events::Method::Post,
    events::Method::Get,
];

/// The app tags on a router's HTTP events.
const ROUTE_TAGS: [&str; 7] = [
    "app_id",
    "app_name",
    "organization_id",
    "organization_name",
    "process_type",
    "space_id",
    "space_name",
];

/// The tags Cloud Controller asks Diego to attach to an app instance's metrics.
fn app_tags(app: &App, instance: u32, instance_guid: &str) -> Vec<(String, String)> {
    [
        ("source_id", app.guid.as_str()),
        ("app_id", &app.guid),
        ("app_name", &app.name),
        ("instance_id", &instance.to_string()),
        ("process_instance_id", instance_guid),
        ("process_id", &app.guid),
        ("process_type", "web"),
        ("organization_id", &app.org.0),
        ("organization_name", &app.org.1),
        ("space_id", &app.space.0),
        ("space_name", &app.space.1),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The tag sets one catalog row is emitted with: most have one, some split
/// by a tag as the real components do.
fn tag_variants(row: &Row<'_>, cells: &[String]) -> Vec<Vec<(String, String)>> {
    let one = |k: &str, values: &[&str]| -> Vec<Vec<(String, String)>> {
        values
            .iter()
            .map(|v| vec![(k.to_string(), v.to_string())])
            .collect()
    };
    let mut variants = if row.name == "dropped" {
        one("direction", &["ingress", "egress"])
    } else if row.name.starts_with("Requests") && matches!(row.origin, "locket" | "rep") {
        one("request-type", &["Lock", "Fetch", "FetchAll"])
    } else if row.origin == "bbs"
        && matches!(row.name, "TasksStarted" | "TasksSucceeded" | "TasksFailed")
    {
        cells
            .iter()
            .map(|c| vec![("cell-id".to_string(), c.clone())])
            .collect()
    } else if row.name.starts_with("system_network") {
        one("network_interface", &["eth0"])
    } else {
        vec![Vec::new()]
    };
    if row.origin.starts_with("loggregator.") {
        for v in &mut variants {
            v.push(("metric_version".into(), "2.0".into()));
        }
    }
    variants
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A random version-4 GUID in text form.
pub fn guid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// Packs a GUID's 16 bytes, in text order, into the dropsonde UUID halves.
pub fn uuid(text: &str) -> events::Uuid {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    events::Uuid::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> WorkloadArgs {
        WorkloadArgs {
            rate: 1000,
            cells: 3,
            apps: 5,
            seed: 7,
        }
    }

    #[test]
    fn uuid_packing_matches_the_check_value() {
        let u = uuid("f47ac10b-58cc-4372-a567-0e02b2c3d479");
        assert_eq!(u.low, 0x7243cc580bc17af4);
        assert_eq!(u.high, 0x79d4c3b2020e67a5);
    }

    #[test]
    fn ranges_from_typical_values() {
        assert_eq!(value_range("x", "1e8..5e9 ns; warn 5e9"), (1e8, 5e9));
        assert_eq!(value_range("x", "100..2000"), (100.0, 2000.0));
        assert_eq!(value_range("x", "0"), (0.0, 0.0));
        assert_eq!(value_range("x", "legacy; whatever"), (0.0, 100.0));
        assert_eq!(
            value_range("CapacityTotalContainers", "250 (default)"),
            (250.0, 250.0)
        );
    }

    #[test]
    fn a_round_covers_platform_and_apps() {
        let mut w = Workload::new(&args());
        let round: Vec<Envelope> = (0..w.round_len()).map(|_| w.next_envelope()).collect();
        let find = |origin: &str, name: &str| {
            round.iter().find(|e| {
                e.origin == origin && e.value_metric.as_ref().is_some_and(|m| m.name == name)
            })
        };
        let memory = find("rep", "CapacityRemainingMemory").expect("rep capacity");
        assert_eq!(memory.job.as_deref(), Some("diego-cell"));
        assert_eq!(memory.value_metric.as_ref().unwrap().unit, "MiB");
        assert_eq!(
            memory.tags.get("source_id").map(String::as_str),
            Some("rep")
        );
        // A v1 emitter's envelopes carry only the source id the agent gave
        // them, as Doppler's conversion writes it.
        assert!(round.iter().any(|e| {
            e.origin == "gorouter"
                && e.counter_event.is_some()
                && e.tags.len() == 1
                && e.tags.get("source_id").map(String::as_str) == Some("cf/router")
        }));
        let containers: Vec<&Envelope> = round
            .iter()
            .filter(|e| e.container_metric.is_some())
            .collect();
        let instances: u32 = w.apps.iter().map(|a| a.instances).sum();
        assert_eq!(containers.len(), instances as usize);
        for key in [
            "app_name",
            "space_name",
            "organization_name",
            "source_id",
            "instance_id",
            "process_instance_id",
        ] {
            assert!(containers[0].tags.contains_key(key), "{key}");
        }
        assert!(round.iter().any(|e| e.http_start_stop.is_some()));
        assert!(round.iter().any(|e| e.origin == "metric_registrar"));
        // Every envelope is complete enough to decode back.
        for e in &round {
            let bytes = prost::Message::encode_to_vec(e);
            crate::envelope::decode(&bytes).unwrap_or_else(|err| panic!("{err}: {e:?}"));
        }
    }

    #[test]
    fn same_seed_same_foundation() {
        let a = Workload::new(&args());
        let b = Workload::new(&args());
        assert_eq!(a.apps[0].guid, b.apps[0].guid);
        assert_eq!(a.round_len(), b.round_len());
    }
}
