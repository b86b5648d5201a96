//! The `redis` backend: limits, budgets, usage and runtime API keys shared
//! by every replica through one Redis 7+ (or Valkey, ElastiCache) server.
//!
//! Admission and settlement are Lua scripts, atomic on the server and on its
//! clock; every key of a tenant carries the hash tag `{t:NAME}`, so Redis
//! Cluster keeps a tenant's keys in one slot. Every call is bounded by
//! `[state] timeout_ms`. A failed or slow call marks the backend down: the
//! limiter then uses local limits (or refuses, under `fail_closed`) without
//! calling Redis, while one background task pings it every 500 ms and marks
//! it up again when it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::gcra::Rate;
use super::{Ask, Period, Refused, Ticket, Usage, Window};

const ADMIT: &str = include_str!("admit.lua");
const SETTLE: &str = include_str!("settle.lua");
/// How often an unreachable backend is pinged.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// A shared Redis backend.
pub struct Shared {
    client: Option<redis::Client>,
    conn: OnceLock<ConnectionManager>,
    health: Arc<Health>,
    timeout: Duration,
    admit: Script,
    settle: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("up", &self.is_up())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Keys of one tenant, all in the slot of `{t:NAME}`.
/// A rate's TAT key part names the limit it was kept under, so a limit
/// changed by a reload starts a fresh window instead of carrying the old
/// one's debt (60 a minute's debt is a minute; 60,000 a minute's is a
/// millisecond). The old key expires with its TAT.
fn rate_part(part: &str, per_minute: Option<u64>) -> String {
    format!("{part}:{}", per_minute.unwrap_or(0))
}

fn key(tenant: &str, part: &str) -> String {
    format!("meridian:{{t:{tenant}}}:{part}")
}

fn rate_args(limit: Option<u64>) -> (f64, f64) {
    limit.map_or((0.0, 0.0), |l| {
        let r = Rate::per_minute(l);
        (r.interval, r.burst)
    })
}

impl Shared {
    /// A backend for `url`; it connects on first use.
    pub fn new(url: &str, timeout: Duration) -> Shared {
        let client = redis::Client::open(url)
            .map_err(|e| tracing::error!(error = %e, "the [state] url is not usable"))
            .ok();
        Shared {
            client,
            conn: OnceLock::new(),
            health: Arc::new(Health {
                up: AtomicBool::new(true),
                probing: AtomicBool::new(false),
                orphans: parking_lot::Mutex::default(),
            }),
            timeout,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
        }
    }

    /// The bytes under `key` (`None`: absent, or the backend is down).
    pub async fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        let key = key.to_string();
        self.call(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await })
            .await
            .flatten()
    }

    /// Keeps `value` under `key` for `ttl` (nothing when the backend is down).
    pub async fn set_bytes(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let key = key.to_string();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: Option<()> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    /// Whether the last call worked.
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let client = self.client.clone()?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        match ConnectionManager::new_lazy_with_config(client, cfg) {
            Ok(c) => Some(self.conn.get_or_init(|| c).clone()),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the Redis connection");
                None
            }
        }
    }

    /// Runs `f` with a connection, within the timeout; `None` (and the
    /// backend marked down) when that fails.
    async fn call<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        let conn = self.conn()?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.down(&e.to_string());
                None
            }
            Err(_) => {
                self.down(&format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn down(&self, why: &str) {
        if let Some(conn) = self.conn() {
            mark_down(&self.health, conn, self.timeout, why);
        }
    }

    /// Connects (bounded by `wait`) so the first requests find it up.
    pub async fn connect(&self, wait: Duration) -> bool {
        let Some(conn) = self.conn() else {
            return false;
        };
        let ok = Probe {
            conn,
            timeout: wait,
        }
        .ping()
        .await;
        if !ok {
            self.down("no answer at start-up");
        }
        ok
    }

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
        let mut inv = self.admit.prepare_invoke();
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
            .call(|mut c| async move { inv.invoke_async::<Reply>(&mut c).await })
            .await
        else {
            if l.max_concurrent.is_some() {
                // The script may still run once a hung Redis resumes.
                self.health.orphan(&t.name, &ask.request_id);
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
        let Some(conn) = self.conn() else { return };
        if !self.is_up() {
            self.health.orphan(&ticket.tenant.name, &ticket.request_id);
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
        let script = self.settle.clone();
        let (timeout, health) = (
            self.timeout.max(Duration::from_millis(500)),
            self.health.clone(),
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
                .arg(Period::Month.ttl_secs());
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
            self.call(|mut c| async move {
                let v: std::collections::HashMap<String, String> = c.hgetall(k).await?;
                Ok(v)
            })
            .await
            .map(|m| usage_of(&m))
        };
        Some((read(day).await?, read(month).await?))
    }

    /// Stores a runtime key's record under its hash (hex).
    pub async fn put_key(&self, hash_hex: &str, record: &str) -> bool {
        let (k, r) = (key_record(hash_hex), record.to_string());
        let idx = hash_hex.to_string();
        self.call(|mut c| async move {
            c.set::<_, _, ()>(&k, r).await?;
            c.sadd::<_, _, ()>(KEY_SET, idx).await
        })
        .await
        .is_some()
    }

    /// A runtime key's record, by hash (hex); `Some(None)` when there is none.
    pub async fn get_key(&self, hash_hex: &str) -> Option<Option<String>> {
        let k = key_record(hash_hex);
        self.call(|mut c| async move { c.get(k).await }).await
    }

    /// Every runtime key's (hash hex, record).
    pub async fn list_keys(&self) -> Option<Vec<(String, String)>> {
        let hashes: Vec<String> = self
            .call(|mut c| async move { c.smembers(KEY_SET).await })
            .await?;
        if hashes.is_empty() {
            return Some(Vec::new());
        }
        // Every record in one round trip.
        let names: Vec<String> = hashes.iter().map(|h| key_record(h)).collect();
        let records: Vec<Option<String>> = self
            .call(|mut c| async move { redis::cmd("MGET").arg(names).query_async(&mut c).await })
            .await?;
        Some(
            hashes
                .into_iter()
                .zip(records)
                .filter_map(|(h, r)| Some((h, r?)))
                .collect(),
        )
    }

    /// Removes a runtime key.
    pub async fn delete_key(&self, hash_hex: &str) -> bool {
        let (k, idx) = (key_record(hash_hex), hash_hex.to_string());
        self.call(|mut c| async move {
            c.del::<_, ()>(&k).await?;
            c.srem::<_, _, ()>(KEY_SET, idx).await
        })
        .await
        .is_some()
    }
}

impl Shared {
    /// Tells the other replicas which breakers opened here (`opened`: key
    /// and how long it stays open) and returns every breaker some replica
    /// opened that is still open: (key, until, ms since the epoch).
    pub async fn exchange_breakers(
        &self,
        opened: &[(String, Duration)],
    ) -> Option<Vec<(String, u64)>> {
        let now = epoch_ms();
        let fresh: Vec<(String, u64)> = opened
            .iter()
            .map(|(k, d)| (k.clone(), now + d.as_millis() as u64))
            .collect();
        let all: std::collections::HashMap<String, u64> = self
            .call(|mut c| async move {
                if !fresh.is_empty() {
                    c.hset_multiple::<_, _, _, ()>(BREAKERS, &fresh).await?;
                }
                c.hgetall(BREAKERS).await
            })
            .await?;
        let stale: Vec<String> = all
            .iter()
            .filter(|(_, until)| **until + 60_000 < now)
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            let _ = self
                .call(|mut c| async move { c.hdel::<_, _, ()>(BREAKERS, stale).await })
                .await;
        }
        Some(all.into_iter().filter(|(_, until)| *until > now).collect())
    }
}

/// The set of issued keys' hashes; with their records it shares one hash
/// tag, so listing them is one slot's work on Redis Cluster too.
const KEY_SET: &str = "meridian:{keys}:all";

/// The record of the issued key with this hash (hex).
fn key_record(hash_hex: &str) -> String {
    format!("meridian:{{keys}}:{hash_hex}")
}

/// The hash of open breakers: candidate key → open until (epoch ms).
const BREAKERS: &str = "meridian:breakers";

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    }
}

