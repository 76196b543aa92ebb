//! Sources of envelopes. Each transport owns its connections and reconnects;
//! all of them hand raw frames in batches to decoding through a bounded
//! queue, and never block on it.

pub(crate) mod backoff;
mod config;
pub(crate) mod firehose;
pub mod gateway;
pub mod grpc;
pub mod rlp;
pub(crate) mod slow_consumer;
pub mod sse;
pub mod supervisor;
pub mod tls;
pub mod uaa;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, watch};

use crate::telemetry::Telemetry;

pub use config::{Endpoint, RlpEndpoint, SourceConfig, UaaConfig};

/// Frames read together, handed to decoding in one queue slot.
pub type FrameBatch = Vec<Bytes>;

/// Most frames put in one batch.
pub const MAX_BATCH: usize = 512;

/// A batch is handed over once it holds this many bytes.
pub const MAX_BATCH_BYTES: usize = 256 << 10;

/// What the frames of a batch are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Each frame is a dropsonde v1 envelope (the Firehose).
    V1,
    /// Each frame is a v2 `EnvelopeBatch` as JSON (the RLP Gateway).
    V2Json,
    /// Each frame is a v2 `EnvelopeBatch` as protobuf (the RLP).
    V2Proto,
}

/// A batch waiting for decoding. It holds its share of the queue's byte
/// budget until it is dropped, after decoding.
#[derive(Debug)]
pub struct QueuedBatch {
    /// What the frames are.
    pub wire: Wire,
    /// The frames, in the order they were read.
    pub frames: FrameBatch,
    _bytes: OwnedSemaphorePermit,
}

/// The receiving half of the queue, for decoding.
pub type FrameReceiver = mpsc::Receiver<QueuedBatch>;

/// What a source is doing, for the landing page, readiness and `up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Not connected yet.
    Starting,
    /// Fetching a token or opening the websocket.
    Connecting,
    /// Connected and reading frames.
    Streaming,
    /// Waiting before the next attempt; the text says why.
    BackingOff(String),
    /// Shut down.
    Stopped,
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamState::Starting => f.write_str("starting"),
            StreamState::Connecting => f.write_str("connecting"),
            StreamState::Streaming => f.write_str("streaming"),
            StreamState::BackingOff(why) => write!(f, "reconnecting after: {why}"),
            StreamState::Stopped => f.write_str("stopped"),
        }
    }
}

/// The sending half of the queue from a source to decoding, bounded in
/// batches and in bytes. Full means drop and count: the socket must keep
/// being read so pings get answered.
#[derive(Debug, Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<QueuedBatch>,
    bytes: Arc<Semaphore>,
    telemetry: Telemetry,
}

impl FrameSender {
    /// A queue of at most `max_batches` batches and `max_bytes` bytes of frames.
    pub fn channel(
        max_batches: usize,
        max_bytes: usize,
        telemetry: Telemetry,
    ) -> (Self, FrameReceiver) {
        let (tx, rx) = mpsc::channel(max_batches);
        let bytes = Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS)));
        (
            Self {
                tx,
                bytes,
                telemetry,
            },
            rx,
        )
    }

    /// Hands over a batch of v1 envelopes without waiting. Returns false
    /// once decoding is gone.
    pub fn send(&self, frames: FrameBatch) -> bool {
        self.send_as(Wire::V1, frames)
    }

    /// Hands over a batch of frames of `wire` without waiting. Returns
    /// false once decoding is gone.
    pub fn send_as(&self, wire: Wire, frames: FrameBatch) -> bool {
        let size: usize = frames.iter().map(Bytes::len).sum();
        let size = u32::try_from(size.max(1)).unwrap_or(u32::MAX);
        let permit = match self.bytes.clone().try_acquire_many_owned(size) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                self.dropped(frames.len());
                return !self.tx.is_closed();
            }
            Err(TryAcquireError::Closed) => return false,
        };
        let batch = QueuedBatch {
            wire,
            frames,
            _bytes: permit,
        };
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(batch)) => {
                self.dropped(batch.frames.len());
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn dropped(&self, frames: usize) {
        self.telemetry
            .envelopes_dropped("queue_full")
            .inc_by(frames as u64);
    }
}

