//! Stored Responses API state in Redis: opaque bytes with a time to live,
//! where "the backend is down" is an answer of its own (a stored response
//! that cannot be read is not the same as one that does not exist).

use std::time::Duration;

use redis::AsyncCommands;

use super::Shared;

/// Stored responses.
#[derive(Debug, Clone, Copy)]
pub struct ResponseStore<'a>(pub(super) &'a Shared);

impl ResponseStore<'_> {
    /// The bytes under `key`; `None` when the backend is down.
    pub async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.0.get_bytes(key).await
    }

    /// Keeps `value` under `key` for `ttl`; `None` when the backend is down.
    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Option<()> {
        self.0.set_for(key, value, ttl).await
    }

    /// Removes `key`: whether it was there; `None` when the backend is down.
    pub async fn delete(&self, key: &str) -> Option<bool> {
        let key = key.to_string();
        self.0
            .call(|mut c| async move { c.del::<_, u64>(key).await })
            .await
            .map(|n| n > 0)
    }
}
