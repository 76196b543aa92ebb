//! What ingestion hands to remote-write: each value an envelope sets (a
//! gauge's reading, a counter's running total), as a sample of the series it
//! set, at the envelope's own time. Samples wait in the task until its batch
//! ends, then go to the endpoints together.

use crate::exposition::remote_write::{Forwarding, Sample, SeriesRef};
use crate::naming::Value;
use crate::store::SeriesHandle;

/// How far ahead of this host's clock an envelope's time may be: Mimir and
/// Cortex refuse samples further in the future by default (their creation
/// grace period), and one such sample would cost its whole request.
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// One ingestion task's samples for remote-write; off without endpoints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tap {
    forwarding: Option<Forwarding>,
    pending: Vec<Sample>,
    /// The time of the envelope at hand, in milliseconds since the epoch.
    timestamp_ms: i64,
    /// When the batch at hand arrived.
    arrived_ms: i64,
}

impl Tap {
    pub(crate) fn new(forwarding: Forwarding) -> Self {
        Self {
            forwarding: Some(forwarding),
            ..Self::default()
        }
    }

    /// Whether samples are wanted.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.forwarding.is_some()
    }

    /// A batch begins.
    pub(crate) fn batch(&mut self) {
        if self.on() {
            self.arrived_ms = crate::telemetry::unix_now_ms();
        }
    }

    /// An envelope emitted at `timestamp_ns` (0 when not sent) begins: its
    /// samples take its time, or the batch's arrival when it has none or
    /// is too far ahead.
    #[inline]
    pub(crate) fn envelope(&mut self, timestamp_ns: i64) {
        let Some(forwarding) = &self.forwarding else {
            return;
        };
        let ms = timestamp_ns.div_euclid(1_000_000);
        self.timestamp_ms = if timestamp_ns <= 0 {
            self.arrived_ms
        } else if ms > self.arrived_ms + MAX_AHEAD_MS {
            forwarding.future_timestamps().inc();
            self.arrived_ms
        } else {
            ms
        };
    }

    /// `value` was applied to the series of `handle`: a value set becomes a
    /// sample; what adds to a series is this process' own count, sent with
    /// the aggregates.
    #[inline]
    pub(crate) fn record(&mut self, handle: &SeriesHandle, value: Value) {
        if let (true, Value::Set(value)) = (self.on(), value) {
            self.pending.push(Sample {
                series: SeriesRef::Stored {
                    family: handle.family().clone(),
                    suffix: handle.kind().suffix(),
                    labels: handle.labels().clone(),
                },
                value,
                timestamp_ms: self.timestamp_ms,
            });
        }
    }

    /// Hands the batch's samples to the endpoints. The next batch starts
    /// with room for as many as this one had, not for the most any batch
    /// had: a queue of small batches each with room for a burst would hold
    /// far more memory than its samples.
    pub(crate) fn flush(&mut self) {
        if let Some(forwarding) = &self.forwarding
            && !self.pending.is_empty()
        {
            let len = self.pending.len();
            forwarding.push(std::mem::replace(
                &mut self.pending,
                Vec::with_capacity(len),
            ));
        }
    }
}
