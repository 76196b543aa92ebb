//! Sends a workload to the simulated Traffic Controller and RLP gateway at
//! a steady rate, or as fast as the consumers read (rate 0) from envelopes
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

/// Publishes `rate` envelopes per second from `workload` until dropped; with
/// rate 0, as fast as the consumers take them. The first round goes out at
/// once so that every series exists from the start.
pub async fn run(mut workload: Workload, targets: Targets<'_>, rate: u32) {
    if rate == 0 {
        return blast(workload, targets).await;
    }
    let rate = f64::from(rate);
    let mut pending = Vec::new();
    let mut streaming = targets.v2_streaming();
    for _ in 0..workload.round_len() {
        publish(&mut workload, targets, streaming, &mut pending).await;
    }
    flush(targets, &mut pending).await;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        streaming = targets.v2_streaming();
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        // After a stall, catch up by at most a tenth of a second's worth.
        let burst = (due - sent.min(due)).min((rate / 10.0).max(1.0) as u64);
        for _ in 0..burst {
            publish(&mut workload, targets, streaming, &mut pending).await;
        }
        flush(targets, &mut pending).await;
        sent = sent.max(due.saturating_sub(burst)) + burst;
    }
}

/// Cycles through envelopes prepared in advance, so that the simulation
/// spends its time sending, not encoding. Counters start over at each
/// cycle, as after an agent restart.
async fn blast(mut workload: Workload, targets: Targets<'_>) {
    let rounds = BLAST_FRAMES.div_ceil(workload.round_len().max(1));
    let envelopes: Vec<_> = (0..rounds * workload.round_len())
        .map(|_| workload.next_envelope())
        .collect();
    let frames: Vec<(Bytes, FrameKind)> = envelopes.iter().map(encode).collect();
    let batches: Vec<Vec<v2::Envelope>> = envelopes
        .chunks(V2_BATCH)
        .map(|chunk| chunk.iter().filter_map(to_v2).collect())
        .collect();
    let prepared: Vec<PreparedBatch> = batches.iter().cloned().map(PreparedBatch::new).collect();
    loop {
        for ((frames, batch), prepared) in frames.chunks(V2_BATCH).zip(&batches).zip(&prepared) {
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
                taken += targets.rlp.publish_prepared(prepared).await;
            }
            if taken == 0 {
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
