//! Quota estimates per candidate, learned from throttles: tokens per minute
//! reserved as Bedrock reserves them (input + max_tokens), a limit that drops
//! to just under the observed rate when a throttle arrives and creeps back up
//! on success. The router spills to the next candidate before the estimate is
//! exceeded, instead of waiting to be throttled.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// One candidate's quota estimate.
#[derive(Debug)]
pub struct QuotaEstimate {
    limit: f64,
    ceiling: f64,
    window: VecDeque<(Instant, u64)>,
    used: u64,
}

impl QuotaEstimate {
    /// An estimate starting at `initial` tokens per minute (e.g. the account's
    /// documented quota), never above `ceiling`.
    pub fn new(initial: u64, ceiling: u64) -> Self {
        QuotaEstimate {
            limit: initial as f64,
            ceiling: ceiling as f64,
            window: VecDeque::new(),
            used: 0,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, n)) = self.window.front().copied() {
            if now.saturating_duration_since(t) < MINUTE {
                break;
            }
            self.used -= n;
            self.window.pop_front();
        }
    }

    /// Whether `tokens` more fit under the estimate now.
    pub fn has_room(&mut self, tokens: u64, now: Instant) -> bool {
        self.expire(now);
        (self.used + tokens) as f64 <= self.limit
    }

    /// Records a reservation that was sent.
    pub fn reserve(&mut self, tokens: u64, now: Instant) {
        self.expire(now);
        self.window.push_back((now, tokens));
        self.used += tokens;
    }

    /// A throttle: the real limit is below what was used; aim under it.
    pub fn on_throttle(&mut self, now: Instant) {
        self.expire(now);
        self.limit = (self.used as f64 * 0.9).max(1.0).min(self.limit);
    }

    /// A success: creep back up by 1 % of the ceiling.
    pub fn on_success(&mut self) {
        self.limit = (self.limit + self.ceiling * 0.01).min(self.ceiling);
    }

    /// The current estimate, tokens per minute.
    pub fn limit(&self) -> u64 {
        self.limit as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn learns_from_a_throttle_and_spills_before_the_next() {
        let mut q = QuotaEstimate::new(100_000, 100_000);
        for _ in 0..10 {
            assert!(q.has_room(5_000, Instant::now()));
            q.reserve(5_000, Instant::now());
        }
        // Throttled at 50,000 tokens: the real quota is lower than assumed.
        q.on_throttle(Instant::now());
        assert_eq!(q.limit(), 45_000);
        assert!(
            !q.has_room(1, Instant::now()),
            "spill instead of being throttled again"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            q.has_room(40_000, Instant::now()),
            "a minute later the window is free"
        );
        for _ in 0..100 {
            q.on_success();
        }
        assert_eq!(q.limit(), 100_000, "recovers, never past the ceiling");
    }
}
