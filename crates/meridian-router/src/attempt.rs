//! One request's attempts as a state machine without I/O: which candidate
//! next, when to back off and wrap around, when to hedge, when to give up,
//! and which attempts lost as `slow`. The gateway drives it — it starts the
//! attempts [`Attempts::poll`] asks for, reports how they ended, and sleeps
//! until the instant it names — so every routing decision here runs on
//! tokio's clock and is tested on a paused one.
//!
//! An attempt is "answered" when the gateway says so (whole body in, or first
//! event of a stream); the first answer wins and the rest are cancelled.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::health::Verdict;
use crate::route::{Candidate, Router};

/// What bounds one request's attempts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most attempts, hedges included (at least one is made).
    pub max_attempts: usize,
    /// When the whole request must be done.
    pub deadline: Instant,
    /// The deadline in milliseconds, for the give-up reason.
    pub deadline_ms: u64,
    /// Whether a slow first attempt may be hedged.
    pub hedging: bool,
    /// Whether the answer streams (hedge delays are kept per kind).
    pub streaming: bool,
}

/// Why an attempt was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The request's first attempt.
    First,
    /// Another candidate of the same model after a failure.
    Retry,
    /// A second attempt while a slow first one still runs.
    Hedge,
    /// A candidate of a fallback model.
    Fallback,
}

impl Reason {
    /// Its label in metrics, traces and `x-meridian-route`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::First => "first",
            Reason::Retry => "retry",
            Reason::Hedge => "hedge",
            Reason::Fallback => "fallback",
        }
    }
}

/// How an attempt ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Started, not ended.
    Running,
    /// It answered.
    Success,
    /// It was throttled.
    Throttled,
    /// It failed otherwise: the failure's label ([`Failed::label`]).
    Failed(&'static str),
    /// It lost to a hedge started after it: a latency outlier.
    Slow,
    /// Stopped because another attempt answered first, or the request ended.
    Cancelled,
}

impl Outcome {
    /// Its label in metrics, traces, logs and `x-meridian-route`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Success => "success",
            Outcome::Throttled => "throttled",
            Outcome::Failed(label) => label,
            Outcome::Slow => "slow",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether it counts against the candidate as an upstream error
    /// (metrics, traces and the dashboard all ask this).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::Throttled | Outcome::Failed(_) | Outcome::Slow
        )
    }

    /// Whether the attempt ran its course (it answered, failed or lost to a
    /// hedge), as opposed to one still running or cancelled.
    pub fn is_settled(self) -> bool {
        !matches!(self, Outcome::Running | Outcome::Cancelled)
    }

    /// Whether it was throttled.
    pub fn is_throttle(self) -> bool {
        self == Outcome::Throttled
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// One attempt in the decision record.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// Account called.
    pub account: String,
    /// Region called.
    pub region: String,
    /// Model ID sent.
    pub model_id: String,
    /// The endpoint surface called.
    pub surface: crate::Surface,
    /// Why it was started.
    pub reason: Reason,
    /// Milliseconds after the request started.
    pub start_ms: u64,
    /// How long it ran, ms.
    pub elapsed_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// How a request was routed: what could be called, what was, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Strategy applied.
    pub strategy: &'static str,
    /// Residency policy name.
    pub policy: String,
    /// Candidate keys (account|region|model ID) in the order considered.
    pub candidates: Vec<String>,
    /// Attempts in start order.
    pub attempts: Vec<AttemptRecord>,
    /// Index into `attempts` of the one that answered.
    pub served_by: Option<usize>,
    /// Whether a hedge was sent.
    pub hedged: bool,
    /// Why the request ended without an answer, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<String>,
}

impl Decision {
    /// A compact summary for the `x-meridian-route` header:
    /// `reason:region:outcome` per attempt, comma-separated.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (n, a) in self.attempts.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(a.reason.label());
            out.push(':');
            out.push_str(&a.region);
            out.push(':');
            out.push_str(a.outcome.label());
        }
        out
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start an attempt on `candidate`; report its end as attempt `attempt`.
    Start {
        /// Index into the decision's attempts.
        attempt: usize,
        /// Index into the candidates.
        candidate: usize,
    },
    /// Wait until an attempt ends or this instant passes, then poll again.
    Wait(Instant),
    /// Stop: nothing will answer ([`Attempts::give_up`] says why).
    GiveUp,
}

/// How a failed attempt ended, in the router's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Outcome label for the decision record and metrics.
    pub label: &'static str,
    /// False for the caller's own errors: the request ends, the candidate
    /// is not blamed.
    pub retryable: bool,
    /// The endpoint could not be reached: other accounts' candidates in the
    /// same Bedrock region (or the same provider) are passed over for the
    /// rest of the request.
    pub unreachable: bool,
    /// A throttle, with the upstream's retry hint if it gave one.
    pub throttled: Option<Option<Duration>>,
}

/// What an unreachable candidate could not reach: a Bedrock region
/// (whatever the account), or an OpenAI-compatible provider by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    Region(&'a str),
    Provider(&'a str),
}

