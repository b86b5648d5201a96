//! API keys issued at run time through `/admin`: kept in the state backend
//! by hash (Redis, so every replica sees them; or this process), never as
//! keys. Lookups are cached for at most [`CACHE_FOR`], so a key revoked on
//! one replica is refused by every replica within that time.

use std::time::{Duration, SystemTime};

use meridian_config::KeyHash;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Limiter;
use crate::invocation::rfc3339;
use crate::keys;
use meridian_config::OnUnavailable;

/// How long a lookup's answer is reused.
pub const CACHE_FOR: Duration = Duration::from_millis(500);

/// What is kept of an issued key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public id.
    pub id: String,
    /// Tenant it identifies.
    pub tenant: String,
    /// Its first characters.
    pub prefix: String,
    /// When it was issued.
    pub created: String,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The shared backend did not answer.
    #[error("the state backend is unreachable; try again")]
    Unavailable,
}

impl Limiter {
    /// Issues a key for `tenant`: returns the key (shown once) and its record.
    pub async fn issue_key(&self, tenant: &str) -> Result<(String, KeyRecord), KeyError> {
        let key = keys::generate();
        let h = keys::hash(&key);
        let record = KeyRecord {
            id: keys::id(&h),
            tenant: tenant.to_string(),
            prefix: keys::prefix(&key),
            created: rfc3339(SystemTime::now()),
        };
        match self.shared() {
            Some(s) => {
                let json = serde_json::to_string(&record).unwrap_or_default();
                if !s.keys().put(&hex::encode(h), &json).await {
                    return Err(KeyError::Unavailable);
                }
            }
            None => {
                self.runtime_keys.write().insert(h, record.clone());
            }
        }
        Ok((key, record))
    }

    /// The tenant of an issued key, if it is live; `Unavailable` when the
    /// shared backend cannot say (and, under fail_open, never said).
    pub async fn find_key(&self, h: &KeyHash) -> Result<Option<String>, KeyError> {
        let Some(s) = self.shared() else {
            return Ok(self.runtime_keys.read().get(h).map(|r| r.tenant.clone()));
        };
        let known = self.key_cache.lock().get(h).cloned();
        if let Some((tenant, at)) = &known
            && at.elapsed() < CACHE_FOR
        {
            return Ok(tenant.clone());
        }
        let tenant = match s.keys().get(&hex::encode(h)).await {
            Some(Some(json)) => serde_json::from_str::<KeyRecord>(&json)
                .ok()
                .map(|r| r.tenant),
            Some(None) => None,
            // Unreachable: never "invalid key" — under fail_open the last
            // answer Redis gave for this key stands; else a retryable error.
            None => {
                return match (self.settings.on_unavailable, known) {
                    (OnUnavailable::FailOpen, Some((tenant, _))) => Ok(tenant),
                    _ => Err(KeyError::Unavailable),
                };
            }
        };
        let mut cache = self.key_cache.lock();
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_FOR);
        }
        cache.insert(*h, (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    /// Every issued key's record.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut out: Vec<KeyRecord> = match self.shared() {
            Some(s) => s
                .keys()
                .list()
                .await
                .ok_or(KeyError::Unavailable)?
                .into_iter()
                .filter_map(|(_, json)| serde_json::from_str(&json).ok())
                .collect(),
            None => self.runtime_keys.read().values().cloned().collect(),
        };
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes the issued key with this id; false when there is none.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, KeyError> {
        match self.shared() {
            Some(s) => {
                let all = s.keys().list().await.ok_or(KeyError::Unavailable)?;
                let Some((h, _)) = all.into_iter().find(|(_, json)| {
                    serde_json::from_str::<KeyRecord>(json).is_ok_and(|r| r.id == id)
                }) else {
                    return Ok(false);
                };
                if !s.keys().delete(&h).await {
                    return Err(KeyError::Unavailable);
                }
                self.key_cache.lock().clear();
                Ok(true)
            }
            None => {
                let mut map = self.runtime_keys.write();
                let before = map.len();
                map.retain(|_, r| r.id != id);
                Ok(map.len() < before)
            }
        }
    }
}
