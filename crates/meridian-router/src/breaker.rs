//! A circuit breaker per candidate: closed → open after consecutive failures
//! or when the share of failures among recent outcomes is too high,
//! half-open after a cool-down that grows on each re-open, closed again after
//! enough successful probes.

use std::time::Duration;

use tokio::time::Instant;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// Share of failures among the last `window` outcomes that opens it.
    pub error_rate_to_open: f64,
    /// Outcomes the error rate is measured over (and needed before it counts).
    pub window: usize,
    /// First cool-down; doubles on each re-open, up to `max_open`.
    pub open_for: Duration,
    /// Longest cool-down.
    pub max_open: Duration,
    /// Probes allowed at once while half-open.
    pub half_open_probes: u32,
    /// Successful probes that close it.
    pub successes_to_close: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 5,
            error_rate_to_open: 0.5,
            window: 20,
            open_for: Duration::from_secs(5),
            max_open: Duration::from_secs(10),
            half_open_probes: 1,
            successes_to_close: 2,
        }
    }
}

/// The breaker's state, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Traffic flows.
    Closed,
    /// Traffic is refused until the cool-down ends.
    Open,
    /// A few probes test the candidate.
    HalfOpen,
}

impl State {
    /// Its name in JSON (`closed`, `open`, `half-open`).
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }

    /// Its value in the `meridian_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }
}

/// One circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    failures: u32,
    recent: std::collections::VecDeque<bool>,
    opened_at: Option<Instant>,
    open_for: Duration,
    probes: u32,
    successes: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: State::Closed,
            failures: 0,
            recent: std::collections::VecDeque::new(),
            opened_at: None,
            open_for: cfg.open_for,
            probes: 0,
            successes: 0,
        }
    }

    /// The state at `now` (an open breaker whose cool-down ended is half-open).
    pub fn state(&mut self, now: Instant) -> State {
        if self.state == State::Open && self.opened_at.is_some_and(|t| now >= t + self.open_for) {
            self.state = State::HalfOpen;
            self.probes = 0;
            self.successes = 0;
        }
        self.state
    }

    /// Whether a request may go to this candidate now; a half-open breaker
    /// hands out a limited number of probes.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state(now) {
            State::Closed => true,
            State::Open => false,
            State::HalfOpen if self.probes < self.cfg.half_open_probes => {
                self.probes += 1;
                true
            }
            State::HalfOpen => false,
        }
    }

    /// Records a success.
    pub fn on_success(&mut self, now: Instant) {
        match self.state(now) {
            State::HalfOpen => {
                self.successes += 1;
                self.probes = self.probes.saturating_sub(1);
                if self.successes >= self.cfg.successes_to_close {
                    self.state = State::Closed;
                    self.failures = 0;
                    self.open_for = self.cfg.open_for;
                }
            }
            _ => {
                self.failures = 0;
                self.remember(false, now);
            }
        }
    }

    /// Adds an outcome to the error-rate window; opens on too many failures.
    fn remember(&mut self, failed: bool, now: Instant) {
        if self.cfg.window == 0 {
            return;
        }
        self.recent.push_back(failed);
        while self.recent.len() > self.cfg.window {
            self.recent.pop_front();
        }
        let failures = self.recent.iter().filter(|f| **f).count();
        if self.recent.len() >= self.cfg.window
            && failures as f64 >= self.cfg.error_rate_to_open * self.recent.len() as f64
        {
            self.open(now);
        }
    }

    /// An attempt that ended without a verdict (cancelled, or the caller's
    /// own error): gives back a half-open probe.
    pub fn release(&mut self, now: Instant) {
        if self.state(now) == State::HalfOpen {
            self.probes = self.probes.saturating_sub(1);
        }
    }

    /// Records a retryable failure (callers' own errors are not the candidate's fault).
    pub fn on_failure(&mut self, now: Instant) {
        match self.state(now) {
            State::HalfOpen => {
                // A failed probe re-opens, for longer.
                self.open_for = (self.open_for * 2).min(self.cfg.max_open);
                self.open(now);
            }
            State::Closed => {
                self.failures += 1;
                if self.failures >= self.cfg.failures_to_open {
                    self.open(now);
                } else {
                    self.remember(true, now);
                }
            }
            State::Open => {}
        }
    }

    /// Another replica saw this candidate fail and opened its breaker for
    /// `for_`: a closed breaker opens for that long too (at most `max_open`),
    /// so this replica skips the candidate without failing on it first.
    pub fn hint_open(&mut self, now: Instant, for_: Duration) {
        if self.state(now) == State::Closed && !for_.is_zero() {
            self.open_for = for_.min(self.cfg.max_open);
            self.open(now);
        }
    }

    /// How long an open breaker stays open from when it opened.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }

    fn open(&mut self, now: Instant) {
        self.recent.clear();
        self.state = State::Open;
        self.opened_at = Some(now);
        self.probes = 0;
        self.successes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_high_error_rate_opens_without_consecutive_failures() {
        let mut b = Breaker::new(BreakerConfig::default());
        // Two failures, then a success: never five in a row, 67 % failures.
        for i in 0..20 {
            if b.state(Instant::now()) == State::Open {
                assert!(
                    i >= 19,
                    "opened after {i} outcomes, before the window filled"
                );
                break;
            }
            if i % 3 == 2 {
                b.on_success(Instant::now());
            } else {
                b.on_failure(Instant::now());
            }
        }
        assert_eq!(b.state(Instant::now()), State::Open);
        // A healthy candidate with one failure in ten stays closed.
        let mut b = Breaker::new(BreakerConfig::default());
        for i in 0..200 {
            if i % 10 == 0 {
                b.on_failure(Instant::now());
            } else {
                b.on_success(Instant::now());
            }
        }
        assert_eq!(b.state(Instant::now()), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_closes() {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.on_failure(Instant::now());
        }
        assert_eq!(b.state(Instant::now()), State::Closed);
        b.on_success(Instant::now());
        for _ in 0..5 {
            b.on_failure(Instant::now());
        }
        assert_eq!(b.state(Instant::now()), State::Open);
        assert!(!b.try_acquire(Instant::now()));
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(!b.try_acquire(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.try_acquire(Instant::now()), "one probe");
        assert!(!b.try_acquire(Instant::now()), "only one at a time");
        b.on_success(Instant::now());
        assert!(b.try_acquire(Instant::now()));
        b.on_success(Instant::now());
        assert_eq!(b.state(Instant::now()), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_back_off_up_to_the_cap() {
        let cfg = BreakerConfig {
            failures_to_open: 1,
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(cfg);
        b.on_failure(Instant::now());
        let mut waits = Vec::new();
        for _ in 0..6 {
            let start = Instant::now();
            while !b.try_acquire(Instant::now()) {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            waits.push((Instant::now() - start).as_secs());
            b.on_failure(Instant::now());
        }
        assert_eq!(waits, [5, 10, 10, 10, 10, 10]);
    }
}
