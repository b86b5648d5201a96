//! Breaker openings shared by replicas through the Redis state backend.

use std::sync::Arc;
use std::time::Duration;

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
        let opened = state.router.health.opened();
        let Some(open) = shared.exchange_breakers(&opened).await else {
            continue;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (key, until) in open {
            state
                .router
                .health
                .hint_open(&key, Duration::from_millis(until.saturating_sub(now)));
        }
    }
}
