//! The v1 Firehose: a websocket to the Traffic Controller at
//! `/firehose/<subscription-id>`, one dropsonde envelope per binary frame.
//! Reads continuously (so the server's pings are answered), hands frames to
//! decoding in batches. The [`Supervisor`](super::supervisor::Supervisor)
//! reconnects it with backoff on any close or error.

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

use super::SourceConfig;
use super::slow_consumer::SlowConsumerWatch;
use super::supervisor::{ConnectError, Disconnect, Transport};
use super::{FrameBatch, FrameSender, MAX_BATCH, MAX_BATCH_BYTES, tls};
use crate::config::ConfigError;
use crate::source::uaa::{TokenSource, UaaError};
use crate::telemetry::Telemetry;

/// Time allowed for TCP, TLS and the websocket handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who answers the Firehose, in errors.
const PEER: &str = "Traffic Controller";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The v1 Firehose transport: one subscription's websocket.
pub struct FirehoseSource {
    url: Url,
    tokens: Arc<TokenSource>,
    telemetry: Telemetry,
    connector: Connector,
    idle_timeout: Option<Duration>,
    max_frame_size: usize,
    slow_consumer: SlowConsumerWatch,
}

impl std::fmt::Debug for FirehoseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirehoseSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FirehoseSource {
    /// The transport for `config`, with tokens from `tokens`.
    pub fn new(
        url: &Url,
        config: &SourceConfig,
        tokens: Arc<TokenSource>,
        telemetry: Telemetry,
    ) -> Result<Self, rustls::Error> {
        let connector = match url.scheme() {
            "wss" => Connector::Rustls(tls::client_config(
                config.skip_ssl_verify,
                &config.doppler_ca,
            )?),
            _ => Connector::Plain,
        };
        Ok(Self {
            url: url.clone(),
            tokens,
            telemetry,
            connector,
            idle_timeout: config.idle_timeout,
            max_frame_size: config.max_frame_size,
            slow_consumer: SlowConsumerWatch::default(),
        })
    }
}

impl Transport for FirehoseSource {
    type Connection = Socket;

    fn name(&self) -> &'static str {
        "Firehose"
    }

    fn endpoint(&self) -> &str {
        self.url.as_str()
    }

    async fn connect(&mut self) -> Result<Socket, ConnectError> {
        self.open().await
    }

    async fn stream(
        &mut self,
        socket: Socket,
        frames: &FrameSender,
        shutdown: &CancellationToken,
    ) -> (Disconnect, usize) {
        self.read(socket, frames, shutdown).await
    }

    fn slow_consumer(&mut self, end: &Disconnect) -> bool {
        match end {
            Disconnect::Closed { code, .. } => self
                .slow_consumer
                .on_close(*code, tokio::time::Instant::now()),
            _ => false,
        }
    }
}

impl FirehoseSource {
    /// Gets a token and opens the websocket. A 401 invalidates the token.
    async fn open(&self) -> Result<Socket, ConnectError> {
        let authorization = self.tokens.authorization().await?;
        let mut request =
            self.url
                .as_str()
                .into_client_request()
                .map_err(|e| ConnectError::Unreachable {
                    peer: PEER,
                    error: e.to_string(),
                })?;
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
            Err(_) => Err(ConnectError::Unreachable {
                peer: PEER,
                error: format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            }),
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
                        Err(ConnectError::Unauthorized { peer: PEER, body })
                    }
                    // The request was refused as malformed or its headers as
                    // too large: the token is the likely cause and must not
                    // be sent again.
                    400 | 431 => {
                        self.tokens.invalidate(&authorization).await;
                        Err(ConnectError::Rejected {
                            peer: PEER,
                            status,
                            body,
                        })
                    }
                    _ => Err(ConnectError::Rejected {
                        peer: PEER,
                        status,
                        body,
                    }),
                }
            }
            Ok(Err(e)) => Err(ConnectError::Unreachable {
                peer: PEER,
                error: e.to_string(),
            }),
        }
    }

    /// Reads frames into `out` until the connection ends or shutdown is
    /// requested; also says how many frames it read.
    async fn read(
        &self,
        mut socket: Socket,
        out: &FrameSender,
        shutdown: &CancellationToken,
    ) -> (Disconnect, usize) {
        let mut frames = 0usize;
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
            if !batch.is_empty() && !out.send(batch) {
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
        (end, frames)
    }
}

mod http_header {
    pub use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
}

/// The Firehose URL, `<doppler>/firehose/<id>?filter-type=metrics`, with the
/// scheme turned into `wss` or `ws`.
pub fn firehose_url(doppler: &str, subscription_id: &str) -> Result<Url, ConfigError> {
    let flag = "--doppler.url";
    let mut url = Url::parse(doppler)
        .map_err(|e| ConfigError::new(flag, format!("{doppler:?} is not a URL: {e}")))?;
    let scheme = match url.scheme() {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        other => {
            return Err(ConfigError::new(
                flag,
                format!("scheme {other:?} is not one of wss, https, ws, http"),
            ));
        }
    };
    if url.host().is_none() {
        return Err(ConfigError::new(flag, format!("{doppler:?} has no host")));
    }
    let base = format!("{scheme}{}", &url.as_str()[url.scheme().len()..]);
    url = Url::parse(base.trim_end_matches('/'))
        .map_err(|e| ConfigError::new(flag, e.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| ConfigError::new(flag, "cannot hold a path"))?
        .pop_if_empty()
        .extend(["firehose", subscription_id]);
    url.set_query(Some("filter-type=metrics"));
    Ok(url)
}
