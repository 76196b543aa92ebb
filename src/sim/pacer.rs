//! Sends a workload to a Traffic Controller at a steady rate, or as fast as
//! the consumers read (rate 0) from frames encoded in advance.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::time::Instant;

use super::traffic_controller::{FrameKind, TrafficController};
use super::workload::Workload;

/// Frames encoded in advance for rate 0: at least this many, whole rounds.
const BLAST_FRAMES: usize = 1 << 17;

/// Publishes `rate` envelopes per second from `workload` until dropped; with
/// rate 0, as fast as the consumers take them. The first round goes out at
/// once so that every series exists from the start.
pub async fn run(mut workload: Workload, traffic_controller: &TrafficController, rate: u32) {
    if rate == 0 {
        return blast(workload, traffic_controller).await;
    }
    let rate = f64::from(rate);
    for _ in 0..workload.round_len() {
        publish(&mut workload, traffic_controller).await;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        // After a stall, catch up by at most a tenth of a second's worth.
        let burst = (due - sent.min(due)).min((rate / 10.0).max(1.0) as u64);
        for _ in 0..burst {
            publish(&mut workload, traffic_controller).await;
        }
        sent = sent.max(due.saturating_sub(burst)) + burst;
    }
}

/// Cycles through frames encoded in advance, so that the simulation spends
/// its time sending, not encoding. Counters start over at each cycle, as
/// after an agent restart.
async fn blast(mut workload: Workload, traffic_controller: &TrafficController) {
    let rounds = BLAST_FRAMES.div_ceil(workload.round_len().max(1));
    let frames: Vec<(Bytes, FrameKind)> = (0..rounds * workload.round_len())
        .map(|_| encode(&mut workload))
        .collect();
    loop {
        for (frame, kind) in &frames {
            if traffic_controller.publish(frame.clone(), *kind).await == 0 {
                // Nobody is listening: wait for a consumer instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn encode(workload: &mut Workload) -> (Bytes, FrameKind) {
    let envelope = workload.next_envelope();
    let kind = if envelope.log_message.is_some() {
        FrameKind::Log
    } else {
        FrameKind::Metric
    };
    (Bytes::from(envelope.encode_to_vec()), kind)
}

async fn publish(workload: &mut Workload, traffic_controller: &TrafficController) {
    let (frame, kind) = encode(workload);
    traffic_controller.publish(frame, kind).await;
}
