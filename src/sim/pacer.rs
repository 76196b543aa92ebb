//! Sends a workload to a Traffic Controller at a steady rate.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::time::Instant;

use super::traffic_controller::{FrameKind, TrafficController};
use super::workload::Workload;

/// Publishes `rate` envelopes per second from `workload` until dropped. The
/// first round goes out at once so that every series exists from the start.
pub async fn run(mut workload: Workload, traffic_controller: &TrafficController, rate: u32) {
    let rate = f64::from(rate.max(1));
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

async fn publish(workload: &mut Workload, traffic_controller: &TrafficController) {
    let envelope = workload.next_envelope();
    let kind = if envelope.log_message.is_some() {
        FrameKind::Log
    } else {
        FrameKind::Metric
    };
    traffic_controller
        .publish(Bytes::from(envelope.encode_to_vec()), kind)
        .await;
}
