//! The HTTP listener: accepts TCP connections, runs their TLS handshakes,
//! serves HTTP/1.1 and HTTP/2 on each (by ALPN over TLS, by the connection
//! preface in plain text), and keeps every connection within bounds:
//!
//! - **At most `max_connections` at once.** A connection beyond the cap
//!   closes the idle connection that has been quiet the longest and takes
//!   its place; when every connection has a request in flight, the new one
//!   is closed at once and counted as refused.
//! - **Header timeout.** From the first byte of a request (or of the TLS
//!   handshake) to the end of its headers: a client that trickles its
//!   headers is cut off.
//! - **Idle timeout.** No request in flight and not a byte either way for
//!   this long: the connection is closed.
//!
//! As Go's `net/http` does: the idle timeout runs until a request's first
//! bytes arrive, then the header timeout. Closed connections are counted in
//! `cf_firehose_exporter_http_connections_closed_total{reason}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::telemetry::Telemetry;

/// File descriptors kept back from the connection cap for the Firehose
/// connections, UAA, logs and the runtime.
pub const RESERVED_FDS: u64 = 64;

/// Bounds on the HTTP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request and no traffic.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let duration = |text| humantime::parse_duration(text).expect("a default that parses");
        Self {
            header_timeout: duration(Self::DEFAULT_HEADER_TIMEOUT),
            idle_timeout: duration(Self::DEFAULT_IDLE_TIMEOUT),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// The default of `--web.read-header-timeout`.
    pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
    /// The default of `--web.idle-timeout`.
    pub const DEFAULT_IDLE_TIMEOUT: &str = "90s";
    /// The default of `--web.max-connections`.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

    /// These limits with the cap lowered to what `open_files` file
    /// descriptors allow, [`RESERVED_FDS`] kept back.
    pub fn within_open_files(mut self, open_files: u64) -> Self {
        let room = open_files.saturating_sub(RESERVED_FDS).max(16);
        self.max_connections = self
            .max_connections
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        self
    }
}

/// The soft limit of open files in force.
pub fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft limit of open files to the hard limit, as the Go runtime
/// does at start, and returns the soft limit now in force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the limit of open files");
            open_files_limit()
        }
    }
}