impl<'a> Endpoint<'a> {
    fn of(c: &'a Candidate) -> Self {
        if c.target.kind == meridian_catalog::TargetKind::Provider {
            Endpoint::Provider(&c.account)
        } else {
            Endpoint::Region(&c.target.endpoint_region)
        }
    }
}

/// An attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Running {
    candidate: usize,
    attempt: usize,
    since: Instant,
}

/// The attempts of one request.
#[derive(Debug)]
pub struct Attempts<'a> {
    router: &'a Router,
    cands: &'a [Candidate],
    limits: Limits,
    started: Instant,
    next: usize,
    wrapped: bool,
    resume_at: Option<Instant>,
    hedge_at: Option<Instant>,
    running: Vec<Running>,
    unreachable: Vec<Endpoint<'a>>,
    gave_up: Option<String>,
    decision: Decision,
}

impl<'a> Attempts<'a> {
    /// A request's attempts over `cands` (in the order to try them); counts
    /// the request toward the retry budget.
    pub fn new(
        router: &'a Router,
        cands: &'a [Candidate],
        limits: Limits,
        strategy: &'static str,
        policy: &str,
        now: Instant,
    ) -> Self {
        router.health.request_started();
        Attempts {
            router,
            cands,
            limits,
            started: now,
            next: 0,
            wrapped: false,
            resume_at: None,
            hedge_at: None,
            running: Vec::new(),
            unreachable: Vec::new(),
            gave_up: None,
            decision: Decision {
                strategy,
                policy: policy.to_string(),
                candidates: cands.iter().map(|c| c.key().to_string()).collect(),
                attempts: Vec::new(),
                served_by: None,
                hedged: false,
                gave_up: None,
            },
        }
    }

    /// The decision record so far.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Attempts started so far.
    pub fn started(&self) -> usize {
        self.decision.attempts.len()
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_millis() as u64
    }

    fn stop(&mut self, why: impl Into<String>) -> Action {
        self.gave_up.get_or_insert_with(|| why.into());
        Action::GiveUp
    }

    /// What to do now.
    pub fn poll(&mut self, now: Instant) -> Action {
        if self.gave_up.is_some() {
            return Action::GiveUp;
        }
        if now >= self.limits.deadline {
            let ms = self.limits.deadline_ms;
            return self.stop(format!("the {ms} ms deadline passed"));
        }
        if !self.running.is_empty() {
            return self.poll_running(now);
        }
        if let Some(t) = self.resume_at {
            if now < t {
                return Action::Wait(t);
            }
            self.resume_at = None;
        }
        if self.started() >= self.limits.max_attempts.max(1) {
            return self.stop("every allowed attempt failed");
        }
        let mut pick = self.pick();
        if pick.is_none() && !self.wrapped && !self.cands.is_empty() {
            // Every candidate was tried: once more from the top, after a backoff.
            self.wrapped = true;
            self.next = 0;
            let n = self.started() as u32;
            return match Backoff::default().delay(n, self.router.draw(), now, self.limits.deadline)
            {
                Some(d) if !d.is_zero() => {
                    self.resume_at = Some(now + d);
                    Action::Wait(now + d)
                }
                Some(_) => {
                    pick = self.pick();
                    self.start_or_stop(pick, now)
                }
                None => self.stop("the deadline leaves no time for another attempt"),
            };
        }
        self.start_or_stop(pick, now)
    }

    fn start_or_stop(&mut self, pick: Option<usize>, now: Instant) -> Action {
        let Some(i) = pick else {
            return self.stop("no candidate is available");
        };
        let first = self.decision.attempts.is_empty();
        if !first && !self.router.health.try_retry() {
            // Give back the probe `pick` may have taken.
            self.router
                .health
                .record(self.cands[i].key(), Verdict::Neutral);
            return self.stop("the fleet-wide retry budget is spent");
        }
        let reason = if first {
            Reason::First
        } else if self.cands[0].model != self.cands[i].model {
            Reason::Fallback
        } else {
            Reason::Retry
        };
        let action = self.launch(i, reason, now);
        self.hedge_at = if first && self.limits.hedging {
            self.router
                .hedge_delay(&self.cands[i], self.limits.streaming)
                .map(|d| now + d)
        } else {
            None
        };
        action
    }

    fn poll_running(&mut self, now: Instant) -> Action {
        if let Some(t) = self.hedge_at {
            if now < t {
                return Action::Wait(t.min(self.limits.deadline));
            }
            self.hedge_at = None;
            if self.started() < self.limits.max_attempts
                && let Some(i) = self.pick()
            {
                if self.router.health.try_retry() {
                    self.decision.hedged = true;
                    return self.launch(i, Reason::Hedge, now);
                }
                self.router
                    .health
                    .record(self.cands[i].key(), Verdict::Neutral);
            }
        }
        Action::Wait(self.limits.deadline)
    }

