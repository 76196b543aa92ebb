//! End to end under load, in two processes on loopback: `simulate` sends the
//! simulated foundation's workload (as fast as it is read, or at a given
//! rate) and the exporter reads it. Prints envelopes applied per second and
//! per CPU-second of the exporter process (from its own accounting in
//! `/proc`), drops, series, peak RSS and how long scrapes took meanwhile.
//!
//! Each run measures two windows of `--seconds`: ingestion alone (from the
//! socket to the series), then ingestion with a scrape every second, whose
//! CPU the second window's per-CPU-second figure includes.
//!
//! ```sh
//! cargo bench --bench load                          # as fast as it goes, 20 s
//! cargo bench --bench load -- --rate 200000 --seconds 60
//! cargo bench --bench load -- --connections 2 --cells 100 --apps 2000
//! cargo bench --bench load -- --runs 5 --seconds 10    # median of five runs
//! cargo bench --bench load -- --source gateway --rate 100000  # the RLP gateway
//! cargo bench --bench load -- --source rlp --rate 200000 --seconds 60  # the RLP, gRPC
//! cargo bench --bench load -- --naming firehose_exporter   # the Go exporter's names
//! cargo bench --bench load -- --rate 300000 --remote-write  # every sample remote-written too
//! ```
//!
//! With `--remote-write`, the exporter also sends every sample to a
//! receiver in this process that reads each request and accepts it; the
//! exporter's CPU then includes encoding, compressing and sending.
//!
//! With `--runs N`, each run starts both processes afresh, and the summary
//! gives the median and the range: on a shared machine one run can be off by
//! a fifth.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    rate: u64,
    seconds: u64,
    connections: u64,
    cells: u64,
    apps: u64,
    warmup: u64,
    runs: u64,
    /// The transport the exporter reads: firehose, gateway or rlp.
    source: String,
    /// The naming scheme: native or firehose_exporter.
    naming: String,
    /// Whether the exporter remote-writes every sample too.
    remote_write: bool,
}

impl Options {
    fn parse() -> Self {
        let mut o = Options {
            rate: 0,
            seconds: 20,
            connections: 1,
            cells: 50,
            apps: 500,
            warmup: 5,
            runs: 1,
            source: "firehose".into(),
            naming: "native".into(),
            remote_write: false,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || {
                args.get(i + 1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{} takes a number", args[i]))
            };
            match args[i].as_str() {
                "--rate" => o.rate = value(),
                "--seconds" => o.seconds = value(),
                "--connections" => o.connections = value(),
                "--cells" => o.cells = value(),
                "--apps" => o.apps = value(),
                "--warmup" => o.warmup = value(),
                "--runs" => o.runs = value().max(1),
                "--source" => {
                    o.source = args
                        .get(i + 1)
                        .filter(|s| matches!(s.as_str(), "firehose" | "gateway" | "rlp"))
                        .unwrap_or_else(|| panic!("--source takes firehose, gateway or rlp"))
                        .clone();
                }
                "--naming" => {
                    o.naming = args
                        .get(i + 1)
                        .filter(|s| matches!(s.as_str(), "native" | "firehose_exporter"))
                        .unwrap_or_else(|| panic!("--naming takes native or firehose_exporter"))
                        .clone();
                }
                "--remote-write" => {
                    o.remote_write = true;
                    i += 1;
                    continue;
                }
                // Flags cargo passes to every bench.
                "--bench" => {
                    i += 1;
                    continue;
                }
                other => panic!(
                    "unknown option {other}; options: --rate --seconds --connections --cells --apps --warmup --runs --source --naming --remote-write"
                ),
            }
            i += 2;
        }
        o
    }
}

/// Kills the process when the benchmark ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.1; the body and the time it took.
fn get(port: u16, path: &str) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| (body.to_owned(), started.elapsed()))
}