/// An error and its causes, on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause: say each thing once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The states of a source's connections, combined into one for the
/// landing page and readiness: streaming while any connection streams.
#[derive(Debug)]
pub struct StreamStates {
    slots: std::sync::Mutex<Vec<StreamState>>,
    combined: watch::Sender<StreamState>,
}

impl StreamStates {
    /// States for `connections` connections, and the combined view.
    pub fn new(connections: usize) -> (Arc<Self>, watch::Receiver<StreamState>) {
        let (combined, rx) = watch::channel(StreamState::Starting);
        let states = Self {
            slots: std::sync::Mutex::new(vec![StreamState::Starting; connections.max(1)]),
            combined,
        };
        (Arc::new(states), rx)
    }

    /// What connection `index` reports through.
    pub fn reporter(self: &Arc<Self>, index: usize) -> StateSender {
        StateSender {
            index,
            states: self.clone(),
        }
    }
}

/// Reports one connection's state.
#[derive(Debug, Clone)]
pub struct StateSender {
    index: usize,
    states: Arc<StreamStates>,
}

impl StateSender {
    /// Sets this connection's state and updates the combined one.
    pub fn send_replace(&self, state: StreamState) {
        let mut slots = self.states.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(self.index) {
            *slot = state;
        }
        let combined = slots
            .iter()
            .find(|s| **s == StreamState::Streaming)
            .or_else(|| slots.iter().find(|s| **s != StreamState::Stopped))
            .unwrap_or(&StreamState::Stopped)
            .clone();
        self.states.combined.send_replace(combined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_combined_state_is_streaming_while_any_connection_streams() {
        let (states, combined) = StreamStates::new(2);
        let (a, b) = (states.reporter(0), states.reporter(1));
        a.send_replace(StreamState::Connecting);
        assert_eq!(*combined.borrow(), StreamState::Connecting);
        b.send_replace(StreamState::Streaming);
        assert_eq!(*combined.borrow(), StreamState::Streaming);
        a.send_replace(StreamState::BackingOff("x".into()));
        assert_eq!(*combined.borrow(), StreamState::Streaming);
        b.send_replace(StreamState::Stopped);
        assert_eq!(*combined.borrow(), StreamState::BackingOff("x".into()));
        a.send_replace(StreamState::Stopped);
        assert_eq!(*combined.borrow(), StreamState::Stopped);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let telemetry = Telemetry::new();
        let (sender, mut rx) = FrameSender::channel(1, 1 << 20, telemetry.clone());
        let batch = |n: usize| vec![Bytes::from_static(b"x"); n];
        assert!(sender.send(batch(3)));
        assert!(sender.send(batch(5)), "full is not closed");
        assert_eq!(telemetry.envelopes_dropped("queue_full").get(), 5);
        assert_eq!(rx.try_recv().unwrap().frames.len(), 3);
        drop(rx);
        assert!(!sender.send(batch(1)), "closed once decoding is gone");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_until_batches_are_decoded() {
        let telemetry = Telemetry::new();
        let (sender, mut rx) = FrameSender::channel(100, 1000, telemetry.clone());
        let frame = Bytes::from(vec![0u8; 400]);
        assert!(sender.send(vec![frame.clone()]));
        assert!(sender.send(vec![frame.clone()]));
        // 1200 bytes would not fit in 1000.
        assert!(sender.send(vec![frame.clone(), frame.clone()]));
        assert_eq!(telemetry.envelopes_dropped("queue_full").get(), 2);
        // Decoding one batch gives its bytes back.
        drop(rx.try_recv().unwrap());
        assert!(sender.send(vec![frame.clone()]));
        assert_eq!(telemetry.envelopes_dropped("queue_full").get(), 2);
        assert_eq!(rx.try_recv().unwrap().frames.len(), 1);
        assert_eq!(rx.try_recv().unwrap().frames.len(), 1);
    }
}
