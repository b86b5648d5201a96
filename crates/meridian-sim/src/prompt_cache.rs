//! A prompt cache per region, as Bedrock keeps one: the part of a request up
//! to its last cache point (system, then messages, in order) is cached in the
//! region that processed it, per model, for 5 minutes — or an hour with
//! `ttl: "1h"` — from its last use. A request whose prefix is cached there
//! reads it (`cacheReadInputTokens`); otherwise it writes it
//! (`cacheWriteInputTokens`). Either way those tokens are not counted as
//! `inputTokens`.

use std::collections::HashMap;
use std::time::Duration;

use meridian_wire::converse::estimate_tokens;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

/// Default cache lifetime.
const TTL_5M: Duration = Duration::from_secs(300);
/// With `ttl: "1h"`.
const TTL_1H: Duration = Duration::from_secs(3600);
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

/// What a request did with the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// Tokens read from the cache.
    pub read: u64,
    /// Tokens written to it.
    pub write: u64,
    /// Whether the write was for an hour (else 5 minutes).
    pub one_hour: bool,
}

/// A request's cacheable prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// FNV-1a of the prefix's content.
    pub hash: u64,
    /// Its tokens.
    pub tokens: u64,
    /// How long it is kept.
    pub ttl: Duration,
}

/// Every region's cache: (region, model, prefix hash) → expiry.
#[derive(Debug, Default)]
pub struct PromptCache {
    entries: Mutex<HashMap<(String, String, u64), Instant>>,
}

impl PromptCache {
    /// Reads or writes the prefix of `conv` (Converse-shaped) in `region`'s
    /// cache for `model`.
    pub fn apply(&self, region: &str, model: &str, conv: &Value, now: Instant) -> CacheUse {
        let Some(p) = prefix(conv) else {
            return CacheUse::default();
        };
        if p.tokens == 0 {
            return CacheUse::default();
        }
        let mut map = self.entries.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, until| *until > now);
        }
        let key = (region.to_string(), model.to_string(), p.hash);
        let hit = map.get(&key).is_some_and(|until| *until > now);
        map.insert(key, now + p.ttl);
        if hit {
            CacheUse {
                read: p.tokens,
                ..CacheUse::default()
            }
        } else {
            CacheUse {
                write: p.tokens,
                one_hour: p.ttl == TTL_1H,
                read: 0,
            }
        }
    }
}

fn mix(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The content up to the last `cachePoint` in system and messages.
pub fn prefix(conv: &Value) -> Option<Prefix> {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut tokens = 0;
    let mut last = None;
    let blocks = conv["system"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| (None, b))
        .chain(
            conv["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| {
                    let role = m["role"].as_str();
                    m["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |b| (role, b))
                }),
        );
    for (role, b) in blocks {
        if let Some(cp) = b.get("cachePoint") {
            let ttl = if cp["ttl"] == "1h" { TTL_1H } else { TTL_5M };
            // An hour's entry is another entry than five minutes'.
            let hash = mix(hash, &ttl.as_secs().to_le_bytes());
            last = Some(Prefix { hash, tokens, ttl });
            continue;
        }
        hash = mix(hash, role.unwrap_or("system").as_bytes());
        hash = mix(hash, b.to_string().as_bytes());
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            tokens += estimate_tokens(t);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(system: &str, question: &str, ttl: &str) -> Value {
        json!({"system": [{"text": system}, {"cachePoint": {"type": "default", "ttl": ttl}}],
               "messages": [{"role": "user", "content": [{"text": question}]}]})
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_prefix_is_written_then_read_in_the_same_region_only() {
        let c = PromptCache::default();
        let long = "x".repeat(4000);
        let first = c.apply("us-east-1", "m", &body(&long, "a", "5m"), Instant::now());
        assert_eq!(
            first,
            CacheUse {
                read: 0,
                write: 1000,
                one_hour: false
            }
        );
        let again = c.apply("us-east-1", "m", &body(&long, "b", "5m"), Instant::now());
        assert_eq!(
            again.read, 1000,
            "a different question after the same prefix"
        );
        let elsewhere = c.apply("us-west-2", "m", &body(&long, "b", "5m"), Instant::now());
        assert_eq!(elsewhere.write, 1000, "another region has its own cache");
        tokio::time::advance(Duration::from_secs(301)).await;
        let late = c.apply("us-east-1", "m", &body(&long, "c", "5m"), Instant::now());
        assert_eq!(late.write, 1000, "expired after 5 minutes unused");
        let hour = c.apply("us-east-1", "m", &body(&long, "c", "1h"), Instant::now());
        assert!(
            hour.one_hour && hour.write == 1000,
            "a different ttl is another entry"
        );
        assert!(
            prefix(
                &json!({"messages": [{"role": "user", "content": [{"text": "no cache point"}]}]})
            )
            .is_none()
        );
    }
}