/// The sum of every sample of `name` in a text-format body.
fn sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of the samples of `name` whose labels include `label`.
fn sum_with(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sample(body: &str, line_prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process alive");
    // Fields after the command name, which is in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set size, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one run measured.
struct Run {
    per_second: f64,
    /// Ingestion alone.
    per_cpu_second: f64,
    with_scrapes_per_cpu_second: f64,
    dropped: f64,
}

fn main() {
    let o = Options::parse();
    let runs: Vec<Run> = (0..o.runs).map(|_| run(&o)).collect();
    if runs.len() > 1 {
        let summary = |name: &str, mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            println!(
                "{name:<24}{:>12.0} median of {} runs ({:.0} – {:.0})",
                values[values.len() / 2],
                values.len(),
                values[0],
                values[values.len() - 1]
            );
        };
        println!("summary:");
        summary(
            "  applied per second:",
            runs.iter().map(|r| r.per_second).collect(),
        );
        summary(
            "  per exporter CPU-s:",
            runs.iter().map(|r| r.per_cpu_second).collect(),
        );
        summary(
            "    with scrapes:",
            runs.iter().map(|r| r.with_scrapes_per_cpu_second).collect(),
        );
        summary("  dropped:", runs.iter().map(|r| r.dropped).collect());
    }
}

fn run(o: &Options) -> Run {
    let exe = env!("CARGO_BIN_EXE_cf-firehose-exporter");
    let (uaa, tc, gateway, web) = (free_port(), free_port(), free_port(), free_port());
    let rlp = free_port();
    let certs =
        std::env::temp_dir().join(format!("cf-firehose-exporter-load-{}", std::process::id()));
    let _simulation = Process(
        Command::new(exe)
            .args(["simulate", "--log.level", "warn"])
            .args(["--sim.uaa-address", &format!("127.0.0.1:{uaa}")])
            .args(["--sim.doppler-address", &format!("127.0.0.1:{tc}")])
            .args(["--sim.gateway-address", &format!("127.0.0.1:{gateway}")])
            .args(["--sim.rlp-address", &format!("127.0.0.1:{rlp}")])
            .args(["--sim.rlp-certs-dir", &certs.display().to_string()])
            .args(["--sim.rate", &o.rate.to_string()])
            .args(["--sim.cells", &o.cells.to_string()])
            .args(["--sim.apps", &o.apps.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("simulate starts"),
    );
    wait_for("the simulation listening", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", tc)).is_ok()
    });
    let file = |name: &str| certs.join(name).display().to_string();
    let transport: Vec<String> = match o.source.as_str() {
        "rlp" => vec![
            "--logging.url".into(),
            format!("127.0.0.1:{rlp}"),
            format!("--logging.tls.ca={}", file("ca.pem")),
            format!("--logging.tls.cert={}", file("client.pem")),
            format!("--logging.tls.key={}", file("client.key")),
        ],
        source => {
            let mut args = vec![
                format!("--uaa.url=http://127.0.0.1:{uaa}"),
                "--uaa.client-id=firehose-exporter".into(),
                "--uaa.client-secret=sim-secret".into(),
            ];
            args.push(match source {
                "gateway" => format!("--logging.url=http://127.0.0.1:{gateway}"),
                _ => format!("--doppler.url=ws://127.0.0.1:{tc}"),
            });
            args
        }
    };
    wait_for("the RLP's certificates", Duration::from_secs(10), || {
        certs.join("client.key").exists()
    });
    let receiver = o.remote_write.then(accepting_receiver);
    let remote_write: Vec<String> = receiver
        .iter()
        .map(|(port, _)| format!("--remote-write.url=http://127.0.0.1:{port}/api/v1/write"))
        .collect();
    let exporter = Process(
        Command::new(exe)
            .args(["--log.level", "warn"])
            .args(&transport)
            .args(&remote_write)
            .args(["--doppler.connections", &o.connections.to_string()])
            .args(["--metrics.naming", &o.naming])
            .args(["--web.listen-address", &format!("127.0.0.1:{web}")])
            .spawn()
            .expect("the exporter starts"),
    );
    let pid = exporter.0.id();
    wait_for("the exporter streaming", Duration::from_secs(10), || {
        get(web, "/metrics").is_some_and(|(b, _)| b.contains("\ncf_firehose_exporter_up 1\n"))
    });
    std::thread::sleep(Duration::from_secs(o.warmup));

    let read = |body: &str| {
        (
            sum(body, "cf_firehose_exporter_envelopes_received_total"),
            sum(body, "cf_firehose_exporter_envelopes_dropped_total"),
        )
    };
    let written = |body: &str| {
        let samples = "cf_firehose_exporter_remote_write_samples_total{";
        [
            sum_with(body, samples, "result=\"sent\""),
            sum_with(body, samples, "result=\"dropped\""),
            receiver.as_ref().map_or(0.0, |(_, bytes)| {
                bytes.load(std::sync::atomic::Ordering::Relaxed) as f64
            }),
        ]
    };
    // Two windows of the same length: ingestion alone, for what a frame
    // costs from the socket to its series, then ingestion with a scrape
    // every second, for what scrapes add and how long they take meanwhile.
    let window = |scrape: bool| {
        // The CPU of the two scrapes that read the counters is counted in:
        // the figure errs low, never high.
        let cpu0 = cpu_seconds(pid);
        let (first, _) = get(web, "/metrics").expect("scrape");
        let (received0, dropped0) = read(&first);
        let written0 = written(&first);
        let started = Instant::now();
        let mut scrapes = Vec::new();
        while started.elapsed() < Duration::from_secs(o.seconds) {
            std::thread::sleep(Duration::from_secs(1));
            if scrape {
                let (_, took) = get(web, "/metrics").expect("the scrape answers under load");
                scrapes.push(took);
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let (last, _) = get(web, "/metrics").expect("scrape");
        let cpu = cpu_seconds(pid) - cpu0;
        let (received1, dropped1) = read(&last);
        let written1 = written(&last);
        Window {
            received: received1 - received0,
            dropped: dropped1 - dropped0,
            written: [0, 1, 2].map(|i| written1[i] - written0[i]),
            cpu,
            wall,
            scrapes,
            last,
        }
    };
    let ingest = window(false);
    let mut scraped = window(true);
    let series = sample(&scraped.last, "cf_firehose_exporter_series ");
    let rss = peak_rss(pid);
    scraped.scrapes.sort();
    let p50 = scraped.scrapes[scraped.scrapes.len() / 2];
    let max = scraped.scrapes.last().copied().unwrap_or_default();

    println!(
        "load: rate {} ({}), {} connection(s), {} cells, {} apps, two windows of {} s after {} s warm-up",
        o.rate,
        if o.rate == 0 {
            "as fast as read"
        } else {
            "envelopes/s"
        },
        o.connections,
        o.cells,
        o.apps,
        o.seconds,
        o.warmup
    );
    for (name, w) in [
        ("ingestion alone", &ingest),
        ("with a scrape each second", &scraped),
    ] {
        println!("{name}:");
        println!("  envelopes applied:    {:>12.0}", w.received);
        println!("  per second:           {:>12.0}", w.received / w.wall);
        println!(
            "  per exporter CPU-s:   {:>12.0}   (exporter used {:.2} CPU-s, {:.0} % of one core)",
            w.per_cpu_second(),
            w.cpu,
            100.0 * w.cpu / w.wall
        );
        println!("  dropped:              {:>12.0}", w.dropped);
        if o.remote_write {
            let [sent, dropped, bytes] = w.written;
            println!(
                "  remote-written:       {:>12.0}   samples a second, {:.1} bytes each on the wire, {:.0} dropped",
                sent / w.wall,
                bytes / sent.max(1.0),
                dropped
            );
        }
    }
    println!("series:                 {:>12.0}", series);
    println!(
        "peak RSS:               {:>12.1} MiB ({:.0} bytes per series)",
        rss as f64 / (1 << 20) as f64,
        rss as f64 / series.max(1.0)
    );
    println!(
        "scrape under load:      {:>12.1} ms median, {:.1} ms max ({} scrapes)",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        scraped.scrapes.len()
    );
    Run {
        per_second: (ingest.received + scraped.received) / (ingest.wall + scraped.wall),
        per_cpu_second: ingest.per_cpu_second(),
        with_scrapes_per_cpu_second: scraped.per_cpu_second(),
        dropped: ingest.dropped + scraped.dropped,
    }
}

/// A remote-write receiver on a free loopback port that reads each request
/// whole and accepts it, without decoding: the bench measures the sender.
/// Returns the port and the bytes received so far.
fn accepting_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
    let port = listener.local_addr().unwrap().port();
    let bytes = std::sync::Arc::new(AtomicU64::new(0));
    let total = bytes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let total = total.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone the stream");
                let mut reader = std::io::BufReader::new(stream);
                let mut body = Vec::new();
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    body.resize(length, 0);
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    total.fetch_add(length as u64, Ordering::Relaxed);
                    let accepted = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(accepted).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, bytes)
}

/// What one window of a run measured.
struct Window {
    received: f64,
    dropped: f64,
    /// Remote-write samples sent and dropped, and the bytes received.
    written: [f64; 3],
    cpu: f64,
    wall: f64,
    scrapes: Vec<Duration>,
    /// The body of the scrape that closed the window.
    last: String,
}

impl Window {
    fn per_cpu_second(&self) -> f64 {
        self.received / self.cpu.max(1e-9)
    }
}
