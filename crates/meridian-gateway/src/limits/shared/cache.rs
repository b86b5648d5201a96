//! Response-cache entries in Redis, as opaque bytes with a time to live.

use std::time::Duration;

use super::Shared;

/// The response cache's entries.
#[derive(Debug, Clone, Copy)]
pub struct CacheStore<'a>(pub(super) &'a Shared);

impl CacheStore<'_> {
    /// The bytes under `key` (`None`: absent, or the backend is down).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get_bytes(key).await.flatten()
    }

    /// Keeps `value` under `key` for `ttl` (nothing when the backend is down).
    pub async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let _ = self.0.set_for(key, value, ttl).await;
    }
}
