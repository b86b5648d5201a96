//! Stored Responses API state: what `previous_response_id`,
//! `GET /v1/responses/{id}` and its `input_items` read. A response is kept
//! only when `[responses] store = true` and its request did not say
//! `store: false`; under its tenant and ID (another tenant finds nothing),
//! with the region that processed it (a request whose residency policy does
//! not allow that region finds nothing), for `[responses] ttl`. In this
//! process (bounded, oldest out first) or, with `[state] backend = "redis"`,
//! in Redis with the TTL as its expiry, shared by every replica.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::bounded::{Bounded, Key};
use crate::limits::Shared;

/// One stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// Region that processed it.
    pub region: String,
    /// The response object, as the client got it.
    pub response: Value,
    /// This request's input items.
    pub input: Vec<Value>,
    /// The conversation before it (its previous responses' items).
    pub history: Vec<Value>,
}

impl Stored {
    /// The whole conversation: history, input, output.
    pub fn conversation(&self) -> Vec<Value> {
        let output = self.response["output"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        self.history
            .iter()
            .chain(&self.input)
            .chain(output)
            .cloned()
            .collect()
    }

    fn size(&self) -> usize {
        serde_json::to_vec(self).map_or(0, |v| v.len())
    }
}

/// The shared backend did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The store.
#[derive(Debug)]
pub struct Responses {
    memory: Bounded<Stored>,
}

fn key(tenant: &str, id: &str) -> Key {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    h.finalize().into()
}

fn redis_key(k: &Key) -> String {
    format!("meridian:responses:{}", hex::encode(k))
}

impl Responses {
    /// A store holding at most `max_bytes` in memory.
    pub fn new(max_bytes: u64) -> Responses {
        Responses {
            memory: Bounded::new(max_bytes),
        }
    }

    /// The tenant's response `id`, if it is kept.
    pub async fn get(
        &self,
        shared: Option<&Shared>,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Arc<Stored>>, Unavailable> {
        let k = key(tenant, id);
        let Some(s) = shared else {
            return Ok(self.memory.get(&k));
        };
        let raw = s.responses().get(&redis_key(&k)).await.ok_or(Unavailable)?;
        Ok(raw
            .and_then(|r| serde_json::from_slice::<Stored>(&r).ok())
            .map(Arc::new))
    }

    /// Keeps the tenant's response `id` for `ttl`.
    pub async fn put(
        &self,
        shared: Option<&Shared>,
        tenant: &str,
        id: &str,
        stored: Stored,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let k = key(tenant, id);
        match shared {
            Some(s) => {
                let raw = serde_json::to_vec(&stored).map_err(|_| Unavailable)?;
                s.responses()
                    .put(&redis_key(&k), raw, ttl)
                    .await
                    .ok_or(Unavailable)
            }
            None => {
                let size = stored.size();
                self.memory.put(k, stored, size, ttl);
                Ok(())
            }
        }
    }

    /// Removes the tenant's response `id`: whether it was kept.
    pub async fn delete(
        &self,
        shared: Option<&Shared>,
        tenant: &str,
        id: &str,
    ) -> Result<bool, Unavailable> {
        let k = key(tenant, id);
        match shared {
            Some(s) => s
                .responses()
                .delete(&redis_key(&k))
                .await
                .ok_or(Unavailable),
            None => Ok(self.memory.remove(&k)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn kept_per_tenant_until_the_ttl() {
        let store = Responses::new(1 << 20);
        let stored = Stored {
            region: "eu-west-1".into(),
            response: json!({"output": [{"type": "message"}]}),
            input: vec![json!({"role": "user", "content": "hi"})],
            history: vec![json!({"role": "user", "content": "before"})],
        };
        let ttl = Duration::from_secs(60);
        store.put(None, "a", "resp_1", stored, ttl).await.unwrap();
        let got = store.get(None, "a", "resp_1").await.unwrap().unwrap();
        assert_eq!(got.conversation().len(), 3);
        assert!(store.get(None, "b", "resp_1").await.unwrap().is_none());
        tokio::time::advance(ttl).await;
        assert!(store.get(None, "a", "resp_1").await.unwrap().is_none());
    }
}
