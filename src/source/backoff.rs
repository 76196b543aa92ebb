//! Exponential backoff with jitter between reconnection attempts.

use std::time::Duration;

/// Doubles from `min` to `max` after each failure; reset after a success.
/// Each delay is drawn between half and all of its nominal value, so that
/// many exporters cut off at once do not come back in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The nominal delay of the next attempt, before jitter.
    #[cfg(test)]
    pub fn nominal(&self) -> Duration {
        self.next
    }

    /// The delay to wait now, in `[nominal / 2, nominal]`; the following
    /// nominal delay is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// [`Backoff::next_delay`] with the random draw `unit` in `[0, 1)` given.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        nominal.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Back to `min`, after a successful connection.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let delays: Vec<u64> = (0..10)
            .map(|_| b.next_delay_with(1.0).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            vec![
                500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
        b.reset();
        assert_eq!(b.nominal(), Duration::from_millis(500));
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(250));
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_nominal_delay() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(250) && d <= Duration::from_millis(500),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(
            seen.len() > 50,
            "delays are spread, not fixed: {}",
            seen.len()
        );
    }
}
