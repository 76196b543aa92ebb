//! An RLP Gateway: `GET /v2/read?shard_id=<id>&counter&gauge&...` after
//! checking `Authorization: bearer <token>`, answered with Server-Sent
//! Events: `data: <EnvelopeBatch JSON>` per batch, `event: heartbeat` after
//! a quiet spell, and on command the `closing` event that ends the stream.
//! Errors as the real one sends them: 404 for a bad token, 400 for a query
//! without envelope types, 503 while unavailable. Batches are split at
//! random among the connections that share a shard id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::TokenBook;
use super::v2::{Selection, Streams, batch_json};
use crate::envelope::v2::Envelope;

/// Batches buffered per connection before publishing waits.
const CONNECTION_BUFFER: usize = 1024;

/// What the real gateway writes when its stream timeout ends a stream.
pub const CLOSING: &str = "event: closing\ndata: closing due to stream timeout\n\n";

#[derive(Debug)]
enum Command {
    /// Bytes of the event stream, written as they are.
    Write(Bytes),
    /// The `closing` event, then the end of the response.
    Closing,
    /// The end of the response, without a word.
    End,
}

#[derive(Debug, Default)]
struct Inner {
    book: Arc<TokenBook>,
    heartbeat: Mutex<Duration>,
    /// The open streams.
    streams: Streams<Command>,
    accepted: AtomicU64,
    not_found: AtomicU64,
    /// Answer every request with this error (400 or 503), when set.
    refusal: Mutex<Option<u16>>,
}

/// A running simulated RLP Gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Where it listens.
    pub address: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
        self.end_all();
    }
}

impl Gateway {
    /// Serves on `address`, accepting tokens found in `book`, with a
    /// heartbeat after 15 s without data, as the real one.
    pub async fn start(address: SocketAddr, book: Arc<TokenBook>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner {
            book,
            heartbeat: Mutex::new(Duration::from_secs(15)),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/v2/read", axum::routing::get(read))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            inner,
            task,
        })
    }

    /// Sets the quiet spell after which a heartbeat is written.
    pub fn set_heartbeat(&self, after: Duration) {
        *self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = after;
    }

    /// While set, requests with a good token are answered with this
    /// error: 400 `missing_envelope_type`, 503 `streaming_unavailable`, or
    /// for any other status a 503 whose body never ends.
    pub fn set_refusal(&self, status: Option<u16>) {
        *self.inner.refusal.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Streams opened so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Requests answered 404 (a token it does not know) so far.
    pub fn not_found(&self) -> u64 {
        self.inner.not_found.load(Ordering::Relaxed)
    }

    /// Open streams.
    pub fn connections(&self) -> usize {
        self.inner.streams.open()
    }

    /// Waits until at least `n` streams are open, for at most `timeout`.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        super::poll_until(timeout, || self.connections() >= n).await
    }

    /// Sends `batch` to one stream of every shard, chosen at random within
    /// it, as one `data:` event of the envelopes its query selects. Waits
    /// while that stream's buffer is full. Returns how many streams got it.
    pub async fn publish(&self, batch: &[Envelope]) -> usize {
        self.publish_split(batch, 1).await
    }

    /// As [`Gateway::publish`], with each event written in `pieces` parts
    /// a little apart, so that a reader gets it across several reads.
    pub async fn publish_split(&self, batch: &[Envelope], pieces: usize) -> usize {
        let chosen = self.inner.streams.chosen();
        let mut delivered = 0;
        for (selection, tx) in chosen {
            let wanted: Vec<Envelope> = batch
                .iter()
                .filter(|e| selection.wants(e))
                .cloned()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let event = Bytes::from(format!("data: {}\n\n", batch_json(&wanted)));
            let size = event.len().div_ceil(pieces.max(1));
            let mut sent = true;
            for (i, piece) in event.chunks(size.max(1)).enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                sent &= tx
                    .send(Command::Write(event.slice_ref(piece)))
                    .await
                    .is_ok();
            }
            delivered += usize::from(sent);
        }
        delivered
    }

    /// Writes `text` as it is to every stream: a legacy `heartbeat:` line,
    /// say. Returns how many streams took it.
    pub async fn write_all(&self, text: &str) -> usize {
        let mut delivered = 0;
        for tx in self.inner.streams.all() {
            let command = Command::Write(Bytes::copy_from_slice(text.as_bytes()));
            delivered += usize::from(tx.send(command).await.is_ok());
        }
        delivered
    }

    /// Ends every stream with the `closing` event, as the stream timeout
    /// does, after what was published before it.
    pub fn close_all(&self) {
        self.take_all(|| Command::Closing);
    }

    /// Ends every stream without a word.
    pub fn end_all(&self) {
        self.take_all(|| Command::End);
    }

    fn take_all(&self, command: impl Fn() -> Command) {
        self.inner.streams.take_all(|tx| {
            let _ = tx.try_send(command());
        });
    }
}

/// A JSON error body as the gateway writes one with `http.Error`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}\n");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn read(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    if query.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "empty_query",
            "query cannot be empty",
        );
    }
    let mut shard = String::new();
    let mut selection = 0u8;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "shard_id" {
            shard = value.to_owned();
        } else if let Some(kind) = Selection::kind(key) {
            selection |= kind.0;
        }
    }
    if selection == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_envelope_type",
            "query must provide at least one envelope type",
        );
    }
    // The real one strips a lower-case "bearer" and trims.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("bearer").unwrap_or(v).trim())
        .unwrap_or_default();
    if !inner.book.is_valid(token) {
        inner.not_found.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::NOT_FOUND, "not_found", "resource not found");
    }
    let refusal = *inner.refusal.lock().unwrap_or_else(|e| e.into_inner());
    match refusal {
        Some(400) => {
            return error(
                StatusCode::BAD_REQUEST,
                "missing_envelope_type",
                "query must provide at least one envelope type",
            );
        }
        Some(503) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "streaming_unavailable",
                "streaming is temporarily unavailable",
            );
        }
        Some(_) => {
            let endless = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let chunk = Bytes::from_static(&[b'x'; 4096]);
                Some((Ok::<_, std::convert::Infallible>(chunk), ()))
            });
            return (StatusCode::SERVICE_UNAVAILABLE, Body::from_stream(endless)).into_response();
        }
        None => {}
    }
    let (tx, rx) = mpsc::channel(CONNECTION_BUFFER);
    inner.streams.add(shard, Selection(selection), tx);
    inner.accepted.fetch_add(1, Ordering::Relaxed);
    let heartbeat = *inner.heartbeat.lock().unwrap_or_else(|e| e.into_inner());
    let events = futures_util::stream::unfold((rx, false), move |(mut rx, done)| async move {
        if done {
            return None;
        }
        let next = tokio::time::timeout(heartbeat, rx.recv()).await;
        let (bytes, done) = match next {
            Err(_) => {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                (
                    Bytes::from(format!("event: heartbeat\ndata: {unix}\n\n")),
                    false,
                )
            }
            Ok(Some(Command::Write(bytes))) => (bytes, false),
            Ok(Some(Command::Closing)) => (Bytes::from_static(CLOSING.as_bytes()), true),
            Ok(Some(Command::End) | None) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), (rx, done)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}
