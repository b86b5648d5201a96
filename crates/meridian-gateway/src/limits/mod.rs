//! The admit stage's state: per-tenant rate limits (requests and tokens per
//! minute, as GCRA), requests in flight, and daily and monthly budgets, in
//! this process (`memory`) or shared by every replica (`redis`).
//!
//! A request is admitted with a [`Ticket`] that reserves its tokens (input
//! estimate + max tokens); when it ends, the ticket is settled with what it
//! really used and cost, as Bedrock does with its own quotas.

pub mod gcra;
mod memory;
mod period;
pub mod runtime_keys;
mod shared;
mod slots;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meridian_config::{Limits, OnUnavailable, StateSettings, Tenant};
use meridian_wire::{BedrockError, ErrorKind};

pub use memory::Memory;
pub use period::Period;
pub use shared::Shared;

/// Token and cost totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Requests admitted and settled.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Estimated cost, USD.
    pub cost_usd: f64,
    /// Requests served by a target whose price is unknown (a model a
    /// refresh found): not in `cost_usd`, which is why they are counted.
    pub unpriced_requests: u64,
}

/// One request asking to be admitted.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Its tenant.
    pub tenant: Arc<Tenant>,
    /// Meridian's request ID (the in-flight lease's name).
    pub request_id: String,
    /// Tokens to reserve: input estimate + the most it may generate.
    pub tokens: u64,
    /// How long its in-flight lease lasts if it is never settled (a crash).
    pub lease_ms: u64,
}

/// Where a rate stands after a request was admitted, for `x-ratelimit-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The limit per minute.
    pub limit: u64,
    /// Admissible right now.
    pub remaining: u64,
    /// Until the limit is fully available again, ms.
    pub reset_ms: u64,
}

/// An admitted request's claim, settled when it ends.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Its tenant.
    pub tenant: Arc<Tenant>,
    /// Its request ID.
    pub request_id: String,
    /// Tokens reserved.
    pub reserved: u64,
    /// Requests-per-minute standing.
    pub requests: Option<Window>,
    /// Tokens-per-minute standing.
    pub tokens: Option<Window>,
    /// Admitted by this replica's local limits (the shared backend was down,
    /// or there is none): settled locally too.
    pub local: bool,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Over `requests_per_minute`.
    Requests { limit: u64, retry_after_ms: u64 },
    /// Over `tokens_per_minute`.
    Tokens { limit: u64, retry_after_ms: u64 },
    /// At `max_concurrent`.
    Concurrency { limit: u64 },
    /// A budget is spent.
    Budget {
        period: Period,
        budget: f64,
        spent: f64,
        resets: String,
    },
    /// The shared backend is unreachable and `on_unavailable = "fail_closed"`.
    Unavailable,
}

impl Refused {
    /// Seconds to wait, for `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refused::Requests { retry_after_ms, .. } | Refused::Tokens { retry_after_ms, .. } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            Refused::Concurrency { .. } | Refused::Unavailable => Some(1),
            Refused::Budget { .. } => None,
        }
    }

    /// The error a client gets.
    pub fn error(&self, tenant: &str) -> BedrockError {
        match self {
            Refused::Requests {
                limit,
                retry_after_ms,
            } => BedrockError::new(
                ErrorKind::Throttling,
                format!(
                    "Tenant '{tenant}' is over its limit of {limit} requests per minute; retry in {} ms.",
                    retry_after_ms
                ),
            ),
            Refused::Tokens {
                limit,
                retry_after_ms,
            } => BedrockError::new(
                ErrorKind::Throttling,
                format!(
                    "Tenant '{tenant}' is over its limit of {limit} tokens per minute (input estimate + max tokens are reserved until the answer's usage is known); retry in {} ms.",
                    retry_after_ms
                ),
            ),
            Refused::Concurrency { limit } => BedrockError::new(
                ErrorKind::Throttling,
                format!("Tenant '{tenant}' already has its limit of {limit} requests in flight."),
            ),
            Refused::Budget {
                period,
                budget,
                spent,
                resets,
            } => BedrockError::new(
                ErrorKind::ServiceQuotaExceeded,
                format!(
                    "The {} budget of tenant '{tenant}' (budget_usd_per_{} = {budget}) is spent: ${spent:.4} estimated so far. It resets at {resets}.",
                    period.adjective(),
                    period.key()
                ),
            ),
            Refused::Unavailable => BedrockError::new(
                ErrorKind::ServiceUnavailable,
                "Tenant limits cannot be checked: the shared state backend is unreachable and [state] on_unavailable = \"fail_closed\".",
            ),
        }
    }
}

/// Limits, budgets and usage, locally or shared.
#[derive(Debug)]
pub struct Limiter {
    local: Memory,
    shared: Option<Shared>,
    settings: StateSettings,
    /// Requests admitted by local limits because the shared backend was down.
    pub degraded: AtomicU64,
    /// Each tenant's `max_concurrent` on this replica, taken before its
    /// body is read.
    pub slots: slots::Slots,
    /// Keys issued at run time, when there is no shared backend.
    runtime_keys: parking_lot::RwLock<
        std::collections::HashMap<meridian_config::KeyHash, runtime_keys::KeyRecord>,
    >,
    /// Recent lookups of issued keys in the shared backend.
    key_cache: parking_lot::Mutex<
        std::collections::HashMap<meridian_config::KeyHash, (Option<String>, tokio::time::Instant)>,
    >,
}

