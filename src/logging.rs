//! Logging set up once in `main`: logfmt (`ts=… level=… msg=… key=value`),
//! as Prometheus' own exporters write it, or JSON for machines.
//!
//! Lines go to standard error through a bounded queue and a thread of their
//! own, so that logging never blocks the pipeline and never panics: when
//! standard error is closed, full or too slow, lines are dropped and counted
//! in `cf_firehose_exporter_log_lines_dropped_total`.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Lines that may wait to be written.
const QUEUE_LINES: usize = 4096;
/// Bytes that may wait to be written.
const QUEUE_BYTES: usize = 4 << 20;

static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Log lines dropped so far, shared with the self metrics.
pub fn dropped_lines() -> Counter {
    DROPPED.clone()
}

/// Installs the global subscriber: `level` for this crate, warnings from
/// others, in `format` (`logfmt` or `json`), on standard error; and a panic
/// hook that logs a panic as one error line.
pub fn init(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,cf_firehose_exporter={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr::start())
        // The subscriber's own complaints go to stderr with `eprintln!`,
        // which panics when stderr is gone: failures are counted instead.
        .log_internal_errors(false);
    if format == "json" {
        builder.json().init();
    } else {
        builder.event_format(Logfmt).init();
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = panic_message(info.payload());
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location,
            panic = %message,
            "a task panicked"
        );
    }));
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".to_owned())
}

/// Waits up to `timeout` for the lines already logged to be written.
pub fn flush(timeout: Duration) {
    if let Some(queue) = QUEUE.get() {
        queue.flush(timeout);
    }
}

/// Writes `text` to standard error if it can, never panicking.
pub fn print_stderr(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Writes `text` to standard output if it can, never panicking.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

static QUEUE: std::sync::OnceLock<Arc<LineQueue>> = std::sync::OnceLock::new();

/// Lines waiting for the writer thread.
#[derive(Debug)]
struct LineQueue {
    state: Mutex<QueueState>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the queue is empty and nothing is being written.
    drained: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    writing: bool,
}

impl LineQueue {
    fn push(&self, line: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.lines.len() >= QUEUE_LINES || state.bytes + line.len() > QUEUE_BYTES {
            DROPPED.inc();
            return;
        }
        state.bytes += line.len();
        state.lines.push_back(line.to_vec());
        drop(state);
        self.queued.notify_one();
    }

    fn flush(&self, timeout: Duration) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .drained
            .wait_timeout_while(state, timeout, |s| !s.lines.is_empty() || s.writing);
    }

    /// The writer thread: takes lines and writes them to `out`, counting
    /// those it cannot write.
    fn run(&self, mut out: impl std::io::Write) {
        loop {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.writing = false;
            while state.lines.is_empty() {
                self.drained.notify_all();
                state = self.queued.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            let lines: Vec<Vec<u8>> = state.lines.drain(..).collect();
            state.bytes = 0;
            state.writing = true;
            drop(state);
            for line in lines {
                if out.write_all(&line).is_err() {
                    DROPPED.inc();
                }
            }
            let _ = out.flush();
        }
    }
}

/// The subscriber's writer: hands each formatted line to the queue.
#[derive(Debug, Clone)]
pub struct Stderr {
    queue: Arc<LineQueue>,
}

impl Stderr {
    /// Starts the writer thread on standard error (once per process).
    fn start() -> Self {
        let queue = QUEUE
            .get_or_init(|| {
                let queue = Arc::new(LineQueue::new());
                let writer = queue.clone();
                let started = std::thread::Builder::new()
                    .name("log-writer".into())
                    .spawn(move || writer.run(std::io::stderr()));
                if started.is_err() {
                    // Without a thread, lines are queued, then dropped and counted.
                    print_stderr("warning: cannot start the log writer thread");
                }
                queue
            })
            .clone();
        Self { queue }
    }
}

impl LineQueue {
    fn new() -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            queued: Condvar::new(),
            drained: Condvar::new(),
        }
    }
}

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.queue.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One event per line: `ts`, `level`, `caller` (module), `msg`, then the fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        let _ = write!(
            line,
            "ts={} level={} caller={}",
            humantime::format_rfc3339_millis(SystemTime::now()),
            meta.level().as_str().to_ascii_lowercase(),
            meta.target().trim_start_matches("cf_firehose_exporter::"),
        );
        push_pair(&mut line, "msg", &fields.message);
        for (key, value) in &fields.pairs {
            push_pair(&mut line, key, value);
        }
        writeln!(writer, "{line}")
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.pairs.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }
}

/// Appends ` key=value`, quoting the value when it needs it.
fn push_pair(line: &mut String, key: &str, value: &str) {
    line.push(' ');
    line.push_str(key);
    line.push('=');
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:04x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer that fails like a closed pipe.
    struct Broken;

    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn lines_that_cannot_be_written_are_dropped_and_counted() {
        let queue = Arc::new(LineQueue::new());
        let writer = queue.clone();
        std::thread::spawn(move || writer.run(Broken));
        let before = DROPPED.get();
        for _ in 0..10 {
            queue.push(b"a line\n");
        }
        queue.flush(Duration::from_secs(5));
        assert!(DROPPED.get() - before >= 10, "{}", DROPPED.get() - before);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // No writer thread: nothing leaves the queue.
        let queue = LineQueue::new();
        let before = DROPPED.get();
        for _ in 0..QUEUE_LINES + 5 {
            queue.push(b"x\n");
        }
        assert!(DROPPED.get() - before >= 5);
        let big = vec![b'x'; QUEUE_BYTES];
        queue.push(&big);
        assert!(DROPPED.get() - before >= 6);
    }

    #[test]
    fn queued_lines_are_written_in_order_and_flushed() {
        let queue = Arc::new(LineQueue::new());
        let buffer = Buffer::default();
        let (writer, out) = (queue.clone(), buffer.clone());
        std::thread::spawn(move || writer.run(out));
        for i in 0..100 {
            queue.push(format!("line {i}\n").as_bytes());
        }
        queue.flush(Duration::from_secs(5));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn events_come_out_as_logfmt_lines() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(Logfmt)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                code = 1008,
                reason = "keep \"alive\"\nlost",
                "closed by the server"
            );
            tracing::info!(delay = %"250ms", "backing off");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let strip_ts = |l: &str| l.split_once(' ').unwrap().1.to_owned();
        assert!(lines[0].starts_with("ts=20"), "{text}");
        assert_eq!(
            strip_ts(lines[0]),
            "level=warn caller=logging::tests msg=\"closed by the server\" code=1008 \
             reason=\"keep \\\"alive\\\"\\nlost\""
        );
        assert_eq!(
            strip_ts(lines[1]),
            "level=info caller=logging::tests msg=\"backing off\" delay=250ms"
        );
    }
}
