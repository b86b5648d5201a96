//! A fleet-wide retry budget: retries (and hedges) may add at most `ratio`
//! extra attempts over the requests of the last `window`, plus a small floor
//! per second so a quiet gateway can still retry. An outage therefore cannot
//! multiply load.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Budget settings.
#[derive(Debug, Clone, Copy)]
pub struct BudgetConfig {
    /// Extra attempts allowed per request (0.2 = 20 %).
    pub ratio: f64,
    /// Retries always allowed per second.
    pub min_per_sec: f64,
    /// How far back requests count.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            min_per_sec: 10.0,
            window: Duration::from_secs(10),
        }
    }
}

/// The budget's state.
#[derive(Debug)]
pub struct RetryBudget {
    cfg: BudgetConfig,
    requests: VecDeque<Instant>,
    retries: VecDeque<Instant>,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(cfg: BudgetConfig) -> Self {
        RetryBudget {
            cfg,
            requests: VecDeque::new(),
            retries: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        let w = self.cfg.window;
        for q in [&mut self.requests, &mut self.retries] {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= w)
            {
                q.pop_front();
            }
        }
    }

    /// Records an original request.
    pub fn deposit(&mut self, now: Instant) {
        self.expire(now);
        self.requests.push_back(now);
    }

    /// Takes one retry (or hedge) from the budget, if any is left.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.expire(now);
        let allowed = self.requests.len() as f64 * self.cfg.ratio
            + self.cfg.min_per_sec * self.cfg.window.as_secs_f64();
        // A retry needs a whole unit of budget.
        if (self.retries.len() + 1) as f64 <= allowed {
            self.retries.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_cannot_multiply_load() {
        let mut b = RetryBudget::new(BudgetConfig {
            ratio: 0.2,
            min_per_sec: 0.0,
            window: Duration::from_secs(10),
        });
        let mut retries = 0;
        // 1,000 requests over 5 s, each failing and asking for up to 3 retries.
        for _ in 0..1000 {
            b.deposit(Instant::now());
            for _ in 0..3 {
                if b.try_withdraw(Instant::now()) {
                    retries += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        assert_eq!(retries, 200, "20 % of 1,000");
        // Old requests leave the window, and their budget with them.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!b.try_withdraw(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_lets_a_quiet_gateway_retry() {
        let mut b = RetryBudget::new(BudgetConfig {
            ratio: 0.2,
            min_per_sec: 1.0,
            window: Duration::from_secs(10),
        });
        b.deposit(Instant::now());
        let granted = (0..20).filter(|_| b.try_withdraw(Instant::now())).count();
        assert_eq!(
            granted, 10,
            "0.2 rounds down to nothing extra; the floor gives 1/s over 10 s"
        );
    }
}
