//! A Reverse Log Proxy: `loggregator.v2.Egress/BatchedReceiver` over
//! HTTP/2 with mutual TLS, a client certificate signed by its CA required.
//! A subscription gets the `EnvelopeBatch`es of the kinds its selectors
//! name; batches are split at random between the streams that share a
//! shard id, as the real one does. Faults: connections reset (mid-stream,
//! whatever is in flight), streams ended, subscriptions refused with a
//! status (`Unavailable`, `ResourceExhausted`, ...).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::pki::SimPki;
use super::v2::{Selection, Streams};
use crate::envelope::v2::Envelope;
use crate::envelope::v2::proto::EgressBatchRequest;
use crate::source::grpc::{BATCHED_RECEIVER, EgressCodec};

/// Batches buffered per stream before publishing waits.
const STREAM_BUFFER: usize = 1024;

#[derive(Debug)]
enum Command {
    /// One `EnvelopeBatch`, encoded.
    Batch(Bytes),
    /// The end of the stream, with status OK.
    End,
}

#[derive(Debug, Default)]
struct Inner {
    /// The open streams.
    streams: Streams<Command>,
    /// The tasks serving connections, to reset them.
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Subscriptions answered with this status, when set.
    refusal: Mutex<Option<Code>>,
    /// The requests received, latest last.
    requests: Mutex<Vec<EgressBatchRequest>>,
    accepted: AtomicU64,
    handshakes_failed: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Envelopes and their encoding, made once for many publications.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    envelopes: Vec<Envelope>,
    kinds: Selection,
    encoded: Bytes,
}

impl PreparedBatch {
    /// Prepares `envelopes` to be published.
    pub fn new(envelopes: Vec<Envelope>) -> Self {
        let kinds = envelopes.iter().fold(Selection(0), |kinds, e| {
            let bit = (0..8)
                .map(|bit| Selection(1 << bit))
                .find(|kind| kind.wants(e))
                .map_or(0, |kind| kind.0);
            Selection(kinds.0 | bit)
        });
        let encoded = encode(&envelopes);
        Self {
            envelopes,
            kinds,
            encoded,
        }
    }
}

fn encode(envelopes: &[Envelope]) -> Bytes {
    // Encoded from borrowed envelopes: the batch's field 1, once per envelope.
    let mut out = Vec::with_capacity(envelopes.iter().map(|e| e.encoded_len() + 4).sum());
    for envelope in envelopes {
        prost::encoding::message::encode(1, envelope, &mut out);
    }
    Bytes::from(out)
}

/// A running simulated RLP.
#[derive(Debug)]
pub struct Rlp {
    /// Where it listens.
    pub address: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rlp {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

impl Rlp {
    /// Serves on `address` with the server certificate of `pki`, accepting
    /// clients whose certificate its CA signed.
    pub async fn start(address: SocketAddr, pki: &SimPki) -> std::io::Result<Self> {
        let config = pki.server_config().map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner::default());
        let serving = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, inner) = (acceptor.clone(), serving.clone());
                let connection = tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        inner.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let inner = inner.clone();
                        async move { Ok::<_, std::convert::Infallible>(route(inner, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
                let mut connections = lock(&serving.connections);
                connections.retain(|c| !c.is_finished());
                connections.push(connection.abort_handle());
            }
        });
        Ok(Self {
            address,
            inner,
            task,
        })
    }

    /// While set, subscriptions are answered with `code` and no data.
    pub fn set_refusal(&self, code: Option<Code>) {
        *lock(&self.inner.refusal) = code;
    }

    /// Subscriptions accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed so far (a client certificate refused, say).
    pub fn handshakes_failed(&self) -> u64 {
        self.inner.handshakes_failed.load(Ordering::Relaxed)
    }

    /// The subscription requests received so far.
    pub fn requests(&self) -> Vec<EgressBatchRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Open streams.
    pub fn connections(&self) -> usize {
        self.inner.streams.open()
    }

    /// Waits until at least `n` streams are open, for at most `timeout`.
    pub async fn wait_for_connections(&self, n: usize, timeout: std::time::Duration) -> bool {
        super::poll_until(timeout, || self.connections() >= n).await
    }

