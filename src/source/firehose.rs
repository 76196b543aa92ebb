//! The v1 Firehose: a websocket to the Traffic Controller at
//! `/firehose/<subscription-id>`, one dropsonde envelope per binary frame.
//! Reads continuously (so the server's pings are answered), hands frames to
//! decoding in batches, and reconnects with backoff on any close or error.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::backoff::Backoff;
use super::slow_consumer::{self, SlowConsumerWatch};
use super::{FrameBatch, FrameSender, MAX_BATCH, MAX_BATCH_BYTES, StateSender, StreamState, tls};
use crate::config::SourceConfig;
use crate::source::uaa::{TokenSource, UaaError};
use crate::telemetry::Telemetry;

/// Time allowed for TCP, TLS and the websocket handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that stays up this long counts as a good one even if it
/// delivered nothing (a quiet subscription): backoff starts afresh after it.
const STABLE_AFTER: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No token could be had from UAA.
    #[error(transparent)]
    Uaa(#[from] UaaError),
    /// The Traffic Controller rejected the token (HTTP 401).
    #[error("Traffic Controller refused the token (401): {0}")]
    Unauthorized(String),
    /// The handshake was answered with another HTTP status.
    #[error("Traffic Controller answered the handshake with HTTP {status}: {body:?}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// Network, TLS or protocol failure, or timeout.
    #[error("cannot reach the Traffic Controller: {0}")]
    Unreachable(String),
}

impl ConnectError {
    /// The `reason` label of `connect_errors_total`.
    pub fn reason_label(&self) -> &'static str {
        match self {
            ConnectError::Uaa(UaaError::Credentials(_)) => "uaa_credentials",
            ConnectError::Uaa(_) => "uaa_error",
            ConnectError::Unauthorized(_) => "unauthorized",
            ConnectError::Rejected { .. } => "rejected",
            ConnectError::Unreachable(_) => "unreachable",
        }
    }
}

/// Why a source stopped for good before shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// `--doppler.max-retry-count` attempts in a row failed.
    #[error(
        "giving up after {attempts} failed attempts in a row (--doppler.max-retry-count); last error: {last_error}"
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// What the last one ran into.
        last_error: String,
    },
}

/// How an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disconnect {
    /// The server sent a close frame.
    Closed { code: u16, reason: String },
    /// Nothing arrived, not even a ping, for the idle timeout.
    Idle(Duration),
    /// The server sent a frame larger than the limit.
    FrameTooLarge(String),
    /// The connection failed without a close frame.
    Failed(String),
    /// Shutdown was requested, or decoding is gone.
    Stopped,
}

impl Disconnect {
    fn reason_label(&self) -> &'static str {
        match self {
            Disconnect::Closed { code: 1000, .. } => "close_normal",
            Disconnect::Closed { code: 1008, .. } => "close_policy_violation",
            Disconnect::Closed { .. } => "close_other",
            Disconnect::Idle(_) => "idle_timeout",
            Disconnect::FrameTooLarge(_) => "frame_too_large",
            Disconnect::Failed(_) => "error",
            Disconnect::Stopped => "stopped",
        }
    }

    /// One line for the log and the landing page.
    fn describe(&self) -> String {
        match self {
            Disconnect::Closed { code, reason } if reason.is_empty() => {
                format!("closed by the server with code {code}")
            }
            Disconnect::Closed { code, reason } => {
                format!("closed by the server with code {code}: {reason}")
            }
            Disconnect::Idle(after) => format!(
                "no frame and no ping for {} (--doppler.idle-timeout)",
                humantime::format_duration(*after)
            ),
            Disconnect::FrameTooLarge(e) => format!("{e} (--doppler.max-frame-size)"),
            Disconnect::Failed(e) => format!("connection lost: {e}"),
            Disconnect::Stopped => "stopped".into(),
        }
    }
}

/// Logs repeated connection failures once per change of error and then at
/// 2, 4, 8, ... attempts, not once per attempt.
#[derive(Debug, Default)]
struct FailureLog {
    last: String,
    attempts: u32,
}

impl FailureLog {
    /// Records a failed attempt; true when it deserves a log line.
    fn record(&mut self, error: &str) -> bool {
        self.attempts += 1;
        if error != self.last {
            self.last = error.to_owned();
            return true;
        }
        self.attempts.is_power_of_two()
    }

    fn clear(&mut self) {
        self.last.clear();
        self.attempts = 0;
    }
}

/// One Firehose subscription, kept open until shutdown.
pub struct FirehoseSource {
    url: Url,
    tokens: Arc<TokenSource>,
    frames: FrameSender,
    telemetry: Telemetry,
    state: StateSender,
    backoff: Backoff,
    connector: Connector,
    idle_timeout: Option<Duration>,
    max_frame_size: usize,
    max_retry_count: Option<u32>,
    slow_consumer: SlowConsumerWatch,
    /// Which of the exporter's connections this is, from 0.
    index: usize,
}

