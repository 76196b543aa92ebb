//! A Traffic Controller: `GET /firehose/<subscription-id>` upgraded to a
//! websocket after checking `Authorization: bearer <token>`, one envelope per
//! binary frame, pings like the real one, envelopes split at random among
//! the connections that share a subscription id, and faults on command:
//! close with a code, reset without a close frame, hang in silence, or answer
//! handshakes with 503.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::RngExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{self, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::TokenBook;

/// The reason the real Traffic Controller gives when a client misses pings.
pub const KEEPALIVE_REASON: &str =
    "Client did not respond to ping before keep-alive timeout expired.";

/// Frames buffered per connection before publishing waits.
const CONNECTION_BUFFER: usize = 4096;

/// Keepalive timing.
#[derive(Debug, Clone)]
pub struct TcSettings {
    /// Wait after a pong before the next ping (15 s on the real one).
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before closing with 1008 (30 s).
    pub pong_timeout: Duration,
}

impl Default for TcSettings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(30),
        }
    }
}

/// What a published frame carries, for `filter-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A LogMessage: only for `filter-type=logs` or no filter.
    Log,
    /// Anything else: for `filter-type=metrics` or no filter.
    Metric,
}

#[derive(Debug)]
enum Command {
    Frame(Bytes),
    /// A text frame, which the protocol does not use.
    Text(String),
    Close(u16, String),
    /// Close the TCP connection without a close frame.
    Drop,
    /// Reset the TCP connection (RST) without a close frame.
    Reset,
    /// Send nothing more, not even pings, and keep the connection open.
    Hang,
}

/// Longest a hung connection is held open.
const HANG_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Filter {
    All,
    Logs,
    Metrics,
}

impl Filter {
    fn wants(self, kind: FrameKind) -> bool {
        matches!(
            (self, kind),
            (Filter::All, _)
                | (Filter::Logs, FrameKind::Log)
                | (Filter::Metrics, FrameKind::Metric)
        )
    }
}

#[derive(Debug, Default)]
struct Inner {
    book: Arc<TokenBook>,
    settings: TcSettings,
    /// Subscribers grouped by (subscription id, filter), as Doppler groups them.
    groups: Mutex<HashMap<(String, Filter), Vec<Subscriber>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    published: AtomicU64,
    /// Answer handshakes with 503, as when Dopplers cannot be reached.
    unavailable: std::sync::atomic::AtomicBool,
    /// Drop each connection right after its handshake, without a close frame.
    drop_on_accept: std::sync::atomic::AtomicBool,
    /// Answer handshakes whose `Authorization` is longer with 431 (0: no limit).
    max_authorization: AtomicU64,
    /// Close codes the clients sent.
    client_closes: Mutex<Vec<u16>>,
}

/// A running simulated Traffic Controller.
#[derive(Debug)]
pub struct TrafficController {
    /// Where it listens.
    pub address: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TrafficController {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_all();
    }
}

