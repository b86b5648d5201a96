//! Batch state: where batches and their files are kept: in this process, or in Redis
//! (`[state] backend = "redis"`) so every replica answers for every batch
//! and a restart loses none. Keys are hashed with the tenant, so one
//! tenant's IDs name nothing for another.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use std::sync::Arc;

use meridian_upstream::CredentialSource;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::limits::Shared;

/// Batch state and the credentials S3 is called with.
#[derive(Default)]
pub struct Batches {
    pub(crate) store: Store,
    creds: RwLock<Option<Arc<dyn CredentialSource>>>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batches")
    }
}

impl Batches {
    /// The credentials the batch buckets are written with.
    pub fn set_credentials(&self, creds: Arc<dyn CredentialSource>) {
        *self.creds.write() = Some(creds);
    }

    /// The credentials set, if any.
    pub fn credentials(&self) -> Option<Arc<dyn CredentialSource>> {
        self.creds.read().clone()
    }
}

/// The shared backend did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Objects, sets and claims, in memory or in Redis.
#[derive(Debug, Default)]
pub(crate) struct Store {
    objects: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    sets: Mutex<HashMap<String, BTreeSet<String>>>,
}

/// The key of a tenant's object `id` of kind `kind` (`batch`, `file`).
pub fn object_key(kind: &str, tenant: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    format!("meridian:batch:{kind}:{}", hex::encode(h.finalize()))
}

/// The set of a tenant's batches.
pub fn tenant_set(tenant: &str) -> String {
    let h = Sha256::digest(tenant.as_bytes());
    format!("meridian:batch:tenant:{}", hex::encode(h))
}

/// The set of batches still running (`tenant\0id`), for the poller.
pub const ACTIVE: &str = "meridian:batch:active";

impl Store {
    pub async fn get<T: DeserializeOwned>(
        &self,
        shared: Option<&Shared>,
        key: &str,
    ) -> Result<Option<T>, Unavailable> {
        let raw = match shared {
            Some(s) => s.batches().get(key).await.ok_or(Unavailable)?,
            None => {
                let mut m = self.objects.lock();
                match m.get(key) {
                    Some((_, until)) if *until <= Instant::now() => {
                        m.remove(key);
                        None
                    }
                    Some((v, _)) => Some(v.clone()),
                    None => None,
                }
            }
        };
        Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
    }

    pub async fn put<T: Serialize>(
        &self,
        shared: Option<&Shared>,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let raw = serde_json::to_vec(value).map_err(|_| Unavailable)?;
        match shared {
            Some(s) => s.batches().put(key, raw, ttl).await.ok_or(Unavailable),
            None => {
                self.objects
                    .lock()
                    .insert(key.to_string(), (raw, Instant::now() + ttl));
                Ok(())
            }
        }
    }

    pub async fn add(
        &self,
        shared: Option<&Shared>,
        set: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        match shared {
            Some(s) => s.batches().add(set, member, ttl).await.ok_or(Unavailable),
            None => {
                self.sets
                    .lock()
                    .entry(set.to_string())
                    .or_default()
                    .insert(member.to_string());
                Ok(())
            }
        }
    }

    pub async fn remove(
        &self,
        shared: Option<&Shared>,
        set: &str,
        member: &str,
    ) -> Result<(), Unavailable> {
        match shared {
            Some(s) => s.batches().remove(set, member).await.ok_or(Unavailable),
            None => {
                if let Some(x) = self.sets.lock().get_mut(set) {
                    x.remove(member);
                }
                Ok(())
            }
        }
    }

    pub async fn members(
        &self,
        shared: Option<&Shared>,
        set: &str,
    ) -> Result<Vec<String>, Unavailable> {
        match shared {
            Some(s) => s.batches().members(set).await.ok_or(Unavailable),
            None => Ok(self
                .sets
                .lock()
                .get(set)
                .map(|x| x.iter().cloned().collect())
                .unwrap_or_default()),
        }
    }

    /// Whether this call is the first to claim `key` (a batch's settlement
    /// happens once, whichever replica sees the batch end first).
    pub async fn claim(
        &self,
        shared: Option<&Shared>,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        match shared {
            Some(s) => s.batches().claim(key, ttl).await.ok_or(Unavailable),
            None => {
                let mut m = self.objects.lock();
                if m.get(key).is_some_and(|(_, until)| *until > Instant::now()) {
                    return Ok(false);
                }
                m.insert(key.to_string(), (Vec::new(), Instant::now() + ttl));
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_depend_on_the_tenant_and_claims_happen_once() {
        assert_ne!(
            object_key("batch", "a", "batch_1"),
            object_key("batch", "b", "batch_1")
        );
        let s = Store::default();
        let ttl = Duration::from_secs(60);
        assert_eq!(s.claim(None, "k", ttl).await, Ok(true));
        assert_eq!(s.claim(None, "k", ttl).await, Ok(false));
        s.put(None, "o", &serde_json::json!({"a": 1}), ttl)
            .await
            .unwrap();
        let v: Option<serde_json::Value> = s.get(None, "o").await.unwrap();
        assert_eq!(v, Some(serde_json::json!({"a": 1})));
        s.add(None, "set", "x", ttl).await.unwrap();
        s.add(None, "set", "y", ttl).await.unwrap();
        s.remove(None, "set", "x").await.unwrap();
        assert_eq!(s.members(None, "set").await.unwrap(), vec!["y".to_string()]);
    }
}
