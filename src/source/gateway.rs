//! The v2 RLP Gateway: `GET <url>/v2/read?shard_id=<id>&counter&gauge&timer`
//! with the UAA token in lower-case `bearer` form, answered with
//! Server-Sent Events, one `EnvelopeBatch` as JSON per `data:` event. The
//! body is read continuously; any bytes (data, heartbeats) keep the idle
//! timeout off. A `closing` event or the end of the response is followed by
//! a new stream at once ([`Disconnect::reconnects_at_once`]); the gateway
//! answers a stale token with 404, which drops the token and fetches
//! another.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::sse::{SseEvent, SseReader};
use super::supervisor::{ConnectError, Disconnect, Transport};
use super::uaa::{TokenSource, UaaError};
use super::{FrameBatch, FrameSender, MAX_BATCH, MAX_BATCH_BYTES, Wire, error_chain};
use crate::config::ConfigError;

/// Time allowed for TCP, TLS and the response's headers together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who answers, in errors.
const PEER: &str = "RLP gateway";

/// Most bytes of an error body kept for the log.
const BODY_SHOWN: usize = 300;

/// The `/v2/read` URL for `base` (`https://log-stream.<system domain>`):
/// the shard, and counters, gauges and timers (and logs when `logs`).
pub fn read_url(base: &str, shard_id: &str, logs: bool) -> Result<Url, ConfigError> {
    let flag = "--logging.url";
    let url = Url::parse(base)
        .map_err(|e| ConfigError::new(flag, format!("{base:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(ConfigError::new(
            flag,
            format!("{base:?} must be an https:// or http:// URL for the RLP gateway"),
        ));
    }
    let mut url = Url::parse(url.as_str().trim_end_matches('/'))
        .map_err(|e| ConfigError::new(flag, e.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| ConfigError::new(flag, "cannot hold a path"))?
        .pop_if_empty()
        .extend(["v2", "read"]);
    let shard: String = url::form_urlencoded::byte_serialize(shard_id.as_bytes()).collect();
    let kinds = if logs {
        "counter&gauge&timer&log"
    } else {
        "counter&gauge&timer"
    };
    url.set_query(Some(&format!("shard_id={shard}&{kinds}")));
    Ok(url)
}

/// One subscription to the RLP Gateway.
pub struct GatewaySource {
    url: Url,
    tokens: Arc<TokenSource>,
    client: reqwest::Client,
    idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for GatewaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GatewaySource {
    /// The transport reading `url` (see [`read_url`]) with tokens from `tokens`.
    pub fn new(
        url: Url,
        tokens: Arc<TokenSource>,
        config: &crate::source::SourceConfig,
    ) -> Result<Self, reqwest::Error> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(HANDSHAKE_TIMEOUT)
            // A redirect is an answer to report, not a place to send the token.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(config.skip_ssl_verify);
        for cert in &config.doppler_ca {
            client = client.add_root_certificate(reqwest::Certificate::from_der(cert)?);
        }
        let client = client.build()?;
        let idle_timeout = config.idle_timeout;
        Ok(Self {
            url,
            tokens,
            client,
            idle_timeout,
        })
    }

    /// A body of an error answer for the log: its start, without the
    /// token. No more than that is read, however much the server sends.
    async fn body(mut response: reqwest::Response, authorization: &str) -> String {
        let token = authorization
            .strip_prefix("bearer ")
            .unwrap_or(authorization);
        let mut bytes = Vec::new();
        let read = async {
            while bytes.len() < BODY_SHOWN {
                match response.chunk().await {
                    Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, read).await;
        String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_SHOWN)])
            .replace(token, "<token>")
            .trim_end()
            .to_owned()
    }
}

impl Transport for GatewaySource {
    type Connection = reqwest::Response;

    fn name(&self) -> &'static str {
        "RLP gateway"
    }

    fn endpoint(&self) -> &str {
        self.url.as_str()
    }

    async fn connect(&mut self) -> Result<reqwest::Response, ConnectError> {
        let authorization = self.tokens.authorization().await?;
        let unreachable = |error: String| ConnectError::Unreachable { peer: PEER, error };
        let request = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, &*authorization)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        let response = match tokio::time::timeout(HANDSHAKE_TIMEOUT, request.send()).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) if e.is_builder() => {
                // The token cannot be sent as a header: never try it again.
                self.tokens.invalidate(&authorization).await;
                return Err(ConnectError::Uaa(UaaError::BadResponse(
                    "token is not a valid header value".into(),
                )));
            }
            Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        match status {
            200 => Ok(response),
            // The gateway's answer to a token it does not accept.
            404 => {
                self.tokens.invalidate(&authorization).await;
                let body = Self::body(response, &authorization).await;
                Err(ConnectError::Unauthorized { peer: PEER, body })
            }
            _ => {
                let body = Self::body(response, &authorization).await;
                Err(ConnectError::Rejected {
                    peer: PEER,
                    status,
                    body,
                })
            }
        }
    }

    async fn stream(
        &mut self,
        mut response: reqwest::Response,
        frames: &FrameSender,
        shutdown: &CancellationToken,
    ) -> (Disconnect, usize) {
        let mut reader = SseReader::default();
        let mut events = Vec::new();
        let mut read = 0usize;
        let idle = self.idle_timeout;
        loop {
            let next = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, response.chunk()).await.ok(),
                    None => Some(response.chunk().await),
                }
            };
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => return (Disconnect::Stopped, read),
                chunk = next => chunk,
            };
            let chunk = match chunk {
                None => return (Disconnect::Idle(idle.unwrap_or_default()), read),
                Some(Ok(Some(chunk))) => chunk,
                Some(Ok(None)) => return (Disconnect::Ended, read),
                Some(Err(e)) => return (Disconnect::Failed(error_chain(&e)), read),
            };
            if let Err(e) = reader.feed(&chunk, &mut events) {
                return (
                    Disconnect::FrameTooLarge(format!("{e}, from the RLP gateway")),
                    read,
                );
            }
            let mut batch = FrameBatch::new();
            let mut bytes = 0;
            let mut closing = None;
            for event in events.drain(..) {
                match event {
                    SseEvent::Data(data) => {
                        bytes += data.len();
                        batch.push(data);
                        if batch.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
                            read += batch.len();
                            if !frames.send_as(Wire::V2Json, std::mem::take(&mut batch)) {
                                return (Disconnect::Stopped, read);
                            }
                            bytes = 0;
                        }
                    }
                    SseEvent::Closing(why) => closing = Some(why),
                    SseEvent::Heartbeat | SseEvent::Other(_) => {}
                }
            }
            read += batch.len();
            if !batch.is_empty() && !frames.send_as(Wire::V2Json, batch) {
                return (Disconnect::Stopped, read);
            }
            if let Some(why) = closing {
                return (Disconnect::Closing(why), read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_url_names_the_shard_and_the_types() {
        let url = read_url("https://log-stream.sys.example.com/", "prom shard", false).unwrap();
        assert_eq!(
            url.as_str(),
            "https://log-stream.sys.example.com/v2/read?shard_id=prom+shard&counter&gauge&timer"
        );
        let url = read_url("http://127.0.0.1:8088", "s", true).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8088/v2/read?shard_id=s&counter&gauge&timer&log"
        );
        for bad in ["log-stream:8088", "wss://x", "not a url"] {
            let error = read_url(bad, "s", false).unwrap_err().to_string();
            assert!(error.starts_with("--logging.url: "), "{error}");
        }
    }
}
