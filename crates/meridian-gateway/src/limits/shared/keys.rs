//! Runtime API keys (issued through `/admin`) in Redis: each record under
//! its key's hash, and the set of hashes, in one hash-tag slot.

use redis::AsyncCommands;

use super::Shared;

/// The runtime API keys.
#[derive(Debug, Clone, Copy)]
pub struct KeyStore<'a>(pub(super) &'a Shared);

impl KeyStore<'_> {
    /// Stores a runtime key's record under its hash (hex).
    pub async fn put(&self, hash_hex: &str, record: &str) -> bool {
        let (k, r) = (key_record(hash_hex), record.to_string());
        let idx = hash_hex.to_string();
        self.0
            .call(|mut c| async move {
                c.set::<_, _, ()>(&k, r).await?;
                c.sadd::<_, _, ()>(KEY_SET, idx).await
            })
            .await
            .is_some()
    }

    /// A runtime key's record, by hash (hex); `Some(None)` when there is none.
    pub async fn get(&self, hash_hex: &str) -> Option<Option<String>> {
        let k = key_record(hash_hex);
        self.0.call(|mut c| async move { c.get(k).await }).await
    }

    /// Every runtime key's (hash hex, record).
    pub async fn list(&self) -> Option<Vec<(String, String)>> {
        let hashes: Vec<String> = self
            .0
            .call(|mut c| async move { c.smembers(KEY_SET).await })
            .await?;
        if hashes.is_empty() {
            return Some(Vec::new());
        }
        // Every record in one round trip.
        let names: Vec<String> = hashes.iter().map(|h| key_record(h)).collect();
        let records: Vec<Option<String>> = self
            .0
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
    pub async fn delete(&self, hash_hex: &str) -> bool {
        let (k, idx) = (key_record(hash_hex), hash_hex.to_string());
        self.0
            .call(|mut c| async move {
                c.del::<_, ()>(&k).await?;
                c.srem::<_, _, ()>(KEY_SET, idx).await
            })
            .await
            .is_some()
    }
}

/// The set of issued keys' hashes; with their records it shares one hash
/// tag, so listing them is one slot's work on Redis Cluster too.
const KEY_SET: &str = "meridian:{keys}:all";

/// The record of the issued key with this hash (hex).
fn key_record(hash_hex: &str) -> String {
    format!("meridian:{{keys}}:{hash_hex}")
}