/// Whether Redis answers, and whether a probe is already waiting for it.
#[derive(Debug)]
struct Health {
    up: AtomicBool,
    probing: AtomicBool,
    /// In-flight leases Redis may hold for requests that are over: an
    /// admission that timed out here may still run when a hung Redis
    /// resumes, and a settlement that could not be sent never released its
    /// lease. Removed once Redis answers again (the commands queued before
    /// the probe's PING have run by then).
    orphans: parking_lot::Mutex<Vec<(String, String)>>,
}

/// At most this many orphaned leases are remembered (each expires with its
/// lease anyway).
const MAX_ORPHANS: usize = 100_000;

impl Health {
    fn orphan(&self, tenant: &str, request_id: &str) {
        let mut o = self.orphans.lock();
        if o.len() >= MAX_ORPHANS {
            o.remove(0);
        }
        o.push((key(tenant, "if"), request_id.to_string()));
    }

    /// Releases the orphaned leases; false (and they stay) when Redis does
    /// not answer.
    async fn reconcile(&self, conn: &mut ConnectionManager, timeout: Duration) -> bool {
        let orphans = std::mem::take(&mut *self.orphans.lock());
        if orphans.is_empty() {
            return true;
        }
        let mut pipe = redis::pipe();
        for (k, id) in &orphans {
            pipe.zrem(k, id).ignore();
        }
        let done = tokio::time::timeout(timeout, pipe.query_async::<()>(conn)).await;
        if matches!(done, Ok(Ok(()))) {
            tracing::info!(
                leases = orphans.len(),
                "released in-flight leases of requests that ended while Redis did not answer"
            );
            return true;
        }
        self.orphans.lock().extend(orphans);
        false
    }
}

/// Marks the backend down and starts the one probe that marks it up again.
fn mark_down(health: &Arc<Health>, conn: ConnectionManager, timeout: Duration, why: &str) {
    if health.up.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            error = why,
            "the Redis state backend is unreachable; [state] on_unavailable applies until it answers again"
        );
    }
    if health.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let health = health.clone();
    let timeout = timeout.max(Duration::from_millis(250));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let probe = Probe {
                conn: conn.clone(),
                timeout,
            };
            if probe.ping().await && health.reconcile(&mut conn.clone(), timeout).await {
                health.up.store(true, Ordering::Relaxed);
                health.probing.store(false, Ordering::Release);
                tracing::warn!("the Redis state backend answers again; shared limits resume");
                return;
            }
        }
    });
}

/// A PING within a timeout.
struct Probe {
    conn: ConnectionManager,
    timeout: Duration,
}

impl Probe {
    async fn ping(mut self) -> bool {
        matches!(
            tokio::time::timeout(
                self.timeout,
                redis::cmd("PING").query_async::<String>(&mut self.conn)
            )
            .await,
            Ok(Ok(_))
        )
    }
}
