//! The response cache: exact repeats answered without an upstream call.
//!
//! Opt-in per model (`cache = { ttl = "10m" }`), and per request with
//! `x-meridian-cache: no-store` (neither read nor written) or `refresh` (not
//! read, written). The key covers the tenant, the model asked for, the
//! residency policy the plan resolved, the Bedrock action and the upstream
//! body (after guard input, without volatile fields). An entry keeps what
//! the upstream sent — the answer before guard output, so placeholders are
//! put back per request — and where it was produced; it is served only when
//! that region is one the request's own policy allows and its called
//! endpoint is one of the plan's candidates.
//!
//! Entries live in this process (size-bounded, oldest out first) or, with
//! `[state] backend = "redis"`, in Redis with the TTL as its expiry, shared
//! by every replica. An unreachable Redis is a miss, never an error.

use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bounded::Bounded;
use crate::limits::Shared;

/// Request header: `no-store` or `refresh`.
pub const HEADER: &str = "x-meridian-cache";

/// Most bytes one entry may hold (a longer answer is not cached).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Top-level body fields that do not change the answer.
const VOLATILE: [&str; 3] = ["requestMetadata", "metadata", "user"];

/// What a request asked of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read, and write on a miss.
    Use,
    /// Write only.
    Refresh,
    /// Neither.
    NoStore,
}

impl Mode {
    /// From the request header; an unknown value is an error.
    pub fn of(headers: &HeaderMap) -> Result<Mode, String> {
        match headers
            .get(HEADER)
            .map(|v| v.to_str().unwrap_or("?").trim())
        {
            None => Ok(Mode::Use),
            Some("refresh") => Ok(Mode::Refresh),
            Some("no-store") => Ok(Mode::NoStore),
            Some(other) => Err(format!(
                "x-meridian-cache must be no-store or refresh, not '{other}'"
            )),
        }
    }
}

/// One cached answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Region that processed it.
    pub region: String,
    /// Region whose endpoint was called.
    pub endpoint_region: String,
    /// Account that called it.
    pub account: String,
    /// Model ID called.
    pub model_id: String,
    /// Surface it was called on (an answer is read by its surface's format).
    #[serde(default = "runtime")]
    pub surface: String,
    /// Upstream headers kept (content type, `x-amzn-bedrock-*`).
    pub headers: Vec<(String, String)>,
    /// The whole answer: a JSON body, or every event-stream frame.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

fn runtime() -> String {
    "runtime".into()
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A cache key: SHA-256 of everything the answer depends on.
pub use crate::bounded::Key;

/// The key of a request.
pub fn key(tenant: &str, requested: &str, policy: &str, action: &str, body: &[u8]) -> Key {
    let mut h = Sha256::new();
    for part in [tenant, requested, policy, action] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                for f in VOLATILE {
                    o.remove(f);
                }
            }
            h.update(v.to_string().as_bytes());
        }
        Err(_) => h.update(body),
    }
    h.finalize().into()
}

/// The cache: in memory, or in Redis when the state backend is.
#[derive(Debug)]
pub struct Cache {
    memory: Bounded<Entry>,
}

fn redis_key(k: &Key) -> String {
    format!("meridian:cache:{}", hex::encode(k))
}

impl Cache {
    pub fn new(max_bytes: u64) -> Cache {
        Cache {
            memory: Bounded::new(max_bytes),
        }
    }

    /// The entry under `key`, if one is fresh.
    pub async fn get(&self, shared: Option<&Shared>, key: &Key) -> Option<std::sync::Arc<Entry>> {
        if let Some(s) = shared {
            let raw = s.cache().get(&redis_key(key)).await?;
            return serde_json::from_slice::<Entry>(&raw)
                .ok()
                .map(std::sync::Arc::new);
        }
        self.memory.get(key)
    }

    /// Keeps `entry` under `key` for `ttl`.
    pub async fn put(&self, shared: Option<&Shared>, key: Key, entry: Entry, ttl: Duration) {
        match shared {
            Some(s) => {
                if let Ok(raw) = serde_json::to_vec(&entry) {
                    s.cache().put(&redis_key(&key), raw, ttl).await;
                }
            }
            None => self.put_local(key, entry, ttl),
        }
    }

    /// Keeps `entry` in this process (no I/O: done before the answer goes
    /// out, so the next request sees it).
    pub fn put_local(&self, key: Key, entry: Entry, ttl: Duration) {
        let size = entry.body.len() + 256;
        self.memory.put(key, entry, size, ttl);
    }

    /// Entries and bytes held in memory.
    pub fn usage(&self) -> (usize, usize) {
        self.memory.usage()
    }
}

/// Upstream headers an entry keeps.
pub fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k == "content-type"
                || k.starts_with("x-amzn-bedrock-")
                || k == "x-meridian-sim-inference-region"
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Headers of an entry, back as a map.
pub fn header_map(entry: &Entry) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in &entry.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            region: "eu-west-1".into(),
            endpoint_region: "eu-west-1".into(),
            account: "default".into(),
            model_id: "m".into(),
            surface: runtime(),
            headers: Vec::new(),
            body: vec![b'x'; n],
        }
    }

    #[test]
    fn keys_ignore_volatile_fields_and_see_everything_else() {
        let a = key(
            "t",
            "chat",
            "eu",
            "converse",
            br#"{"messages":[1],"requestMetadata":{"a":"1"}}"#,
        );
        let b = key(
            "t",
            "chat",
            "eu",
            "converse",
            br#"{"messages":[1],"requestMetadata":{"a":"2"}}"#,
        );
        assert_eq!(a, b);
        for other in [
            key("u", "chat", "eu", "converse", br#"{"messages":[1]}"#),
            key("t", "chat", "us", "converse", br#"{"messages":[1]}"#),
            key("t", "chat", "eu", "converse-stream", br#"{"messages":[1]}"#),
            key("t", "chat", "eu", "converse", br#"{"messages":[2]}"#),
        ] {
            assert_ne!(a, other);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn memory_entries_expire_and_the_oldest_go_first_when_full() {
        let c = Cache::new(3 * (1000 + 256));
        for i in 0..4u8 {
            c.put(None, [i; 32], entry(1000), Duration::from_secs(60))
                .await;
        }
        assert!(c.get(None, &[0; 32]).await.is_none(), "oldest evicted");
        assert!(c.get(None, &[3; 32]).await.is_some());
        assert_eq!(c.usage().0, 3);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.get(None, &[3; 32]).await.is_none(), "expired");
    }
}