impl Limiter {
    /// From `[state]`. A Redis backend connects in the background.
    pub fn new(settings: &StateSettings) -> Limiter {
        let shared = match &settings.backend {
            meridian_config::Backend::Memory => None,
            meridian_config::Backend::Redis { url } => {
                Some(Shared::new(url, Duration::from_millis(settings.timeout_ms)))
            }
        };
        Limiter {
            local: Memory::new(),
            shared,
            settings: settings.clone(),
            degraded: AtomicU64::new(0),
            slots: slots::Slots::default(),
            runtime_keys: Default::default(),
            key_cache: Default::default(),
        }
    }

    /// The shared backend, if there is one.
    pub fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    /// The admit stage.
    pub async fn admit(&self, ask: Ask) -> Result<Ticket, Refused> {
        if !ask.tenant.limits.any() {
            return Ok(Ticket {
                local: self.shared.is_none(),
                tenant: ask.tenant,
                request_id: ask.request_id,
                reserved: 0,
                requests: None,
                tokens: None,
            });
        }
        match &self.shared {
            None => self.local.admit(&ask, 1),
            Some(s) => match s.tenants().admit(&ask).await {
                Some(r) => r,
                None => self.degraded(&ask),
            },
        }
    }

    fn degraded(&self, ask: &Ask) -> Result<Ticket, Refused> {
        match self.settings.on_unavailable {
            OnUnavailable::FailOpen => {
                self.degraded.fetch_add(1, Ordering::Relaxed);
                self.local.admit(ask, self.settings.replicas.max(1))
            }
            OnUnavailable::FailClosed => Err(Refused::Unavailable),
        }
    }

    /// Settles a ticket with what the request used and cost; shared
    /// settlements run in the background.
    pub fn settle(&self, ticket: Ticket, used: Usage) {
        match &self.shared {
            Some(s) if !ticket.local => s.tenants().settle(ticket, used),
            _ => self.local.settle(&ticket, used),
        }
    }

    /// Usage per tenant today and this month; `None` when the shared
    /// backend cannot be asked.
    pub async fn usage(&self, tenants: &[Arc<Tenant>]) -> Option<Vec<(String, Usage, Usage)>> {
        let mut out = Vec::new();
        for t in tenants {
            let (day, month) = match &self.shared {
                Some(s) => s.tenants().usage(&t.name).await?,
                None => self.local.usage(&t.name),
            };
            out.push((t.name.clone(), day, month));
        }
        Some(out)
    }
}

/// The limits a replica enforces alone when they are shared by `replicas`.
pub(crate) fn divided(l: &Limits, replicas: u32) -> Limits {
    let n = u64::from(replicas.max(1));
    let part = |v: Option<u64>| v.map(|v| (v / n).max(1));
    let share = |v: Option<f64>| v.map(|v| v / n as f64);
    Limits {
        requests_per_minute: part(l.requests_per_minute),
        tokens_per_minute: part(l.tokens_per_minute),
        max_concurrent: part(l.max_concurrent),
        budget_usd_per_day: share(l.budget_usd_per_day),
        budget_usd_per_month: share(l.budget_usd_per_month),
        admit_unpriced: l.admit_unpriced,
    }
}

/// An admitted request's ticket and the limiter that must settle it: settled
/// with real usage when the request ends, or with nothing when it is dropped
/// unsettled (the client went away), so no reservation or lease is left behind.
#[derive(Debug)]
pub struct Claim {
    limiter: Arc<Limiter>,
    ticket: Option<Ticket>,
}

impl Claim {
    /// Holds `ticket` until it is settled.
    pub fn new(limiter: Arc<Limiter>, ticket: Ticket) -> Claim {
        Claim {
            limiter,
            ticket: Some(ticket),
        }
    }

    /// The ticket.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }

    /// Settles with what the request used.
    pub fn settle(mut self, used: Usage) {
        if let Some(t) = self.ticket.take() {
            self.limiter.settle(t, used);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.limiter.settle(
                t,
                Usage {
                    requests: 1,
                    ..Usage::default()
                },
            );
        }
    }
}

/// `x-ratelimit-*` headers for a ticket (OpenAI's names, Bedrock paths too).
pub fn rate_headers(t: &Ticket) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (w, what) in [(t.requests, "requests"), (t.tokens, "tokens")] {
        if let Some(w) = w {
            push_window(&mut out, what, w);
        }
    }
    out
}

fn push_window(out: &mut Vec<(&'static str, String)>, what: &str, w: Window) {
    let (limit, remaining, reset) = match what {
        "requests" => (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        _ => (
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ),
    };
    out.push((limit, w.limit.to_string()));
    out.push((remaining, w.remaining.to_string()));
    out.push((reset, duration_text(w.reset_ms)));
}

impl Refused {
    /// `Retry-After` and the `x-ratelimit-*` headers of the refused limit.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = self.retry_after_secs() {
            out.push(("retry-after", s.to_string()));
        }
        match *self {
            Refused::Requests {
                limit,
                retry_after_ms,
            } => push_window(
                &mut out,
                "requests",
                Window {
                    limit,
                    remaining: 0,
                    reset_ms: retry_after_ms,
                },
            ),
            Refused::Tokens {
                limit,
                retry_after_ms,
            } => push_window(
                &mut out,
                "tokens",
                Window {
                    limit,
                    remaining: 0,
                    reset_ms: retry_after_ms,
                },
            ),
            _ => {}
        }
        out
    }
}

/// `250ms`, `1.5s`, `6m0s`, as OpenAI writes its reset times.
pub fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
