//! The cache stage: an exact repeat, answered from the response cache when
//! the region that produced it is inside this request's policy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use meridian_router::Decision;
use meridian_wire::BedrockError;

use crate::account::Ledger;
use crate::execute::{self, Served};
use crate::plan::Plan;
use crate::respond;
use crate::state::AppState;

/// What the cache stage found.
pub(super) enum Lookup {
    /// An entry this plan may serve: its answer, as served.
    Hit(Box<Served>, Bytes),
    /// None: where to keep the answer, and for how long (`None`: don't).
    Miss(Option<(crate::cache::Key, Duration)>),
}

/// The cache stage, for a model with `cache` configured. It runs once the
/// plan has resolved the residency policy: the key covers it, and an entry
/// is served only when the region that produced it is allowed and its
/// called endpoint is one of this plan's candidates.
pub(super) async fn cache_stage(
    state: &AppState,
    parts: &Parts,
    tenant: &str,
    plan: &Plan,
    ledger: &mut Ledger,
) -> Result<Lookup, BedrockError> {
    use crate::cache::{self, Mode};
    let Some(ttl) = state
        .config
        .model(&plan.requested)
        .and_then(|m| m.cache)
        .map(|c| c.ttl)
    else {
        return Ok(Lookup::Miss(None));
    };
    let mode = Mode::of(&parts.headers).map_err(BedrockError::validation)?;
    if mode == Mode::NoStore || !plan.more.is_empty() {
        ledger.cache = Some("bypass");
        return Ok(Lookup::Miss(None));
    }
    let key = cache::key(
        tenant,
        &plan.requested,
        &plan.policy,
        plan.action.path(),
        &plan.body,
    );
    let shared = state.limiter.shared();
    if mode == Mode::Use
        && let Some(entry) = state.cache.get(shared, &key).await
        && plan
            .residency
            .as_ref()
            .is_some_and(|p| p.allows(&entry.region))
        && let Some(c) = plan.candidates.iter().find(|c| {
            c.account == entry.account
                && c.target.endpoint_region == entry.endpoint_region
                && c.target.model_id == entry.model_id
                && c.surface.name() == entry.surface
        })
    {
        ledger.cache = Some("hit");
        let served = Served {
            status: http::StatusCode::OK,
            headers: cache::header_map(&entry),
            candidate: c.clone(),
            attempts: 0,
            decision: Decision {
                strategy: "cache",
                policy: plan.policy.clone(),
                candidates: Vec::new(),
                attempts: Vec::new(),
                served_by: None,
                hedged: false,
                gave_up: None,
            },
        };
        return Ok(Lookup::Hit(
            Box::new(served),
            Bytes::copy_from_slice(&entry.body),
        ));
    }
    ledger.cache = Some(if mode == Mode::Refresh {
        "refresh"
    } else {
        "miss"
    });
    Ok(Lookup::Miss(Some((key, ttl))))
}

/// A cache entry for an answer.
pub(super) fn entry_of(served: &Served, body: &[u8]) -> crate::cache::Entry {
    crate::cache::Entry {
        region: respond::served_region(served).to_string(),
        endpoint_region: served.candidate.target.endpoint_region.clone(),
        account: served.candidate.account.clone(),
        model_id: served.candidate.target.model_id.clone(),
        surface: served.candidate.surface.name().to_string(),
        headers: crate::cache::kept_headers(&served.headers),
        body: body.to_vec(),
    }
}

/// Keeps a stream in the cache once it ended whole (in memory at once;
/// Redis in a task, as the stream's last event is already on its way).
pub(super) fn keeper(state: Arc<AppState>, key: crate::cache::Key, ttl: Duration) -> execute::Keep {
    Box::new(move |body: Bytes, served: &Served| {
        // An OpenAI endpoint's events are kept as frames that would replay
        // as another model family's chunks: not kept.
        if served.candidate.surface.is_openai() {
            return;
        }
        let entry = entry_of(served, &body);
        if state.limiter.shared().is_none() {
            state.cache.put_local(key, entry, ttl);
            return;
        }
        tokio::spawn(async move {
            state
                .cache
                .put(state.limiter.shared(), key, entry, ttl)
                .await;
        });
    })
}
