//! The v2 Reverse Log Proxy: `loggregator.v2.Egress/BatchedReceiver` over
//! HTTP/2 with mutual TLS, as the platform's own consumers subscribe. The
//! request names the shard, prefers `tags` to `deprecated_tags` and selects
//! counters, gauges and timers of every source (and logs when wanted). Each
//! `EnvelopeBatch` is handed to decoding as it arrived, still encoded
//! ([`super::grpc`]); the RLP sends one every 100 envelopes or 100 ms.
//!
//! The server's certificate is checked against the platform's CA for the
//! name `reverselogproxy` (whatever address is dialled), as the Loggregator
//! CA issues it; `--logging.tls.server-name` says otherwise.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Uri};
use tonic::{Code, Status, Streaming};

use super::grpc::{BATCHED_RECEIVER, EgressCodec};
use super::supervisor::{ConnectError, Disconnect, Transport};
use super::tls::mutual_tls_config;
use super::{FrameSender, MAX_BATCH, MAX_BATCH_BYTES, RlpEndpoint, Wire, error_chain};
use crate::config::ConfigError;
use crate::envelope::v2::proto::{
    CounterSelector, EgressBatchRequest, GaugeSelector, LogSelector, Selector, TimerSelector,
    selector,
};

/// The name the RLP's certificate is issued for.
pub const DEFAULT_SERVER_NAME: &str = "reverselogproxy";

/// The smallest receive limit for one batch: 100 envelopes of long log
/// lines (about 60 KiB each) must fit.
pub const MIN_MESSAGE_LIMIT: usize = 16 << 20;

/// Time allowed for TCP, TLS and the answer's headers together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings find a dead connection while the stream is quiet.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Who answers, in errors.
const PEER: &str = "RLP";

/// The subscription: `shard_id`, preferred tags, and one selector per kind
/// of envelope wanted, for all sources.
pub fn batch_request(shard_id: &str, logs: bool) -> EgressBatchRequest {
    let mut kinds = vec![
        selector::Message::Counter(CounterSelector::default()),
        selector::Message::Gauge(GaugeSelector::default()),
        selector::Message::Timer(TimerSelector {}),
    ];
    if logs {
        kinds.push(selector::Message::Log(LogSelector {}));
    }
    EgressBatchRequest {
        shard_id: shard_id.to_owned(),
        use_preferred_tags: true,
        selectors: kinds
            .into_iter()
            .map(|message| Selector {
                source_id: String::new(),
                message: Some(message),
            })
            .collect(),
        ..Default::default()
    }
}

/// Checks `--logging.url` as the RLP's `host:port` (a `https://` prefix
/// is tolerated) and returns it without the scheme.
pub fn rlp_address(url: &str) -> Result<String, ConfigError> {
    let flag = "--logging.url";
    let address = url
        .strip_prefix("https://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let invalid = |why: &str| {
        ConfigError::new(
            flag,
            format!(
                "{url:?} {why}: the RLP is addressed as host:port, e.g. q-s0.log-api.service.cf.internal:8082"
            ),
        )
    };
    if address.contains("://") {
        return Err(invalid("has a scheme other than https"));
    }
    let parsed =
        Uri::try_from(format!("https://{address}")).map_err(|_| invalid("is not valid"))?;
    if parsed.port_u16().is_none() || parsed.host().is_none_or(str::is_empty) {
        return Err(invalid("has no port"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(invalid("has a path"));
    }
    Ok(address.to_owned())
}

/// One subscription to the Reverse Log Proxy.
pub struct RlpSource {
    address: String,
    endpoint: tonic::transport::Endpoint,
    tls: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    request: EgressBatchRequest,
    idle_timeout: Option<Duration>,
    max_message: usize,
}

impl std::fmt::Debug for RlpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RlpSource")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl RlpSource {
    /// The transport subscribing to `rlp`; loads the certificates (each
    /// file that cannot be used fails with its flag and the cause).
    pub fn new(
        rlp: &RlpEndpoint,
        skip_ssl_verify: bool,
        idle_timeout: Option<Duration>,
        max_frame_size: usize,
    ) -> Result<Self, ConfigError> {
        let tls = mutual_tls_config(&rlp.tls, skip_ssl_verify)?;
        let server_name = ServerName::try_from(rlp.server_name.clone()).map_err(|e| {
            ConfigError::new(
                "--logging.tls.server-name",
                format!("{:?}: {e}", rlp.server_name),
            )
        })?;
        // TLS is the connector's: the channel itself speaks plain HTTP/2.
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", rlp.address))
            .map_err(|e| ConfigError::new("--logging.url", e.to_string()))?
            .user_agent(concat!("cf-firehose-exporter/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| ConfigError::new("--logging.url", e.to_string()))?
            .connect_timeout(HANDSHAKE_TIMEOUT)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        Ok(Self {
            address: rlp.address.clone(),
            endpoint,
            tls,
            server_name,
            request: batch_request(&rlp.shard_id, rlp.logs),
            idle_timeout,
            max_message: max_frame_size.max(MIN_MESSAGE_LIMIT),
        })
    }

    /// Opens TCP and TLS to the RLP for the channel.
    fn connector(
        &self,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
        Error = std::io::Error,
        Future = impl Send,
    > + Send
    + 'static {
        let (tls, name) = (self.tls.clone(), self.server_name.clone());
        let address = self.address.clone();
        tower::service_fn(move |_uri: Uri| {
            let (tls, name, address) = (tls.clone(), name.clone(), address.clone());
            async move {
                let tcp = TcpStream::connect(&address).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        std::io::Error::other(format!(
                            "TLS handshake (as {}) failed: {e}",
                            name.to_str()
                        ))
                    })?;
                Ok(TokioIo::new(stream))
            }
        })
    }

    /// A failed stream as a disconnect.
    fn ended(status: &Status) -> Disconnect {
        let text = describe(status);
        if status.code() == Code::OutOfRange || text.contains("message length too large") {
            return Disconnect::FrameTooLarge(format!("{text}, from the RLP"));
        }
        Disconnect::Failed(text)
    }
}

/// A status on one line: its code, its message and the causes.
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}", status.code());
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        if !text.contains(&chain) {
            text.push_str(": ");
            text.push_str(&chain);
        }
    }
    text
}

