//! Signs that the Firehose is cutting this consumer off for reading too
//! slowly. The Traffic Controller closes with 1008 when pings go unanswered,
//! and with a plain 1000 when it cannot hand an envelope over within 5 s; old
//! Dopplers also inject a `TruncatingBuffer.DroppedMessages` counter (counted
//! in ingestion). A single 1000 is also how a stream ends for other reasons,
//! so only repeated ones count.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// 1000 closes within [`NORMAL_CLOSE_WINDOW`] that make an alert.
pub const NORMAL_CLOSES_FOR_ALERT: usize = 3;
/// The window in which repeated 1000 closes are counted.
pub const NORMAL_CLOSE_WINDOW: Duration = Duration::from_secs(300);

/// What an operator should do about a slow consumer.
pub const ADVICE: &str = "this consumer reads too slowly for the Firehose: \
     add connections (--doppler.connections) or exporter instances with the same subscription id, \
     or give it more CPU";

/// Watches close codes for slow-consumer cuts.
#[derive(Debug, Default)]
pub struct SlowConsumerWatch {
    normal_closes: VecDeque<Instant>,
}

impl SlowConsumerWatch {
    /// Records a close with `code` at `now`; true when it is a slow-consumer sign.
    pub fn on_close(&mut self, code: u16, now: Instant) -> bool {
        match code {
            1008 => true,
            1000 => {
                while self
                    .normal_closes
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= NORMAL_CLOSE_WINDOW)
                {
                    self.normal_closes.pop_front();
                }
                self.normal_closes.push_back(now);
                if self.normal_closes.len() >= NORMAL_CLOSES_FOR_ALERT {
                    self.normal_closes.clear();
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_violation_alerts_at_once() {
        let mut w = SlowConsumerWatch::default();
        assert!(w.on_close(1008, Instant::now()));
        assert!(!w.on_close(1001, Instant::now()));
    }

    #[test]
    fn the_third_normal_close_within_the_window_alerts() {
        let mut w = SlowConsumerWatch::default();
        let t0 = Instant::now();
        assert!(!w.on_close(1000, t0));
        assert!(!w.on_close(1000, t0 + Duration::from_secs(10)));
        assert!(w.on_close(1000, t0 + Duration::from_secs(20)));
        // Counting starts over after an alert.
        assert!(!w.on_close(1000, t0 + Duration::from_secs(30)));
        assert!(!w.on_close(1000, t0 + Duration::from_secs(40)));
        assert!(w.on_close(1000, t0 + Duration::from_secs(50)));
    }

    #[test]
    fn normal_closes_spread_out_do_not_alert() {
        let mut w = SlowConsumerWatch::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(!w.on_close(1000, t0 + NORMAL_CLOSE_WINDOW / 2 * (i + 1)));
        }
    }
}
