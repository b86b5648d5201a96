//! Breaker openings shared by replicas through the Redis state backend.

use std::sync::Arc;
use std::time::Duration;

use meridian_router::KeyId;

use crate::live::Live;

/// How often replicas exchange breaker openings through the shared backend.
const SHARE_BREAKERS_EVERY: Duration = Duration::from_millis(500);

/// Forever (with a shared backend): publishes the breakers this replica
/// opened and opens, for as long as they stay open, the closed ones another
/// replica opened — so every replica skips a region one of them saw fail.
pub async fn share_breakers(live: Arc<Live>) {
    loop {
        tokio::time::sleep(SHARE_BREAKERS_EVERY).await;
        let state = live.get();
        let Some(shared) = state.limiter.shared() else {
            return;
        };
        // Keys travel as their text; a key this replica has no candidate
        // for is of no use here and is skipped.
        let opened: Vec<(String, Duration)> = state
            .router
            .health
            .opened()
            .into_iter()
            .map(|(k, d)| (k.text().to_string(), d))
            .collect();
        let Some(open) = shared.breakers().exchange(&opened).await else {
            continue;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (key, until) in open {
            if let Some(id) = KeyId::find(&key) {
                state
                    .router
                    .health
                    .hint_open(id, Duration::from_millis(until.saturating_sub(now)));
            }
        }
    }
}
