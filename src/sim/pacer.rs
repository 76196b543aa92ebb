//! Sends a workload to the simulated Traffic Controller, RLP gateway and RLP
//! at a steady rate, or as fast as the consumers read (rate 0); from
//! [`PREPARED_FROM`] envelopes a second, and at rate 0, from envelopes
//! prepared in advance. The RLP gateway and the RLP get the same envelopes
//! in their v2 form, in batches, while they have streams open.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::time::Instant;

use super::gateway::Gateway;
use super::rlp::{PreparedBatch, Rlp};
use super::traffic_controller::{FrameKind, TrafficController};
use super::v2::to_v2;
use super::workload::Workload;
use crate::envelope::v2;

/// Frames encoded in advance for rate 0: at least this many, whole rounds.
const BLAST_FRAMES: usize = 1 << 17;

/// Envelopes per batch sent to the v2 transports, as the RLP batches them.
const V2_BATCH: usize = 100;

/// Where the workload goes.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// The v1 Firehose.
    pub traffic_controller: &'a TrafficController,
    /// The v2 RLP gateway.
    pub gateway: &'a Gateway,
    /// The v2 RLP.
    pub rlp: &'a Rlp,
}

impl Targets<'_> {
    /// Whether a v2 transport has a stream open.
    fn v2_streaming(&self) -> bool {
        self.gateway.connections() > 0 || self.rlp.connections() > 0
    }
}

/// Rates from which envelopes are prepared in advance and cycled through,
/// as with rate 0, rather than made one by one.
pub const PREPARED_FROM: u32 = 20_000;

/// Publishes `rate` envelopes per second from `workload` until dropped; with
/// rate 0, as fast as the consumers take them. Below [`PREPARED_FROM`], the
/// first round goes out at once so that every series exists from the start.
pub async fn run(mut workload: Workload, targets: Targets<'_>, rate: u32) {
    if rate == 0 || rate >= PREPARED_FROM {
        return cycle(Prepared::new(workload), targets, rate).await;
    }
    let rate = f64::from(rate);
    let mut pending = Vec::new();
    let mut streaming = targets.v2_streaming();
    for _ in 0..workload.round_len() {
        publish(&mut workload, targets, streaming, &mut pending).await;
    }
    flush(targets, &mut pending).await;
    let mut pace = Pace::new(rate);
    loop {
        let burst = pace.next().await;
        streaming = targets.v2_streaming();
        for _ in 0..burst {
            publish(&mut workload, targets, streaming, &mut pending).await;
        }
        flush(targets, &mut pending).await;
    }
}

/// How many envelopes are due, every 10 ms.
struct Pace {
    rate: f64,
    started: Instant,
    sent: u64,
    ticker: tokio::time::Interval,
}

impl Pace {
    fn new(rate: f64) -> Self {
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            rate,
            started: Instant::now(),
            sent: 0,
            ticker,
        }
    }

    /// Waits for the next tick; how many envelopes to send now.
    async fn next(&mut self) -> u64 {
        self.ticker.tick().await;
        let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
        // After a stall, catch up by at most a tenth of a second's worth.
        let burst = (due - self.sent.min(due)).min((self.rate / 10.0).max(1.0) as u64);
        self.sent = self.sent.max(due.saturating_sub(burst)) + burst;
        burst
    }
}

/// Envelopes prepared in advance, whole rounds of the workload: encoded for
/// the Firehose, in v2 batches for the gateway and encoded for the RLP.
struct Prepared {
    frames: Vec<(Bytes, FrameKind)>,
    batches: Vec<Vec<v2::Envelope>>,
    encoded: Vec<PreparedBatch>,
}

impl Prepared {
    fn new(mut workload: Workload) -> Self {
        let rounds = BLAST_FRAMES.div_ceil(workload.round_len().max(1));
        let envelopes: Vec<_> = (0..rounds * workload.round_len())
            .map(|_| workload.next_envelope())
            .collect();
        let frames = envelopes.iter().map(encode).collect();
        let batches: Vec<Vec<v2::Envelope>> = envelopes
            .chunks(V2_BATCH)
            .map(|chunk| chunk.iter().filter_map(to_v2).collect())
            .collect();
        let encoded = batches.iter().cloned().map(PreparedBatch::new).collect();
        Self {
            frames,
            batches,
            encoded,
        }
    }
}

/// Cycles through envelopes prepared in advance, so that the simulation
/// spends its time sending, not encoding: at `rate` envelopes a second, or
/// with 0 as fast as the consumers take them. Counters start over at each
/// cycle, as after an agent restart.
async fn cycle(prepared: Prepared, targets: Targets<'_>, rate: u32) {
    let mut pace = (rate > 0).then(|| Pace::new(f64::from(rate)));
    let mut due = 0u64;
    loop {
        let chunks = prepared.frames.chunks(V2_BATCH).zip(&prepared.batches);
        for ((frames, batch), encoded) in chunks.zip(&prepared.encoded) {
            if let Some(pace) = &mut pace {
                while due < frames.len() as u64 {
                    due += pace.next().await;
                }
                due -= frames.len() as u64;
            }
            let mut taken = 0;
            for (frame, kind) in frames {
                taken += targets
                    .traffic_controller
                    .publish(frame.clone(), *kind)
                    .await;
            }
            if targets.gateway.connections() > 0 {
                taken += targets.gateway.publish(batch).await;
            }
            if targets.rlp.connections() > 0 {
                taken += targets.rlp.publish_prepared(encoded).await;
            }
            if taken == 0 && pace.is_none() {
                // Nobody is listening: wait for a consumer instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn encode(envelope: &crate::envelope::Envelope) -> (Bytes, FrameKind) {
    let kind = if envelope.log_message.is_some() {
        FrameKind::Log
    } else {
        FrameKind::Metric
    };
    (Bytes::from(envelope.encode_to_vec()), kind)
}

async fn publish(
    workload: &mut Workload,
    targets: Targets<'_>,
    streaming: bool,
    pending: &mut Vec<v2::Envelope>,
) {
    let envelope = workload.next_envelope();
    let (frame, kind) = encode(&envelope);
    targets.traffic_controller.publish(frame, kind).await;
    if streaming {
        pending.extend(to_v2(&envelope));
        if pending.len() >= V2_BATCH {
            flush(targets, pending).await;
        }
    }
}

async fn flush(targets: Targets<'_>, pending: &mut Vec<v2::Envelope>) {
    if !pending.is_empty() {
        if targets.gateway.connections() > 0 {
            targets.gateway.publish(pending).await;
        }
        if targets.rlp.connections() > 0 {
            targets.rlp.publish(pending).await;
        }
        pending.clear();
    }
}