impl Transport for RlpSource {
    /// The channel is kept with the stream it carries.
    type Connection = (Channel, Streaming<Bytes>);

    fn name(&self) -> &'static str {
        "RLP"
    }

    fn endpoint(&self) -> &str {
        &self.address
    }

    async fn connect(&mut self) -> Result<Self::Connection, ConnectError> {
        let unreachable = |error: String| ConnectError::Unreachable { peer: PEER, error };
        let subscribe = async {
            let channel = self
                .endpoint
                .connect_with_connector(self.connector())
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let mut grpc = tonic::client::Grpc::new(channel.clone())
                .max_decoding_message_size(self.max_message);
            grpc.ready()
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let path = axum::http::uri::PathAndQuery::from_static(BATCHED_RECEIVER);
            let request = tonic::Request::new(self.request.clone());
            match grpc
                .server_streaming(request, path, EgressCodec::<_, Bytes>::default())
                .await
            {
                Ok(response) => Ok((channel, response.into_inner())),
                // The call never reached the server.
                Err(status) if std::error::Error::source(&status).is_some() => {
                    Err(unreachable(describe(&status)))
                }
                Err(status) => Err(ConnectError::Refused {
                    peer: PEER,
                    code: format!("{:?}", status.code()),
                    message: status.message().to_owned(),
                }),
            }
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, subscribe).await {
            Ok(result) => result,
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn stream(
        &mut self,
        (_channel, mut messages): Self::Connection,
        frames: &FrameSender,
        shutdown: &CancellationToken,
    ) -> (Disconnect, usize) {
        let mut read = 0usize;
        let idle = self.idle_timeout;
        loop {
            let next = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, messages.message()).await.ok(),
                    None => Some(messages.message().await),
                }
            };
            let first = tokio::select! {
                _ = shutdown.cancelled() => return (Disconnect::Stopped, read),
                next = next => next,
            };
            let first = match first {
                None => return (Disconnect::Idle(idle.unwrap_or_default()), read),
                Some(Ok(Some(batch))) => batch,
                Some(Ok(None)) => return (Disconnect::Ended, read),
                Some(Err(status)) => return (Self::ended(&status), read),
            };
            // With it, whatever else has arrived, without waiting.
            let (mut bytes, mut batch, mut end) = (first.len(), vec![first], None);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match messages.message().now_or_never() {
                    None => break,
                    Some(Ok(Some(more))) => {
                        bytes += more.len();
                        batch.push(more);
                    }
                    Some(Ok(None)) => end = Some(Disconnect::Ended),
                    Some(Err(status)) => end = Some(Self::ended(&status)),
                }
                if end.is_some() {
                    break;
                }
            }
            read += batch.len();
            if !frames.send_as(Wire::V2Proto, batch) {
                return (Disconnect::Stopped, read);
            }
            if let Some(end) = end {
                return (end, read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_selects_metrics_of_every_source_with_preferred_tags() {
        let request = batch_request("prometheus", false);
        assert_eq!(request.shard_id, "prometheus");
        assert!(request.use_preferred_tags);
        let kinds: Vec<_> = request
            .selectors
            .iter()
            .map(|s| {
                assert_eq!(s.source_id, "");
                match s.message {
                    Some(selector::Message::Counter(_)) => "counter",
                    Some(selector::Message::Gauge(_)) => "gauge",
                    Some(selector::Message::Timer(_)) => "timer",
                    Some(selector::Message::Log(_)) => "log",
                    _ => "other",
                }
            })
            .collect();
        assert_eq!(kinds, ["counter", "gauge", "timer"]);
        assert_eq!(batch_request("s", true).selectors.len(), 4);
    }

    #[test]
    fn the_address_is_host_and_port() {
        for (url, address) in [
            (
                "q-s0.log-api.service.cf.internal:8082",
                "q-s0.log-api.service.cf.internal:8082",
            ),
            ("https://10.0.4.7:8082/", "10.0.4.7:8082"),
            ("[::1]:8082", "[::1]:8082"),
        ] {
            assert_eq!(rlp_address(url).unwrap(), address);
        }
        for bad in [
            "rlp.internal",
            "http://rlp:8082",
            "rlp:8082/v2",
            "rlp:port",
            ":8082",
        ] {
            let error = rlp_address(bad).unwrap_err().to_string();
            assert!(error.starts_with("--logging.url: "), "{bad}: {error}");
            assert!(error.contains("host:port"), "{error}");
        }
    }
}
