//! Candidate health shared by every request: a breaker per candidate and one
//! fleet-wide retry budget. Locks are never held across an await.

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, State};
use crate::budget::{BudgetConfig, RetryBudget};
use crate::key::{KeyId, PerKey};

/// How an attempt went, as far as the candidate's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered.
    Healthy,
    /// It failed in a way that may be its fault (throttled, down, timed out).
    Unhealthy,
    /// It had not answered when a hedge was sent: a latency outlier, counted
    /// as a failure so a browned-out candidate is ejected like a failing one.
    Slow,
    /// The request itself was bad; says nothing about the candidate.
    Neutral,
}

/// Breakers by candidate key, and the retry budget.
#[derive(Debug)]
pub struct Health {
    cfg: BreakerConfig,
    breakers: Mutex<PerKey<Breaker>>,
    budget: Mutex<RetryBudget>,
    /// Breakers this process opened since the last [`Health::opened`] call,
    /// with how long each stays open: what replicas tell each other.
    opened: Mutex<Vec<(KeyId, std::time::Duration)>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(BreakerConfig::default(), BudgetConfig::default())
    }
}

impl Health {
    /// A registry with these settings.
    pub fn new(breaker: BreakerConfig, budget: BudgetConfig) -> Self {
        Health {
            cfg: breaker,
            breakers: Mutex::new(PerKey::default()),
            budget: Mutex::new(RetryBudget::new(budget)),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// Counts a new request toward the retry budget.
    pub fn request_started(&self) {
        self.budget.lock().deposit(Instant::now());
    }

    /// Takes one retry from the budget.
    pub fn try_retry(&self) -> bool {
        self.budget.lock().try_withdraw(Instant::now())
    }

    /// Whether `key` may be tried now (a half-open breaker hands out probes).
    /// Call right before the attempt, so probes are never leaked.
    pub fn try_acquire(&self, key: KeyId) -> bool {
        self.with(key, |b| b.try_acquire(Instant::now()))
    }

    /// Runs `f` on `key`'s breaker (created closed when new) under the lock.
    fn with<R>(&self, key: KeyId, f: impl FnOnce(&mut Breaker) -> R) -> R {
        f(self
            .breakers
            .lock()
            .get_or_insert_with(key, || Breaker::new(self.cfg)))
    }

    /// Records the attempt's verdict.
    pub fn record(&self, key: KeyId, verdict: Verdict) {
        let now = Instant::now();
        let opened = self.with(key, |b| {
            let before = b.state(now);
            match verdict {
                Verdict::Healthy => b.on_success(now),
                Verdict::Unhealthy | Verdict::Slow => b.on_failure(now),
                Verdict::Neutral => b.release(now),
            }
            (before != State::Open && b.state(now) == State::Open).then(|| b.open_for())
        });
        if let Some(for_) = opened {
            self.opened.lock().push((key, for_));
        }
    }

    /// Breakers opened here since the last call, with how long they stay open.
    pub fn opened(&self) -> Vec<(KeyId, std::time::Duration)> {
        std::mem::take(&mut *self.opened.lock())
    }

    /// Opens `key`'s breaker for `for_` if it is closed: another replica
    /// just saw the candidate fail.
    pub fn hint_open(&self, key: KeyId, for_: std::time::Duration) {
        let now = Instant::now();
        self.with(key, |b| b.hint_open(now, for_));
    }

    /// One breaker's state, without taking a probe (closed for a candidate
    /// that never failed).
    pub fn state(&self, key: KeyId) -> State {
        let now = Instant::now();
        self.breakers
            .lock()
            .get_mut(key)
            .map_or(State::Closed, |b| b.state(now))
    }

    /// Every known breaker's state, for `/status` and metrics, by key.
    pub fn states(&self) -> Vec<(KeyId, State)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .breakers
            .lock()
            .iter_mut()
            .map(|(k, b)| (k, b.state(now)))
            .collect();
        out.sort_by_cached_key(|(k, _)| k.key());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::key::Surface;

    #[tokio::test(start_paused = true)]
    async fn opened_breakers_are_reported_once_and_hints_open_closed_ones() {
        let h = Health::default();
        let east = KeyId::intern("a", "us-east-1", Surface::Runtime, "m", None);
        let west = KeyId::intern("a", "us-west-2", Surface::Runtime, "m", None);
        for _ in 0..5 {
            h.record(east, Verdict::Unhealthy);
        }
        assert_eq!(h.opened(), vec![(east, Duration::from_secs(5))]);
        assert!(h.opened().is_empty(), "reported once");
        h.hint_open(west, Duration::from_secs(3));
        assert_eq!(h.state(west), State::Open);
        assert!(h.opened().is_empty(), "a hint is not reported back");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(h.state(west), State::HalfOpen);
    }
}
