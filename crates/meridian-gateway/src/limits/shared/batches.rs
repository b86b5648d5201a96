//! Batch state in Redis: objects (batches, files) as opaque bytes with a
//! time to live, sets that index them (a tenant's batches, the batches
//! still running), and a once-only claim (a batch's settlement). "The
//! backend is down" is an answer of its own: `None`.

use std::time::Duration;

use redis::AsyncCommands;

use super::Shared;

/// Batch state.
#[derive(Debug, Clone, Copy)]
pub struct BatchStore<'a>(pub(super) &'a Shared);

impl BatchStore<'_> {
    /// The bytes under `key`; `None` when the backend is down.
    pub async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.0.get_bytes(key).await
    }

    /// Keeps `value` under `key` for `ttl`.
    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Option<()> {
        self.0.set_for(key, value, ttl).await
    }

    /// Adds `member` to the set `key` (kept for `ttl` from now).
    pub async fn add(&self, key: &str, member: &str, ttl: Duration) -> Option<()> {
        let (key, member) = (key.to_string(), member.to_string());
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.0
            .call(|mut c| async move {
                redis::pipe()
                    .sadd(&key, member)
                    .ignore()
                    .expire(&key, secs)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Removes `member` from the set `key`.
    pub async fn remove(&self, key: &str, member: &str) -> Option<()> {
        let (key, member) = (key.to_string(), member.to_string());
        self.0
            .call(|mut c| async move { c.srem::<_, _, ()>(key, member).await })
            .await
    }

    /// The members of the set `key`.
    pub async fn members(&self, key: &str) -> Option<Vec<String>> {
        let key = key.to_string();
        self.0
            .call(|mut c| async move { c.smembers::<_, Vec<String>>(key).await })
            .await
    }

    /// Claims `key` once (`SET NX`): whether this call was the first.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Option<bool> {
        let key = key.to_string();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.0
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await
            .map(|r| r.is_some())
    }
}