/// What the timeouts and the cap know of one connection.
#[derive(Debug)]
struct Activity {
    /// When the connection was accepted; times below are milliseconds since.
    start: Instant,
    last_io: AtomicU64,
    /// When the first byte of the request being read arrived; `NONE` when
    /// no request is being read.
    head_started: AtomicU64,
    in_flight: AtomicU32,
    /// HTTP/2 multiplexes: only the idle timeout applies.
    http2: AtomicBool,
    /// Whether the first bytes read are to be checked for the HTTP/2 preface.
    sniff: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new(sniff: bool) -> Self {
        Self {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            in_flight: AtomicU32::new(0),
            http2: AtomicBool::new(false),
            sniff: AtomicBool::new(sniff),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn on_read(&self, bytes: &[u8]) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.sniff.swap(false, Ordering::Relaxed) && bytes.starts_with(b"PRI * HTTP/2") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.head_started.store(NONE, Ordering::Relaxed);
        self.last_io.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if !self.idle() {
            return None;
        }
        let now = self.now();
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NONE
            && !self.http2.load(Ordering::Relaxed)
            && now.saturating_sub(head) >= millis(limits.header_timeout)
        {
            return Some("header_timeout");
        }
        let quiet = now.saturating_sub(self.last_io.load(Ordering::Relaxed));
        (quiet >= millis(limits.idle_timeout)).then_some("idle_timeout")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NONE - 1)
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A socket that reports its traffic to the connection's [`Activity`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.activity.on_read(read);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The open connections, for the cap to choose one to close.
#[derive(Debug, Default)]
struct Open {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Open {
    fn insert(&self, activity: Arc<Activity>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the idle connection quiet the longest to close; false when
    /// every connection has a request in flight.
    fn evict_oldest_idle(&self) -> bool {
        let connections = self.lock();
        let oldest = connections
            .values()
            .filter(|a| a.idle() && !a.evicted.load(Ordering::Relaxed))
            .min_by_key(|a| a.start + Duration::from_millis(a.last_io.load(Ordering::Relaxed)));
        match oldest {
            Some(activity) => {
                activity.evicted.store(true, Ordering::Relaxed);
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Everything a connection task needs.
struct Server {
    router: Router,
    tls: Option<TlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
    limits: Limits,
    telemetry: Telemetry,
    open: Open,
    shutdown: CancellationToken,
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until
/// `shutdown` is cancelled; then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: Limits,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        // The header timeout is kept here, with the idle timeout.
        .header_read_timeout(None)
        .max_buf_size(64 << 10)
        .keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 << 10);
    let server = Arc::new(Server {
        router,
        tls: tls.map(TlsAcceptor::from),
        http,
        limits,
        telemetry,
        open: Open::default(),
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tasks = TaskTracker::new();
    let mut accept_warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: make room, wait, do
                // not spin, and say so at most every ten seconds.
                if accept_warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(%error, "cannot accept a connection");
                    accept_warned = Some(Instant::now());
                }
                server.open.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = admit(&server, &permits).await else {
            server.telemetry.http_connections_closed("refused").inc();
            tracing::debug!(%peer, "connection refused: every connection is busy");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(server.clone().connection(stream, peer, permit));
    }
    tasks.close();
    tasks.wait().await;
}

/// A place for a new connection: a free one, or one freed by closing the
/// idle connection quiet the longest.
async fn admit(server: &Server, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !server.open.evict_oldest_idle() {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(1), permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

impl Server {
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _permit: OwnedSemaphorePermit,
    ) {
        let activity = Arc::new(Activity::new(self.tls.is_none()));
        let id = self.open.insert(activity.clone());
        self.telemetry.http_connections.inc();
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        let closed = match &self.tls {
            None => self.serve_io(io, &activity).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    handshake = acceptor.accept(io) => Ok(handshake),
                    reason = self.expiry(&activity) => Err(reason),
                };
                match handshake {
                    Ok(Ok(tls)) => {
                        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        activity.http2.store(http2, Ordering::Relaxed);
                        self.serve_io(tls, &activity).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        Some("tls_handshake")
                    }
                    Err(reason) => Some(reason),
                }
            }
        };
        if let Some(reason) = closed {
            tracing::debug!(%peer, reason, "HTTP connection closed");
            self.telemetry.http_connections_closed(reason).inc();
        }
        self.telemetry.http_connections.dec();
        self.open.remove(id);
    }

    /// Serves HTTP on `io` until the client closes, a limit closes it
    /// (returning why) or shutdown.
    async fn serve_io<I>(&self, io: I, activity: &Arc<Activity>) -> Option<&'static str>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let tracked = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::new(&tracked);
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "HTTP connection ended with an error");
                    }
                    return None;
                }
                reason = self.expiry(activity) => return Some(reason),
                _ = self.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// Resolves when a limit says the connection must close, with why.
    async fn expiry(&self, activity: &Activity) -> &'static str {
        let check = (self.limits.header_timeout.min(self.limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = activity.evict.notified() => return "evicted",
                _ = tokio::time::sleep(check) => {}
            }
            if let Some(reason) = activity.expired(&self.limits) {
                return reason;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            max_connections: 4,
        }
    }

    fn at(millis: u64) {
        std::thread::sleep(Duration::from_millis(millis));
    }

    #[test]
    fn a_request_head_must_end_within_the_header_timeout() {
        let activity = Activity::new(true);
        activity.on_read(b"GET /metr");
        assert_eq!(activity.expired(&limits()), None);
        at(120);
        assert_eq!(activity.expired(&limits()), Some("header_timeout"));
        // Once the head is read, the request is in flight: no timeout.
        activity.request_started();
        at(120);
        assert_eq!(activity.expired(&limits()), None);
        activity.request_ended();
        assert_eq!(activity.expired(&limits()), None);
    }

    #[test]
    fn an_idle_connection_expires_after_the_idle_timeout_only() {
        let activity = Activity::new(true);
        at(150);
        assert_eq!(activity.expired(&limits()), None, "no byte yet: idle only");
        at(200);
        assert_eq!(activity.expired(&limits()), Some("idle_timeout"));
    }

    #[test]
    fn http2_frames_between_requests_do_not_start_the_header_timeout() {
        let activity = Activity::new(true);
        activity.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        at(150);
        activity.on_read(b"window update");
        assert_eq!(activity.expired(&limits()), None);
        at(320);
        assert_eq!(activity.expired(&limits()), Some("idle_timeout"));
    }

    #[test]
    fn the_cap_follows_the_open_files_limit() {
        let limits = Limits::default();
        assert_eq!(limits.within_open_files(1024).max_connections, 512);
        assert_eq!(limits.within_open_files(256).max_connections, 192);
        assert_eq!(limits.within_open_files(10).max_connections, 16);
    }

    #[test]
    fn eviction_picks_the_idle_connection_quiet_the_longest() {
        let open = Open::default();
        let (a, b, c) = (
            Arc::new(Activity::new(true)),
            Arc::new(Activity::new(true)),
            Arc::new(Activity::new(true)),
        );
        open.insert(a.clone());
        std::thread::sleep(Duration::from_millis(5));
        open.insert(b.clone());
        std::thread::sleep(Duration::from_millis(5));
        open.insert(c.clone());
        a.request_started();
        assert!(open.evict_oldest_idle());
        assert!(b.evicted.load(Ordering::Relaxed));
        assert!(open.evict_oldest_idle());
        assert!(c.evicted.load(Ordering::Relaxed));
        assert!(!open.evict_oldest_idle(), "a is busy");
    }
}
