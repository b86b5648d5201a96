//! Tenant limits, budgets and usage in Redis: admission and settlement are
//! Lua scripts, atomic on the server and on its clock; every key of a tenant
//! carries the hash tag `{t:NAME}`, so Redis Cluster keeps a tenant's keys in
//! one slot.

use std::time::{Duration, SystemTime};

use redis::AsyncCommands;

use super::{Shared, mark_down};
use crate::limits::gcra::Rate;
use crate::limits::{Ask, Period, Refused, Ticket, Usage, Window};

/// The tenants' limits, budgets and usage.
#[derive(Debug, Clone, Copy)]
pub struct TenantStore<'a>(pub(super) &'a Shared);

/// Keys of one tenant, all in the slot of `{t:NAME}`.
/// A rate's TAT key part names the limit it was kept under, so a limit
/// changed by a reload starts a fresh window instead of carrying the old
/// one's debt (60 a minute's debt is a minute; 60,000 a minute's is a
/// millisecond). The old key expires with its TAT.
fn rate_part(part: &str, per_minute: Option<u64>) -> String {
    format!("{part}:{}", per_minute.unwrap_or(0))
}

pub(super) fn key(tenant: &str, part: &str) -> String {
    format!("meridian:{{t:{tenant}}}:{part}")
}

fn rate_args(limit: Option<u64>) -> (f64, f64) {
    limit.map_or((0.0, 0.0), |l| {
        let r = Rate::per_minute(l);
        (r.interval, r.burst)
    })
}