impl std::fmt::Debug for FirehoseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirehoseSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FirehoseSource {
    /// A source for `config`, reporting into `state` and sending frames to `frames`.
    pub fn new(
        config: &SourceConfig,
        tokens: Arc<TokenSource>,
        frames: FrameSender,
        telemetry: Telemetry,
        state: StateSender,
    ) -> Result<Self, rustls::Error> {
        let connector = match config.firehose_url.scheme() {
            "wss" => Connector::Rustls(tls::client_config(config.skip_ssl_verify)?),
            _ => Connector::Plain,
        };
        Ok(Self {
            url: config.firehose_url.clone(),
            tokens,
            frames,
            telemetry,
            state,
            backoff: Backoff::new(config.min_retry_delay, config.max_retry_delay),
            connector,
            idle_timeout: config.idle_timeout,
            max_frame_size: config.max_frame_size,
            max_retry_count: config.max_retry_count,
            slow_consumer: SlowConsumerWatch::default(),
            index: 0,
        })
    }

    /// Numbers this connection among several sharing the subscription.
    pub fn with_index(mut self, index: usize) -> Self {
        self.index = index;
        self
    }

    /// Connects, streams and reconnects until `shutdown` is cancelled, or
    /// until `--doppler.max-retry-count` attempts in a row have failed.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut failures = FailureLog::default();
        let mut retry_unauthorized = true;
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            self.state.send_replace(StreamState::Connecting);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                attempt = self.connect() => attempt,
            };
            if let Err(error) = &attempt {
                self.telemetry.connect_errors(error.reason_label()).inc();
            }
            let (failure, loud) = match attempt {
                Ok(socket) => {
                    let (end, delivered) = self.stream(socket, &shutdown).await;
                    if end == Disconnect::Stopped {
                        break Ok(());
                    }
                    let text = end.describe();
                    if delivered {
                        // A good connection: start counting failures afresh.
                        retry_unauthorized = true;
                        failures.clear();
                        self.backoff.reset();
                        self.disconnected(&end, true);
                        (text, true)
                    } else {
                        // Accepted, then dropped before any data: a failed
                        // attempt like any other, so backoff keeps growing
                        // and --doppler.max-retry-count counts it.
                        let loud = failures.record(&text);
                        self.disconnected(&end, loud);
                        if let Some(error) = self.give_up(&failures, &text) {
                            break Err(error);
                        }
                        (text, loud)
                    }
                }
                Err(ConnectError::Unauthorized(body)) if retry_unauthorized => {
                    // The token was revoked or expired early: fetch a new one
                    // and try again at once, but only once in a row.
                    retry_unauthorized = false;
                    tracing::info!(%body, "Traffic Controller refused the token; fetching a new one");
                    continue;
                }
                Err(error) => {
                    let text = error.to_string();
                    let loud = failures.record(&text);
                    if let Some(error) = self.give_up(&failures, &text) {
                        break Err(error);
                    }
                    if loud {
                        let attempts = failures.attempts;
                        match &error {
                            ConnectError::Uaa(UaaError::Credentials(_)) => tracing::error!(
                                error = %text,
                                attempts,
                                "UAA refused the client: check --uaa.client-id and --uaa.client-secret"
                            ),
                            _ => {
                                tracing::warn!(error = %text, attempts, "cannot connect to the Firehose")
                            }
                        }
                    }
                    (text, loud)
                }
            };
            let delay = self.backoff.next_delay();
            let shown = humantime::format_duration(Duration::from_millis(delay.as_millis() as u64));
            if loud {
                tracing::info!(delay = %shown, "backing off before reconnecting");
            } else {
                tracing::debug!(delay = %shown, error = %failure, "backing off before reconnecting");
            }
            self.state.send_replace(StreamState::BackingOff(failure));
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        };
        self.state.send_replace(StreamState::Stopped);
        result
    }

    /// The error to stop with once `--doppler.max-retry-count` attempts in a
    /// row have failed, the last with `text`.
    fn give_up(&self, failures: &FailureLog, text: &str) -> Option<SourceError> {
        let max = self
            .max_retry_count
            .filter(|max| failures.attempts >= *max)?;
        tracing::error!(attempts = max, error = %text, "giving up");
        Some(SourceError::RetriesExhausted {
            attempts: max,
            last_error: text.to_owned(),
        })
    }

    /// Counts the end of an established connection, and logs it if `loud`.
    fn disconnected(&mut self, end: &Disconnect, loud: bool) {
        self.telemetry.reconnects(end.reason_label()).inc();
        let slow = match end {
            Disconnect::Closed { code, .. } => self
                .slow_consumer
                .on_close(*code, tokio::time::Instant::now()),
            Disconnect::FrameTooLarge(_) => {
                self.telemetry.envelopes_dropped("frame_too_large").inc();
                false
            }
            _ => false,
        };
        match end {
            _ if !loud => {
                tracing::debug!(error = %end.describe(), "Firehose connection lost again")
            }
            Disconnect::Closed { code, reason } => {
                tracing::warn!(code, reason = %reason, "Firehose connection closed by the server")
            }
            other => tracing::warn!(error = %other.describe(), "Firehose connection lost"),
        }
        if slow {
            self.telemetry.slow_consumer_alerts.inc();
            tracing::warn!("slow consumer: {}", slow_consumer::ADVICE);
        }
    }

    /// Gets a token and opens the websocket. A 401 invalidates the token.
    async fn connect(&self) -> Result<Socket, ConnectError> {
        let authorization = self.tokens.authorization().await?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let header = match authorization.parse() {
            Ok(header) => header,
            Err(_) => {
                // Unusable: never try it again.
                self.tokens.invalidate(&authorization).await;
                return Err(ConnectError::Uaa(UaaError::BadResponse(
                    "token is not a valid header value".into(),
                )));
            }
        };
        request
            .headers_mut()
            .insert(http_header::AUTHORIZATION, header);
        let config = WebSocketConfig::default()
            .max_frame_size(Some(self.max_frame_size))
            .max_message_size(Some(self.max_frame_size));
        let handshake = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            Some(self.connector.clone()),
        );
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Err(_) => Err(ConnectError::Unreachable(format!(
                "no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))),
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                // The body may echo the request: never the token.
                let token = authorization
                    .strip_prefix("bearer ")
                    .unwrap_or(&authorization);
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .replace(token, "<token>")
                            .chars()
                            .take(200)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                match status {
                    401 => {
                        self.tokens.invalidate(&authorization).await;
                        Err(ConnectError::Unauthorized(body))
                    }
                    // The request was refused as malformed or its headers as
                    // too large: the token is the likely cause and must not
                    // be sent again.
                    400 | 431 => {
                        self.tokens.invalidate(&authorization).await;
                        Err(ConnectError::Rejected { status, body })
                    }
                    _ => Err(ConnectError::Rejected { status, body }),
                }
            }
            Ok(Err(e)) => Err(ConnectError::Unreachable(e.to_string())),
        }
    }

    /// Reads frames until the connection ends or shutdown is requested.
    /// Also says whether the connection was a good one: it delivered a
    /// frame or stayed up for [`STABLE_AFTER`].
    async fn stream(&self, mut socket: Socket, shutdown: &CancellationToken) -> (Disconnect, bool) {
        let opened = tokio::time::Instant::now();
        let mut frames = 0usize;
        tracing::info!(url = %self.url, connection = self.index, "connected to the Firehose");
        self.telemetry.connections.inc();
        self.telemetry.up.set(1);
        self.state.send_replace(StreamState::Streaming);
        let end = loop {
            let next = async {
                match self.idle_timeout {
                    Some(idle) => tokio::time::timeout(idle, socket.next()).await.ok(),
                    None => Some(socket.next().await),
                }
            };
            let message = tokio::select! {
                _ = shutdown.cancelled() => {
                    let close = tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(Some(close))).await;
                    break Disconnect::Stopped;
                }
                message = next => message,
            };
            let Some(message) = message else {
                // Silence: a hung connection that would otherwise never end.
                break Disconnect::Idle(self.idle_timeout.unwrap_or_default());
            };
            let mut batch = FrameBatch::with_capacity(64);
            let mut bytes = 0;
            let mut next = message;
            // Take every frame already buffered, up to a batch, without waiting.
            let end = loop {
                match next {
                    Some(Ok(Message::Binary(frame))) => {
                        bytes += frame.len();
                        batch.push(frame);
                    }
                    // Not part of the protocol: a frame that is not an envelope.
                    Some(Ok(Message::Text(_))) => {
                        frames += 1;
                        self.telemetry.decode_errors.inc();
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        break Some(Disconnect::Closed { code, reason });
                    }
                    // Pings are answered by the websocket layer while we read.
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        break Some(Disconnect::FrameTooLarge(e.to_string()));
                    }
                    Some(Err(e)) => break Some(Disconnect::Failed(e.to_string())),
                    None => {
                        break Some(Disconnect::Failed(
                            "connection ended without a close frame".into(),
                        ));
                    }
                }
                if batch.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
                    break None;
                }
                match socket.next().now_or_never() {
                    Some(message) => next = message,
                    None => break None,
                }
            };
            frames += batch.len();
            if !batch.is_empty() && !self.frames.send(batch) {
                break Disconnect::Stopped;
            }
            if let Some(end) = end {
                if matches!(end, Disconnect::Closed { .. }) {
                    // Let the websocket layer send its close reply.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while socket.next().await.is_some() {}
                    })
                    .await;
                }
                break end;
            }
        };
        self.telemetry.connections.dec();
        self.telemetry
            .up
            .set(i64::from(self.telemetry.connections.get() > 0));
        (end, frames > 0 || opened.elapsed() >= STABLE_AFTER)
    }
}

mod http_header {
    pub use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
}
