//! Sources of envelopes. Each transport owns its connections and reconnects;
//! all of them hand raw frames in batches to decoding through a bounded
//! queue, and never block on it.

pub mod backoff;
pub mod firehose;
pub mod slow_consumer;
mod tls;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::telemetry::Telemetry;

/// Frames read together, handed to decoding in one queue slot.
pub type FrameBatch = Vec<Bytes>;

/// Most frames put in one batch.
pub const MAX_BATCH: usize = 512;

/// A batch is handed over once it holds this many bytes, so that the queue's
/// memory stays bounded by about `capacity × MAX_BATCH_BYTES` plus one frame
/// per batch.
pub const MAX_BATCH_BYTES: usize = 256 << 10;

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

/// The sending half of the queue from a source to decoding. Full means drop
/// and count: the socket must keep being read so pings get answered.
#[derive(Debug, Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<FrameBatch>,
    telemetry: Telemetry,
}

impl FrameSender {
    /// A bounded queue of `capacity` batches.
    pub fn channel(capacity: usize, telemetry: Telemetry) -> (Self, mpsc::Receiver<FrameBatch>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, telemetry }, rx)
    }

    /// Hands over a batch without waiting. Returns false once decoding is gone.
    pub fn send(&self, batch: FrameBatch) -> bool {
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(batch)) => {
                self.telemetry
                    .envelopes_dropped("queue_full")
                    .inc_by(batch.len() as u64);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Shared view of a source's state.
pub type StateSender = watch::Sender<StreamState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let telemetry = Telemetry::new();
        let (sender, mut rx) = FrameSender::channel(1, telemetry.clone());
        let batch = |n: usize| vec![Bytes::from_static(b"x"); n];
        assert!(sender.send(batch(3)));
        assert!(sender.send(batch(5)), "full is not closed");
        assert_eq!(telemetry.envelopes_dropped("queue_full").get(), 5);
        assert_eq!(rx.try_recv().unwrap().len(), 3);
        drop(rx);
        assert!(!sender.send(batch(1)), "closed once decoding is gone");
    }
}
