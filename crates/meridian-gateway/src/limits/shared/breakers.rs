//! Breaker openings shared between replicas in Redis: candidate key text →
//! open until (epoch ms).

use std::time::{Duration, SystemTime};

use redis::AsyncCommands;

use super::Shared;

/// The breakers replicas opened.
#[derive(Debug, Clone, Copy)]
pub struct BreakerStore<'a>(pub(super) &'a Shared);

impl BreakerStore<'_> {
    /// Tells the other replicas which breakers opened here (`opened`: key
    /// and how long it stays open) and returns every breaker some replica
    /// opened that is still open: (key, until, ms since the epoch).
    pub async fn exchange(&self, opened: &[(String, Duration)]) -> Option<Vec<(String, u64)>> {
        let now = epoch_ms();
        let fresh: Vec<(String, u64)> = opened
            .iter()
            .map(|(k, d)| (k.clone(), now + d.as_millis() as u64))
            .collect();
        let all: std::collections::HashMap<String, u64> = self
            .0
            .call(|mut c| async move {
                if !fresh.is_empty() {
                    c.hset_multiple::<_, _, _, ()>(BREAKERS, &fresh).await?;
                }
                c.hgetall(BREAKERS).await
            })
            .await?;
        let stale: Vec<String> = all
            .iter()
            .filter(|(_, until)| **until + 60_000 < now)
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            let _ = self
                .0
                .call(|mut c| async move { c.hdel::<_, _, ()>(BREAKERS, stale).await })
                .await;
        }
        Some(all.into_iter().filter(|(_, until)| *until > now).collect())
    }
}

/// The hash of open breakers: candidate key → open until (epoch ms).
const BREAKERS: &str = "meridian:breakers";

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
