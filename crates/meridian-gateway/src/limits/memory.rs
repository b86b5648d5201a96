//! Limits kept in this process: the `memory` backend, and every replica's
//! fallback when the shared backend is unreachable (then with each limit
//! divided by the number of replicas).

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::gcra::{self, Rate};
use super::{Ask, Period, Refused, Ticket, Usage, Window, divided};

#[derive(Debug, Default)]
struct TenantState {
    /// TATs with the limit they were kept under: a limit changed by a
    /// reload starts a fresh window (see `shared::rate_part`).
    requests_tat: (u64, f64),
    tokens_tat: (u64, f64),
    /// Request ID → lease expiry, ms.
    in_flight: HashMap<String, f64>,
    /// Usage of the current day and month, by [`Period::number`].
    day: (i64, Usage),
    month: (i64, Usage),
}

/// In-process limits.
#[derive(Debug)]
pub struct Memory {
    epoch: Instant,
    tenants: Mutex<HashMap<String, TenantState>>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

impl Memory {
    /// Empty.
    pub fn new() -> Memory {
        Memory {
            epoch: Instant::now(),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    /// Admits `ask` under its tenant's limits divided by `replicas`.
    pub fn admit(&self, ask: &Ask, replicas: u32) -> Result<Ticket, Refused> {
        let limits = divided(&ask.tenant.limits, replicas);
        let now = self.now_ms();
        let wall = SystemTime::now();
        let mut map = self.tenants.lock();
        let st = map.entry(ask.tenant.name.clone()).or_default();
        for (period, budget) in [
            (Period::Day, limits.budget_usd_per_day),
            (Period::Month, limits.budget_usd_per_month),
        ] {
            let Some(budget) = budget else { continue };
            let spent = current(st, period, wall).cost_usd;
            if spent >= budget {
                return Err(Refused::Budget {
                    period,
                    budget,
                    spent,
                    resets: period.resets(wall),
                });
            }
        }
        if let Some(max) = limits.max_concurrent {
            st.in_flight.retain(|_, until| *until > now);
            if st.in_flight.len() as u64 >= max {
                return Err(Refused::Concurrency { limit: max });
            }
        }
        let req = check(limits.requests_per_minute, st.requests_tat, now, 1);
        if let Some((v, limit)) = req
            && !v.admitted
        {
            return Err(Refused::Requests {
                limit,
                retry_after_ms: v.retry_after.ceil() as u64,
            });
        }
        let tok = check(limits.tokens_per_minute, st.tokens_tat, now, ask.tokens);
        if let Some((v, limit)) = tok
            && !v.admitted
        {
            return Err(Refused::Tokens {
                limit,
                retry_after_ms: v.retry_after.ceil() as u64,
            });
        }
        if let Some((v, limit)) = req {
            st.requests_tat = (limit, v.tat);
        }
        if let Some((v, limit)) = tok {
            st.tokens_tat = (limit, v.tat);
        }
        if limits.max_concurrent.is_some() {
            st.in_flight
                .insert(ask.request_id.clone(), now + ask.lease_ms as f64);
        }
        Ok(Ticket {
            tenant: ask.tenant.clone(),
            request_id: ask.request_id.clone(),
            reserved: if tok.is_some() { ask.tokens } else { 0 },
            requests: req.map(window),
            tokens: tok.map(window),
            local: true,
        })
    }

    /// Gives back unused tokens, ends the lease, adds usage.
    pub fn settle(&self, t: &Ticket, used: Usage) {
        let now = self.now_ms();
        let wall = SystemTime::now();
        let mut map = self.tenants.lock();
        let st = map.entry(t.tenant.name.clone()).or_default();
        st.in_flight.remove(&t.request_id);
        let used_tokens = used.input_tokens.saturating_add(used.output_tokens);
        if let Some(per_minute) = t.tokens.map(|w| w.limit) {
            let rate = Rate::per_minute(per_minute);
            let tat = tat_under(st.tokens_tat, per_minute);
            st.tokens_tat = (
                per_minute,
                if t.reserved >= used_tokens {
                    gcra::refund(rate, tat, now, t.reserved - used_tokens)
                } else {
                    gcra::charge(rate, tat, now, used_tokens - t.reserved)
                },
            );
        }
        for period in [Period::Day, Period::Month] {
            let u = current(st, period, wall);
            u.requests = u.requests.saturating_add(used.requests);
            u.input_tokens = u.input_tokens.saturating_add(used.input_tokens);
            u.output_tokens = u.output_tokens.saturating_add(used.output_tokens);
            u.cost_usd += used.cost_usd;
            u.unpriced_requests = u.unpriced_requests.saturating_add(used.unpriced_requests);
        }
    }

    /// Usage of `tenant` today and this month.
    pub fn usage(&self, tenant: &str) -> (Usage, Usage) {
        let wall = SystemTime::now();
        let mut map = self.tenants.lock();
        let st = map.entry(tenant.to_string()).or_default();
        (
            *current(st, Period::Day, wall),
            *current(st, Period::Month, wall),
        )
    }
}

/// The usage of the period containing `wall`, started afresh when the period changed.
fn current(st: &mut TenantState, period: Period, wall: SystemTime) -> &mut Usage {
    let number = period.number(wall);
    let slot = match period {
        Period::Day => &mut st.day,
        Period::Month => &mut st.month,
    };
    if slot.0 != number {
        *slot = (number, Usage::default());
    }
    &mut slot.1
}

/// The TAT kept under `limit`; none (a fresh window) when it was kept under another.
fn tat_under((kept_under, tat): (u64, f64), limit: u64) -> f64 {
    if kept_under == limit { tat } else { 0.0 }
}

fn check(limit: Option<u64>, tat: (u64, f64), now: f64, cost: u64) -> Option<(gcra::Verdict, u64)> {
    limit.map(|l| {
        let v = gcra::check(Rate::per_minute(l), tat_under(tat, l), now, cost);
        (v, l)
    })
}

fn window((v, limit): (gcra::Verdict, u64)) -> Window {
    Window {
        limit,
        remaining: v.remaining,
        reset_ms: v.reset.ceil() as u64,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use meridian_config::Tenant;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Token arithmetic saturates: any number, up to `u64::MAX`, in any
        /// field of a request's reservation or usage, admits or refuses and
        /// settles without wrapping (a debug build would panic).
        #[test]
        fn token_arithmetic_saturates(
            tokens in prop_oneof![Just(u64::MAX), any::<u64>()],
            input in prop_oneof![Just(u64::MAX), any::<u64>()],
            output in prop_oneof![Just(u64::MAX), any::<u64>()],
            requests in prop_oneof![Just(u64::MAX), any::<u64>()],
            tpm in prop_oneof![Just(u64::MAX), 1..100_000u64],
            lease_ms in prop_oneof![Just(u64::MAX), any::<u64>()],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let _guard = rt.enter();
            let memory = Memory::new();
            let mut tenant = Tenant::implicit();
            tenant.limits.tokens_per_minute = Some(tpm);
            tenant.limits.max_concurrent = Some(4);
            let ask = Ask { tenant: Arc::new(tenant), request_id: "r".into(), tokens, lease_ms };
            let mut settled = 0;
            for _ in 0..2 {
                if let Ok(ticket) = memory.admit(&ask, 1) {
                    let used = Usage { requests, input_tokens: input, output_tokens: output, ..Usage::default() };
                    memory.settle(&ticket, used);
                    settled += 1;
                }
            }
            // Sums never wrap below what one settlement added.
            let (day, _) = memory.usage("default");
            if settled > 0 {
                prop_assert!(day.input_tokens >= input && day.output_tokens >= output);
                prop_assert!(day.requests >= requests);
            }
        }
    }
}