impl TrafficController {
    /// Serves on `address`, accepting tokens found in `book`.
    pub async fn start(
        address: SocketAddr,
        settings: TcSettings,
        book: Arc<TokenBook>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner {
            book,
            settings,
            ..Default::default()
        });
        let accept = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(accept.clone(), stream));
            }
        });
        Ok(Self {
            address,
            inner,
            task,
        })
    }

    /// Sends one frame to one connection of every subscription that wants it,
    /// chosen at random within each subscription id. Waits while that
    /// connection's buffer is full. Returns how many connections got it.
    pub async fn publish(&self, frame: Bytes, kind: FrameKind) -> usize {
        let chosen: Vec<mpsc::Sender<Command>> = {
            let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
            let mut rng = rand::rng();
            groups
                .iter()
                .filter(|((_, filter), subs)| filter.wants(kind) && !subs.is_empty())
                .map(|(_, subs)| subs[rng.random_range(0..subs.len())].tx.clone())
                .collect()
        };
        let mut delivered = 0;
        for tx in chosen {
            if tx.send(Command::Frame(frame.clone())).await.is_ok() {
                delivered += 1;
            }
        }
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        delivered
    }

    /// Sends `text` as a text frame to one connection of each subscription;
    /// returns how many took it.
    pub async fn publish_text(&self, text: &str) -> usize {
        let chosen: Vec<mpsc::Sender<Command>> = {
            let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
            groups
                .values()
                .filter_map(|subs| subs.first().map(|s| s.tx.clone()))
                .collect()
        };
        let mut delivered = 0;
        for tx in chosen {
            if tx.send(Command::Text(text.to_owned())).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Open websocket connections.
    pub fn connections(&self) -> usize {
        self.subscribers().len()
    }

    /// Waits until at least `n` connections are open, for at most `timeout`.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        super::poll_until(timeout, || self.connections() >= n).await
    }

    /// Handshakes upgraded so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    /// Handshakes refused with 401 so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Closes every connection with `code` and `reason` (1000 "" is how the
    /// real one cuts a slow consumer).
    pub fn close_all(&self, code: u16, reason: &str) {
        for sub in self.subscribers() {
            let _ = sub.tx.try_send(Command::Close(code, reason.to_owned()));
        }
    }

    /// Drops every TCP connection without a close frame.
    pub fn drop_all(&self) {
        self.take_all(|| Command::Drop);
    }

    /// Resets every TCP connection (RST) without a close frame, as a load
    /// balancer does.
    pub fn reset_all(&self) {
        self.take_all(|| Command::Reset);
    }

    /// Every connection goes silent: no frames, no pings, no close, until the
    /// client gives up. Envelopes published meanwhile go to other connections.
    pub fn hang_all(&self) {
        self.take_all(|| Command::Hang);
    }

    /// While set, each connection is accepted and its TCP connection
    /// dropped at once, before any frame.
    pub fn set_drop_on_accept(&self, drop: bool) {
        self.inner.drop_on_accept.store(drop, Ordering::Relaxed);
    }

    /// Handshakes whose `Authorization` header is longer than `bytes` are
    /// answered 431, as a Go server does past its header limit (0: none).
    pub fn set_max_authorization(&self, bytes: u64) {
        self.inner.max_authorization.store(bytes, Ordering::Relaxed);
    }

    /// While set, handshakes are answered with 503 before the upgrade.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::Relaxed);
    }

    /// Close codes sent by clients so far, in order.
    pub fn client_closes(&self) -> Vec<u16> {
        self.inner
            .client_closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Unregisters every connection and sends each a command. Commands wait
    /// behind frames already queued, so nothing published before is lost
    /// unless the command itself loses it.
    fn take_all(&self, command: impl Fn() -> Command) {
        let groups =
            std::mem::take(&mut *self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()));
        for sub in groups.into_values().flatten() {
            let _ = sub.tx.try_send(command());
        }
    }

    fn subscribers(&self) -> Vec<Subscriber> {
        let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.values().flatten().cloned().collect()
    }
}

/// What the handshake callback learned about the request.
#[derive(Debug)]
struct Subscription {
    id: String,
    filter: Filter,
}

fn refuse(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = http::Response::new(Some(body.to_owned()));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic"),
        );
    }
    response
}

/// Refusal: the status and the body the real one sends.
type Refusal = (StatusCode, &'static str);

fn check(inner: &Inner, request: &Request) -> Result<Subscription, Refusal> {
    let id = request
        .uri()
        .path()
        .strip_prefix("/firehose/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or((StatusCode::NOT_FOUND, "404 page not found"))?;
    let filter = match request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("filter-type="))
    {
        Some("logs") => Filter::Logs,
        Some("metrics") => Filter::Metrics,
        _ => Filter::All,
    };
    if inner.unavailable.load(Ordering::Relaxed) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, ""));
    }
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(authorization) = authorization else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "You are not authorized. authorization not provided",
        ));
    };
    let max = inner.max_authorization.load(Ordering::Relaxed);
    if max > 0 && authorization.len() as u64 > max {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "431 Request Header Fields Too Large",
        ));
    }
    // The real one strips exactly "bearer " (lower case) and hands the rest to UAA.
    let token = authorization
        .strip_prefix("bearer ")
        .unwrap_or(authorization);
    if !inner.book.is_valid(token) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "You are not authorized. invalid authorization",
        ));
    }
    Ok(Subscription {
        id: id.to_owned(),
        filter,
    })
}

