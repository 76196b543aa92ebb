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
use super::{FrameBatch, FrameSender, MAX_BATCH, StateSender, StreamState, tls};
use crate::config::SourceConfig;
use crate::telemetry::Telemetry;
use crate::uaa::{TokenSource, UaaError};

/// Time allowed for TCP, TLS and the websocket handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame accepted; an envelope is a few hundred bytes.
const MAX_FRAME_SIZE: usize = 4 << 20;

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
    #[error("Traffic Controller answered the handshake with HTTP {status}: {body}")]
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

/// How an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disconnect {
    /// The server sent a close frame.
    Closed { code: u16, reason: String },
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
            Disconnect::Failed(_) => "error",
            Disconnect::Stopped => "stopped",
        }
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
    ) -> Result<Self, String> {
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
        })
    }

    /// Connects, streams and reconnects until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_failure = String::new();
        let mut retry_unauthorized = true;
        while !shutdown.is_cancelled() {
            self.state.send_replace(StreamState::Connecting);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                attempt = self.connect() => attempt,
            };
            let failure = match attempt {
                Ok(socket) => {
                    retry_unauthorized = true;
                    last_failure.clear();
                    self.backoff.reset();
                    match self.stream(socket, &shutdown).await {
                        Disconnect::Stopped => break,
                        end => {
                            self.telemetry.reconnects(end.reason_label()).inc();
                            match end {
                                Disconnect::Closed { code: 1008, reason } => {
                                    // The Traffic Controller's keepalive gave up on us.
                                    self.telemetry.slow_consumer_alerts.inc();
                                    tracing::warn!(
                                        code = 1008,
                                        reason = %reason,
                                        "Firehose closed the connection: this consumer is too slow; \
                                         add connections or exporter instances"
                                    );
                                    "closed with code 1008 (slow consumer)".to_owned()
                                }
                                Disconnect::Closed { code, reason } => {
                                    tracing::warn!(code, reason = %reason, "Firehose closed the connection");
                                    format!("closed with code {code}")
                                }
                                Disconnect::Failed(error) => {
                                    tracing::warn!(%error, "Firehose connection lost");
                                    error
                                }
                                Disconnect::Stopped => unreachable!("handled above"),
                            }
                        }
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
                    if text != last_failure {
                        match &error {
                            ConnectError::Uaa(UaaError::Credentials(_)) => {
                                tracing::error!(error = %text, "check --uaa.client-id and --uaa.client-secret")
                            }
                            _ => tracing::warn!(error = %text, "cannot connect to the Firehose"),
                        }
                        last_failure = text.clone();
                    }
                    text
                }
            };
            let delay = self.backoff.next_delay();
            tracing::info!("reconnecting in {:.1} s", delay.as_secs_f64());
            self.state.send_replace(StreamState::BackingOff(failure));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.state.send_replace(StreamState::Stopped);
    }

    /// Gets a token and opens the websocket. A 401 invalidates the token.
    async fn connect(&self) -> Result<Socket, ConnectError> {
        let authorization = self.tokens.authorization().await?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let header = authorization.parse().map_err(|_| {
            ConnectError::Uaa(UaaError::BadResponse(
                "token is not a valid header value".into(),
            ))
        })?;
        request
            .headers_mut()
            .insert(http_header::AUTHORIZATION, header);
        let config = WebSocketConfig::default()
            .max_frame_size(Some(MAX_FRAME_SIZE))
            .max_message_size(Some(MAX_FRAME_SIZE));
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
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                if status == 401 {
                    self.tokens.invalidate(&authorization).await;
                    Err(ConnectError::Unauthorized(body))
                } else {
                    Err(ConnectError::Rejected { status, body })
                }
            }
            Ok(Err(e)) => Err(ConnectError::Unreachable(e.to_string())),
        }
    }

    /// Reads frames until the connection ends or shutdown is requested.
    async fn stream(&self, mut socket: Socket, shutdown: &CancellationToken) -> Disconnect {
        tracing::info!(url = %self.url, "connected to the Firehose");
        self.telemetry.connections.inc();
        self.telemetry.up.set(1);
        self.state.send_replace(StreamState::Streaming);
        let end = loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => {
                    let close = tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(Some(close))).await;
                    break Disconnect::Stopped;
                }
                message = socket.next() => message,
            };
            let mut batch = FrameBatch::new();
            let mut next = message;
            // Take every frame already buffered, up to a batch, without waiting.
            let end = loop {
                match next {
                    Some(Ok(Message::Binary(frame))) => batch.push(frame),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        break Some(Disconnect::Closed { code, reason });
                    }
                    // Pings are answered by the websocket layer while we read;
                    // text frames are not part of the protocol.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Some(Disconnect::Failed(e.to_string())),
                    None => {
                        break Some(Disconnect::Failed(
                            "connection ended without a close frame".into(),
                        ));
                    }
                }
                if batch.len() >= MAX_BATCH {
                    break None;
                }
                match socket.next().now_or_never() {
                    Some(message) => next = message,
                    None => break None,
                }
            };
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
        self.telemetry.up.set(0);
        end
    }
}

mod http_header {
    pub use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
}
