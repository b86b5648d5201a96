//! The `redis` backend: what every replica shares through one Redis 7+ (or
//! Valkey, ElastiCache) server, one typed store per concern — tenant limits
//! and usage ([`TenantStore`]), runtime API keys ([`KeyStore`]), response
//! cache entries ([`CacheStore`]), stored responses ([`ResponseStore`]) and breaker openings ([`BreakerStore`]) —
//! over one connection whose health this module keeps.
//!
//! Every call is bounded by `[state] timeout_ms`. A failed or slow call marks the backend down: the
//! limiter then uses local limits (or refuses, under `fail_closed`) without
//! calling Redis, while one background task pings it every 500 ms and marks
//! it up again when it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

mod batches;
mod breakers;
mod cache;
mod keys;
mod responses;
mod tenants;

pub use batches::BatchStore;
pub use breakers::BreakerStore;
pub use cache::CacheStore;
pub use keys::KeyStore;
pub use responses::ResponseStore;
pub use tenants::TenantStore;

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

    /// Tenant limits, budgets and usage.
    pub fn tenants(&self) -> TenantStore<'_> {
        TenantStore(self)
    }

    /// Runtime API keys.
    pub fn keys(&self) -> KeyStore<'_> {
        KeyStore(self)
    }

    /// Response-cache entries.
    pub fn cache(&self) -> CacheStore<'_> {
        CacheStore(self)
    }

    /// Stored Responses API state.
    pub fn responses(&self) -> ResponseStore<'_> {
        ResponseStore(self)
    }

    /// Batch state.
    pub fn batches(&self) -> BatchStore<'_> {
        BatchStore(self)
    }

    /// Breakers opened by any replica.
    pub fn breakers(&self) -> BreakerStore<'_> {
        BreakerStore(self)
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

    /// `GET key`: the bytes, or `None` inside when absent; `None` when the
    /// backend is down.
    async fn get_bytes(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let key = key.to_string();
        self.call(|mut c| async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        })
        .await
    }

    /// `SET key value PX ttl`; `None` when the backend is down.
    async fn set_for(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Option<()> {
        let key = key.to_string();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query_async(&mut c)
                .await
        })
        .await
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
        o.push((tenants::key(tenant, "if"), request_id.to_string()));
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
