//! Scheduling polls: a fixed-rate ticker and an exponential reconnect backoff.

use std::time::Duration;
// tokio's clock, so tests with paused time see backoffs expire.
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// Ticks every `period` from now on a fixed grid (the first tick at once): a slow poll does
/// not shift later ones, and ticks missed during a poll longer than `period` are skipped rather
/// than fired in a burst.
pub fn fixed_rate(period: Duration) -> Interval {
    let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// Exponential reconnect delay: `initial`, doubling per consecutive failure up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// A backoff starting at `initial` and never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
            retry_at: None,
        }
    }

    /// Records a failure at `now`; returns the delay before the next attempt.
    pub fn fail(&mut self, now: Instant) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let delay = self.initial.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + delay);
        delay
    }

    /// Records a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// How long to wait at `now` before the next attempt, `None` when one may start.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.retry_at
            .filter(|&at| at > now)
            .map(|at| at.duration_since(now))
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.wait(now), None);
        let delays: Vec<u64> = (0..9).map(|_| b.fail(now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.wait(now), Some(Duration::from_secs(60)));
        assert_eq!(b.wait(now + Duration::from_secs(60)), None);
        for _ in 0..100 {
            b.fail(now);
        }
        assert_eq!(b.wait(now), Some(Duration::from_secs(60)));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.wait(now), None);
        assert_eq!(b.fail(now), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_does_not_drift_with_slow_polls() {
        let start = tokio::time::Instant::now();
        let mut t = fixed_rate(Duration::from_secs(1));
        let mut at = Vec::new();
        for _ in 0..4 {
            t.tick().await;
            at.push(start.elapsed().as_millis());
            // A poll taking 300 ms: the next tick is still on the 1 s grid.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(at, [0, 1000, 2000, 3000]);
        // A poll longer than two periods: one late tick at once, then back on the grid
        // (no burst of the missed ones).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        t.tick().await;
        assert_eq!(start.elapsed().as_millis(), 5800);
        t.tick().await;
        assert_eq!(start.elapsed().as_millis(), 6000);
    }
}