    /// Sends `batch` to one stream of every shard, chosen at random within
    /// it, as one `EnvelopeBatch` of the envelopes its selectors want.
    /// Waits while that stream's buffer is full. Returns how many streams
    /// got it.
    pub async fn publish(&self, batch: &[Envelope]) -> usize {
        self.publish_prepared(&PreparedBatch::new(batch.to_vec()))
            .await
    }

    /// As [`Rlp::publish`], sending the batch's encoding as it is to every
    /// stream that wants all of it.
    pub async fn publish_prepared(&self, batch: &PreparedBatch) -> usize {
        let mut delivered = 0;
        for (selection, tx) in self.inner.streams.chosen() {
            let encoded = if selection.0 & batch.kinds.0 == batch.kinds.0 {
                batch.encoded.clone()
            } else {
                let wanted: Vec<Envelope> = batch
                    .envelopes
                    .iter()
                    .filter(|e| selection.wants(e))
                    .cloned()
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                encode(&wanted)
            };
            delivered += usize::from(tx.send(Command::Batch(encoded)).await.is_ok());
        }
        delivered
    }

    /// Ends every stream with status OK, after what was published before.
    pub fn end_all(&self) {
        self.inner.streams.take_all(|tx| {
            let _ = tx.try_send(Command::End);
        });
    }

    /// Drops every connection at once, with whatever it was sending: the
    /// client sees the connection fail in the middle of the stream.
    pub fn reset_all(&self) {
        for connection in std::mem::take(&mut *lock(&self.inner.connections)) {
            connection.abort();
        }
        self.inner.streams.take_all(drop);
    }
}

/// Answers one HTTP/2 request: the batched receiver, or `Unimplemented`.
async fn route(
    inner: Arc<Inner>,
    request: axum::http::Request<hyper::body::Incoming>,
) -> axum::http::Response<tonic::body::Body> {
    if request.uri().path() != BATCHED_RECEIVER {
        return Status::unimplemented(request.uri().path().to_owned()).into_http();
    }
    let mut grpc = tonic::server::Grpc::new(EgressCodec::<Bytes, EgressBatchRequest>::default());
    let subscribe = tower::service_fn(move |request: tonic::Request<EgressBatchRequest>| {
        let inner = inner.clone();
        async move { subscribe(&inner, request.into_inner()) }
    });
    grpc.server_streaming(subscribe, request).await
}

type BatchStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Status>> + Send>>;

/// A new stream for `request`, unless subscriptions are refused.
fn subscribe(
    inner: &Inner,
    request: EgressBatchRequest,
) -> Result<tonic::Response<BatchStream>, Status> {
    let selection = Selection::of_selectors(&request.selectors);
    let shard = request.shard_id.clone();
    lock(&inner.requests).push(request);
    if let Some(code) = *lock(&inner.refusal) {
        return Err(Status::new(code, "the simulated RLP refuses subscriptions"));
    }
    inner.accepted.fetch_add(1, Ordering::Relaxed);
    if selection.0 == 0 {
        // A request without selectors gets no data.
        return Ok(tonic::Response::new(Box::pin(
            futures_util::stream::pending(),
        )));
    }
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    inner.streams.add(shard, selection, tx);
    let batches = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Command::Batch(bytes)) => Some((Ok(bytes), rx)),
            Some(Command::End) | None => None,
        }
    });
    Ok(tonic::Response::new(Box::pin(batches)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::v2::EnvelopeBatch;

    #[test]
    fn a_prepared_batch_is_an_envelope_batch() {
        let envelopes = vec![
            Envelope {
                source_id: "a".into(),
                message: Some(crate::envelope::v2::Message::Counter(Default::default())),
                ..Default::default()
            },
            Envelope {
                source_id: "b".into(),
                message: Some(crate::envelope::v2::Message::Gauge(Default::default())),
                ..Default::default()
            },
        ];
        let batch = PreparedBatch::new(envelopes.clone());
        let decoded = EnvelopeBatch::decode(batch.encoded.clone()).unwrap();
        assert_eq!(decoded.batch, envelopes);
        assert_eq!(
            batch.kinds.0,
            Selection::kind("counter").unwrap().0 | Selection::kind("gauge").unwrap().0
        );
    }
}
