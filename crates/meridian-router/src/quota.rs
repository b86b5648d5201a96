//! Quota estimates per candidate, learned from throttles: tokens per minute
//! reserved as Bedrock reserves them (input + max_tokens). The limit starts
//! unknown (unlimited); a throttle drops it to just under what was sent in
//! the last minute, and it recovers by a share of itself per minute without
//! throttles (multiplicative increase). The router spills to the next
//! candidate before the estimate is exceeded, instead of waiting to be
//! throttled again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);

/// Share of the used tokens aimed for after a throttle.
const AIM_AFTER_THROTTLE: f64 = 0.9;

/// One candidate's quota estimate.
#[derive(Debug)]
pub struct QuotaEstimate {
    limit: f64,
    ceiling: f64,
    recovery_per_min: f64,
    window: VecDeque<(Instant, u64)>,
    used: u64,
    at: Instant,
}

impl QuotaEstimate {
    /// An estimate that starts at `ceiling` tokens per minute (infinite when
    /// the quota is unknown) and recovers by `recovery_per_min` of itself per
    /// minute after a throttle (0.2 = 20 %).
    pub fn new(ceiling: f64, recovery_per_min: f64, now: Instant) -> Self {
        QuotaEstimate {
            limit: ceiling,
            ceiling,
            recovery_per_min,
            window: VecDeque::new(),
            used: 0,
            at: now,
        }
    }

    /// An estimate with no known quota that recovers 20 % a minute.
    pub fn unknown(now: Instant) -> Self {
        QuotaEstimate::new(f64::INFINITY, 0.2, now)
    }

    fn advance(&mut self, now: Instant) {
        while let Some((t, n)) = self.window.front().copied() {
            if now.saturating_duration_since(t) < MINUTE {
                break;
            }
            self.used -= n;
            self.window.pop_front();
        }
        let minutes = now.saturating_duration_since(self.at).as_secs_f64() / 60.0;
        if self.limit.is_finite() {
            self.limit = (self.limit * (1.0 + self.recovery_per_min * minutes)).min(self.ceiling);
        }
        self.at = now;
    }

    /// A known capacity (`INFINITY`: unknown) replaces the estimate; what
    /// was used in the last minute still counts against it.
    pub fn set_ceiling(&mut self, ceiling: f64) {
        self.ceiling = ceiling;
        self.limit = ceiling;
    }

    /// Whether `tokens` more fit under the estimate now.
    pub fn has_room(&mut self, tokens: u64, now: Instant) -> bool {
        self.advance(now);
        (self.used + tokens) as f64 <= self.limit
    }

    /// Records a reservation that was sent.
    pub fn reserve(&mut self, tokens: u64, now: Instant) {
        self.advance(now);
        self.window.push_back((now, tokens));
        self.used += tokens;
    }

    /// A throttle: the real limit is below what was used; aim under it.
    pub fn on_throttle(&mut self, now: Instant) {
        self.advance(now);
        self.limit = (self.used as f64 * AIM_AFTER_THROTTLE)
            .max(1.0)
            .min(self.limit);
    }

    /// The current estimate in tokens per minute; `None` while unknown.
    pub fn limit(&self) -> Option<u64> {
        self.limit.is_finite().then_some(self.limit as u64)
    }

    /// Tokens reserved in the last minute.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn learns_from_a_throttle_spills_and_recovers() {
        let mut q = QuotaEstimate::unknown(Instant::now());
        assert_eq!(q.limit(), None);
        for _ in 0..10 {
            assert!(q.has_room(5_000, Instant::now()));
            q.reserve(5_000, Instant::now());
        }
        // Throttled at 50,000 tokens: the real quota is lower than that.
        q.on_throttle(Instant::now());
        assert_eq!(q.limit(), Some(45_000));
        assert!(
            !q.has_room(1, Instant::now()),
            "spill instead of being throttled again"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            q.has_room(40_000, Instant::now()),
            "a minute later the window is free"
        );
        // 20 % a minute of recovery: 45,000 → 54,000 after that minute.
        assert_eq!(q.limit(), Some(54_000));
        // A second throttle never raises the estimate.
        q.reserve(60_000, Instant::now());
        q.on_throttle(Instant::now());
        assert_eq!(q.limit(), Some(54_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_quota_is_a_ceiling() {
        let mut q = QuotaEstimate::new(100_000.0, 0.5, Instant::now());
        q.reserve(80_000, Instant::now());
        q.on_throttle(Instant::now());
        assert_eq!(q.limit(), Some(72_000));
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(q.has_room(1, Instant::now()));
        assert_eq!(q.limit(), Some(100_000), "never past the ceiling");
    }
}