impl TenantStore<'_> {
    /// Admits `ask` atomically on the server; `None` when Redis cannot be asked.
    pub async fn admit(&self, ask: &Ask) -> Option<Result<Ticket, Refused>> {
        let t = &ask.tenant;
        let l = &t.limits;
        let now = SystemTime::now();
        let (rq_int, rq_burst) = rate_args(l.requests_per_minute);
        let (tk_int, tk_burst) = rate_args(l.tokens_per_minute);
        let keys = [
            key(&t.name, &rate_part("rq", l.requests_per_minute)),
            key(&t.name, &rate_part("tk", l.tokens_per_minute)),
            key(&t.name, "if"),
            key(&t.name, &format!("d:{}", Period::Day.label(now))),
            key(&t.name, &format!("m:{}", Period::Month.label(now))),
        ];
        let mut inv = self.0.admit.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(rq_int)
            .arg(rq_burst)
            .arg(tk_int)
            .arg(tk_burst)
            .arg(ask.tokens)
            .arg(l.max_concurrent.unwrap_or(0))
            .arg(&ask.request_id)
            .arg(ask.lease_ms)
            .arg(l.budget_usd_per_day.unwrap_or(-1.0))
            .arg(l.budget_usd_per_month.unwrap_or(-1.0));
        type Reply = (i64, String, i64, i64, i64, i64, i64, String, String);
        let Some(r) = self
            .0
            .call(|mut c| async move { inv.invoke_async::<Reply>(&mut c).await })
            .await
        else {
            if l.max_concurrent.is_some() {
                // The script may still run once a hung Redis resumes.
                self.0.health.orphan(&t.name, &ask.request_id);
            }
            return None;
        };
        let (ok, by, retry, rq_left, rq_reset, tk_left, tk_reset, spent_day, spent_month) = r;
        let win = |limit: Option<u64>, left: i64, reset: i64| {
            limit.map(|limit| Window {
                limit,
                remaining: left.max(0) as u64,
                reset_ms: reset.max(0) as u64,
            })
        };
        if ok == 1 {
            return Some(Ok(Ticket {
                tenant: t.clone(),
                request_id: ask.request_id.clone(),
                reserved: if l.tokens_per_minute.is_some() {
                    ask.tokens
                } else {
                    0
                },
                requests: win(l.requests_per_minute, rq_left, rq_reset),
                tokens: win(l.tokens_per_minute, tk_left, tk_reset),
                local: false,
            }));
        }
        let retry_after_ms = retry.max(0) as u64;
        let refused = match by.as_str() {
            "requests" => Refused::Requests {
                limit: l.requests_per_minute.unwrap_or(0),
                retry_after_ms,
            },
            "tokens" => Refused::Tokens {
                limit: l.tokens_per_minute.unwrap_or(0),
                retry_after_ms,
            },
            "concurrency" => Refused::Concurrency {
                limit: l.max_concurrent.unwrap_or(0),
            },
            "budget_day" => Refused::Budget {
                period: Period::Day,
                budget: l.budget_usd_per_day.unwrap_or(0.0),
                spent: spent_day.parse().unwrap_or(0.0),
                resets: Period::Day.resets(now),
            },
            _ => Refused::Budget {
                period: Period::Month,
                budget: l.budget_usd_per_month.unwrap_or(0.0),
                spent: spent_month.parse().unwrap_or(0.0),
                resets: Period::Month.resets(now),
            },
        };
        Some(Err(refused))
    }

    /// Settles in the background (the answer is already on its way).
    pub fn settle(&self, ticket: Ticket, used: Usage) {
        let Some(conn) = self.0.conn() else { return };
        if !self.0.is_up() {
            self.0
                .health
                .orphan(&ticket.tenant.name, &ticket.request_id);
            return;
        }
        let name = &ticket.tenant.name;
        let now = SystemTime::now();
        let keys = [
            key(name, &rate_part("tk", ticket.tokens.map(|w| w.limit))),
            key(name, "if"),
            key(name, &format!("d:{}", Period::Day.label(now))),
            key(name, &format!("m:{}", Period::Month.label(now))),
        ];
        let used_tokens = used.input_tokens.saturating_add(used.output_tokens);
        let (tk_int, _) = rate_args(ticket.tokens.map(|w| w.limit));
        let script = self.0.settle.clone();
        let (timeout, health) = (
            self.0.timeout.max(Duration::from_millis(500)),
            self.0.health.clone(),
        );
        tokio::spawn(async move {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            let give_back = i64::try_from(i128::from(ticket.reserved) - i128::from(used_tokens))
                .unwrap_or(if ticket.reserved > used_tokens {
                    i64::MAX
                } else {
                    i64::MIN
                });
            inv.arg(tk_int)
                .arg(give_back)
                .arg(&ticket.request_id)
                .arg(used.cost_usd)
                .arg(used.requests)
                .arg(used.input_tokens)
                .arg(used.output_tokens)
                .arg(Period::Day.ttl_secs())
                .arg(Period::Month.ttl_secs())
                .arg(used.unpriced_requests);
            let mut c = conn.clone();
            let why = match tokio::time::timeout(timeout, inv.invoke_async::<i64>(&mut c)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            tracing::warn!(error = %why, "a request's usage could not be settled in Redis");
            health.orphan(&ticket.tenant.name, &ticket.request_id);
            mark_down(&health, conn, timeout, &why);
        });
    }

    /// A tenant's usage today and this month.
    pub async fn usage(&self, tenant: &str) -> Option<(Usage, Usage)> {
        let now = SystemTime::now();
        let day = key(tenant, &format!("d:{}", Period::Day.label(now)));
        let month = key(tenant, &format!("m:{}", Period::Month.label(now)));
        let read = |k: String| async move {
            self.0
                .call(|mut c| async move {
                    let v: std::collections::HashMap<String, String> = c.hgetall(k).await?;
                    Ok(v)
                })
                .await
                .map(|m| usage_of(&m))
        };
        Some((read(day).await?, read(month).await?))
    }
}

fn usage_of(m: &std::collections::HashMap<String, String>) -> Usage {
    let n = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Usage {
        requests: n("requests"),
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cost_usd: m
            .get("cost_usd")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        unpriced_requests: n("unpriced_requests"),
    }
}