    /// The next candidate whose breaker lets it be tried, in order, skipping
    /// regions found unreachable. The first attempt tries the first candidate
    /// even when every breaker is open, rather than failing untried.
    fn pick(&mut self) -> Option<usize> {
        while self.next < self.cands.len() {
            let i = self.next;
            self.next += 1;
            let c = &self.cands[i];
            if self.unreachable.contains(&Endpoint::of(c)) {
                continue;
            }
            if self.router.health.try_acquire(c.key()) {
                return Some(i);
            }
        }
        (self.decision.attempts.is_empty() && !self.cands.is_empty()).then_some(0)
    }

    fn launch(&mut self, i: usize, reason: Reason, now: Instant) -> Action {
        let c = &self.cands[i];
        let attempt = self.decision.attempts.len();
        self.decision.attempts.push(AttemptRecord {
            account: c.account.clone(),
            region: c.target.endpoint_region.clone(),
            model_id: c.target.model_id.clone(),
            surface: c.surface,
            reason,
            start_ms: self.ms(now),
            elapsed_ms: 0,
            outcome: Outcome::Running,
        });
        self.running.push(Running {
            candidate: i,
            attempt,
            since: now,
        });
        Action::Start {
            attempt,
            candidate: i,
        }
    }

    fn end(&mut self, attempt: usize, outcome: Outcome, now: Instant) -> Option<Running> {
        let pos = self.running.iter().position(|r| r.attempt == attempt)?;
        let run = self.running.swap_remove(pos);
        let now_ms = self.ms(now);
        if let Some(a) = self.decision.attempts.get_mut(attempt) {
            a.elapsed_ms = now_ms.saturating_sub(a.start_ms);
            a.outcome = outcome;
        }
        Some(run)
    }

    /// Attempt `attempt` answered: it wins. Attempts started before it lost
    /// to it and are convicted as slow (slow compared with another
    /// candidate, not just slow: a pause of the whole gateway slows both and
    /// convicts neither); later ones are cancelled. Returns the winner's
    /// candidate index.
    pub fn succeeded(&mut self, attempt: usize, now: Instant) -> Option<usize> {
        let run = self.end(attempt, Outcome::Success, now)?;
        let c = &self.cands[run.candidate];
        self.router.health.record(c.key(), Verdict::Healthy);
        self.router.observe(
            c,
            self.limits.streaming,
            now.saturating_duration_since(run.since),
        );
        self.decision.served_by = Some(attempt);
        let began = self.decision.attempts[attempt].start_ms;
        self.cancel_rest(Some(began), now);
        Some(run.candidate)
    }

    /// Attempt `attempt` failed before answering.
    pub fn failed(&mut self, attempt: usize, f: &Failed, now: Instant) {
        let outcome = match f.throttled {
            Some(_) => Outcome::Throttled,
            None => Outcome::Failed(f.label),
        };
        let Some(run) = self.end(attempt, outcome, now) else {
            return;
        };
        let c = &self.cands[run.candidate];
        let verdict = if f.retryable {
            Verdict::Unhealthy
        } else {
            Verdict::Neutral
        };
        self.router.health.record(c.key(), verdict);
        if let Some(hint) = f.throttled {
            // A hint longer than the request's own deadline says nothing
            // more than "not during this request".
            let left = self.limits.deadline.saturating_duration_since(now);
            self.router.throttled(c, hint.map(|d| d.min(left)));
        }
        if f.unreachable {
            self.unreachable
                .push(Endpoint::of(&self.cands[run.candidate]));
        }
        if !f.retryable {
            self.stop("the request itself was refused");
        }
    }

    /// Ends the request without an answer: attempts still running count as
    /// slow for their candidates' latency, and are cancelled. Returns the
    /// decision record and why it gave up.
    pub fn give_up(mut self, now: Instant) -> (Decision, String) {
        for r in &self.running {
            let c = &self.cands[r.candidate];
            self.router.slow(c, now.saturating_duration_since(r.since));
        }
        self.cancel_rest(None, now);
        let why = self
            .gave_up
            .take()
            .unwrap_or_else(|| "no attempt answered".into());
        self.decision.gave_up = Some(why.clone());
        (self.decision, why)
    }

    /// The decision record of a request that was answered.
    pub fn into_decision(self) -> Decision {
        self.decision
    }

    fn cancel_rest(&mut self, winner_began: Option<u64>, now: Instant) {
        let now_ms = self.ms(now);
        for r in std::mem::take(&mut self.running) {
            let c = &self.cands[r.candidate];
            let rec = &mut self.decision.attempts[r.attempt];
            let lost = winner_began.is_some_and(|w| rec.start_ms < w);
            if lost {
                self.router.health.record(c.key(), Verdict::Slow);
                self.router.slow(c, now.saturating_duration_since(r.since));
            }
            self.router.health.record(c.key(), Verdict::Neutral);
            rec.elapsed_ms = now_ms.saturating_sub(rec.start_ms);
            rec.outcome = if lost {
                Outcome::Slow
            } else {
                Outcome::Cancelled
            };
        }
    }
}

#[cfg(test)]
#[path = "attempt_tests.rs"]
mod tests;