async fn connection(inner: Arc<Inner>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut subscription = None;
    // The websocket library's callback type fixes the error type.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| match check(&inner, request) {
        Ok(s) => {
            subscription = Some(s);
            Ok(response)
        }
        Err((status, body)) => Err(refuse(status, body)),
    };
    let socket = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(socket) => socket,
        Err(_) => {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let Some(subscription) = subscription else {
        return;
    };
    inner.accepted.fetch_add(1, Ordering::Relaxed);
    if inner.drop_on_accept.load(Ordering::Relaxed) {
        drop(socket);
        return;
    }
    let (tx, mut rx) = mpsc::channel(CONNECTION_BUFFER);
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let key = (subscription.id.clone(), subscription.filter);
    inner
        .groups
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .push(Subscriber { id, tx });

    let (mut sink, mut incoming) = socket.split();
    let settings = inner.settings.clone();
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    let mut next_ping = far;
    let mut pong_deadline = Instant::now() + settings.pong_timeout;
    let _ = sink.send(Message::Ping(Bytes::new())).await;
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Frame(frame)) => {
                    // Write what is queued, then flush once.
                    if sink.feed(Message::Binary(frame)).await.is_err() { break }
                    let mut more = 0;
                    while more < 256 {
                        match rx.try_recv() {
                            Ok(Command::Frame(frame)) => {
                                if sink.feed(Message::Binary(frame)).await.is_err() { break }
                                more += 1;
                            }
                            Ok(Command::Text(text)) => {
                                if sink.feed(Message::Text(text.into())).await.is_err() { break }
                                more += 1;
                            }
                            Ok(other) => {
                                let _ = sink.flush().await;
                                finish(sink, incoming, other).await;
                                unregister(&inner, &key, id);
                                return;
                            }
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() { break }
                }
                Some(Command::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() { break }
                }
                Some(other) => {
                    finish(sink, incoming, other).await;
                    break;
                }
                None => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Pong(_))) => {
                    pong_deadline = far;
                    next_ping = Instant::now() + settings.ping_interval;
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    inner.client_closes.lock().unwrap_or_else(|e| e.into_inner()).push(code);
                    // Let the websocket layer answer the close.
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.flush()).await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(next_ping) => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() { break }
                next_ping = far;
                pong_deadline = Instant::now() + settings.pong_timeout;
            }
            _ = tokio::time::sleep_until(pong_deadline) => {
                finish(sink, incoming, Command::Close(1008, KEEPALIVE_REASON.into())).await;
                break;
            }
        }
    }
    unregister(&inner, &key, id);
}

type Sink = futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>;
type Incoming = futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>;

/// Ends a connection as `command` says: a close frame (then a short wait for
/// the client's reply), closing or resetting the TCP connection with no close
/// frame, or holding it open in silence until the client leaves.
async fn finish(mut sink: Sink, mut incoming: Incoming, command: Command) {
    match command {
        Command::Close(code, reason) => {
            let frame = CloseFrame {
                code: code.into(),
                reason: reason.into(),
            };
            if sink.send(Message::Close(Some(frame))).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(message)) = incoming.next().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        Command::Reset => {
            // With a zero linger, closing sends RST instead of FIN.
            if let Ok(socket) = incoming.reunite(sink) {
                let _ = socket.get_ref().set_zero_linger();
            }
        }
        Command::Hang => {
            // Read (so the client's leaving is noticed) but never answer.
            let _ = tokio::time::timeout(HANG_LIMIT, async {
                while let Some(Ok(_)) = incoming.next().await {}
            })
            .await;
        }
        Command::Drop | Command::Frame(_) | Command::Text(_) => {}
    }
}

fn unregister(inner: &Inner, key: &(String, Filter), id: u64) {
    let mut groups = inner.groups.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(subs) = groups.get_mut(key) {
        subs.retain(|s| s.id != id);
        if subs.is_empty() {
            groups.remove(key);
        }
    }
}
