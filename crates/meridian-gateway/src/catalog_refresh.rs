//! Catalog refresh: in the background, Meridian reads Bedrock's
//! `ListInferenceProfiles` (system-defined) in every region it may call,
//! with the same accounts, credentials and signing as its runtime calls,
//! compares what it finds with the compiled catalog and serves from the
//! result. Residency only tightens by itself: a destination set that grew
//! outside a policy takes that target out of the policy's candidates as soon
//! as the refresh is applied. The request path only ever reads the snapshot
//! (the catalog inside the current `AppState`).
//!
//! Until a refresh succeeds — at start-up, or with the control plane
//! unreachable — Meridian serves from the compiled catalog, and `/status`
//! says so.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_catalog::discovered::{Discovered, Finding, diff};
use serde_json::Value;

use crate::live::Live;
pub use crate::live::RefreshStatus;
use crate::metrics::Family;
use crate::metrics::labels;
use crate::state::AppState;

/// Longest one control-plane read may take; a region that does not answer
/// in time keeps what an earlier refresh read there.
const REGION_TIMEOUT: Duration = Duration::from_secs(3);
/// Pages read per region at most.
const MAX_PAGES: usize = 20;

impl RefreshStatus {
    /// Seconds since the served facts were read, if any were.
    pub fn age_secs(&self) -> Option<f64> {
        let at = self.refreshed_at?;
        Some(at.elapsed().map_or(0.0, |d| d.as_secs_f64()))
    }

    /// How many findings contradict the compiled catalog.
    pub fn contradictions(&self) -> usize {
        self.contradicting().count()
    }

    fn contradicting(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.verdict.is_contradiction())
    }

    /// The `/status` section: where the served facts come from, how old
    /// they are, what the last refresh found (confirmations counted, the
    /// rest listed).
    pub fn to_status(&self, state: &AppState) -> Value {
        let source = match state.catalog.discovered() {
            Some(_) => "compiled, with Bedrock's ListInferenceProfiles applied",
            None => "compiled (no refresh has read Bedrock's control plane yet)",
        };
        let confirmed = self.findings.len() - self.contradictions() - self.added().count();
        serde_json::json!({
            "source": source,
            "refresh_interval_s": state.config.catalog_refresh_s,
            "refreshes": self.refreshes,
            "refreshed_at": self.refreshed_at.map(crate::invocation::rfc3339),
            "age_s": self.age_secs().map(|a| a.round()),
            "regions_read": state.catalog.discovered().map(|d| d.regions.clone()),
            "errors": self.errors,
            "confirmed": confirmed,
            "added": self.added().collect::<Vec<_>>(),
            "contradictions": self.contradicting().collect::<Vec<_>>(),
        })
    }

    fn added(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.verdict == meridian_catalog::discovered::Verdict::Added)
    }
}

/// The regions a refresh reads: Meridian's own, and every region of its
/// partition where the catalog (compiled or discovered) says an exposed
/// model's profiles or base model can be called — whatever the policies,
/// so a target a policy dropped is still watched.
pub fn regions(state: &AppState) -> BTreeSet<String> {
    let catalog = &state.catalog;
    let partition = catalog.region(&state.region).map(|r| r.partition.clone());
    let mut out = BTreeSet::from([state.region.clone()]);
    for m in &state.config.models {
        let Some(model) = state.catalog_model(&m.name) else {
            continue;
        };
        for route in model.routes.iter().filter_map(|id| catalog.route(id)) {
            out.extend(route.map.keys().cloned());
        }
        out.extend(model.on_demand.iter().cloned());
    }
    if let Some(found) = catalog.discovered() {
        out.extend(found.regions.iter().cloned());
    }
    out.retain(|r| catalog.region(r).map(|x| x.partition.clone()) == partition);
    out
}

/// Reads every region's system profiles and on-demand models, and every
/// declared application profile. What fails is left out of the result (it
/// says nothing) and named in the errors.
pub async fn discover(state: &AppState) -> (Discovered, Vec<String>) {
    // Each read under its own timeout, all side by side: a slow answer (or a
    // name that takes long to resolve) costs at most one timeout.
    let reads = regions(state).into_iter().map(|region| async move {
        let (profiles, models, mantle) = tokio::join!(
            bounded(list(state, &region)),
            bounded(read_list(
                state,
                &region,
                "/foundation-models",
                "ListFoundationModels"
            )),
            bounded(mantle_models(state, &region)),
        );
        let models = models.map(|v| v["modelSummaries"].as_array().cloned().unwrap_or_default());
        (region, profiles, models, mantle)
    });
    let apps = state.config.app_profiles.iter().map(|p| async move {
        let path = format!(
            "/inference-profiles/{}",
            meridian_wire::operation::encode_label(&p.arn)
        );
        (
            p,
            bounded(read_json(state, &p.region, &path, "GetInferenceProfile")).await,
        )
    });
    let (reads, apps) = tokio::join!(
        futures_util::future::join_all(reads),
        futures_util::future::join_all(apps)
    );
    let mut found = Discovered::default();
    let mut errors = Vec::new();
    for (region, profiles, models, mantle) in reads {
        match mantle {
            Ok(Some(list)) => found.add_mantle(&region, &list),
            Ok(None) => {}
            Err(e) => errors.push(format!("{region}: {e}")),
        }
        match profiles {
            Ok(summaries) => found.add_region(&region, &summaries),
            Err(e) => errors.push(format!("{region}: {e}")),
        }
        match models {
            Ok(summaries) => found.add_models(&region, &summaries),
            Err(e) => errors.push(format!("{region}: {e}")),
        }
    }
    for (p, r) in apps {
        match r {
            Ok(v) => found.add_app_profile(&p.arn, v.as_ref()),
            Err(e) => errors.push(format!("{}: {e}", p.arn)),
        }
    }
    (found, errors)
}

/// `read` within [`REGION_TIMEOUT`].
async fn bounded<T>(read: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(REGION_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REGION_TIMEOUT:?}")))
}

/// One signed control-plane GET in `region`, as JSON; `None` when Bedrock
/// answers that the resource does not exist. `what` names the operation in
/// errors.
async fn read_json(
    state: &AppState,
    region: &str,
    path: &str,
    what: &str,
) -> Result<Option<Value>, String> {
    let account = state
        .accounts
        .iter()
        .find(|a| a.regions.is_empty() || a.regions.contains(region))
        .ok_or_else(|| "no upstream account may call this region".to_string())?;
    let resp = match account.client.control_get(region, path).await {
        Ok(r) => r,
        Err(f) if f.error.kind == meridian_wire::ErrorKind::ResourceNotFound => return Ok(None),
        Err(f) => return Err(format!("{what}: {}", f.error.message)),
    };
    json_body(resp, what).await.map(Some)
}

/// Mantle's model list in `region` (`GET /v1/models`), when an account calls
/// Mantle there; `None` when none does.
async fn mantle_models(state: &AppState, region: &str) -> Result<Option<Value>, String> {
    let Some(account) = state.accounts.iter().find(|a| {
        (a.regions.is_empty() || a.regions.contains(region))
            && a.client.endpoints().mantle_url(region).is_some()
    }) else {
        return Ok(None);
    };
    let what = "Mantle's /v1/models";
    let resp = account
        .client
        .mantle_get(region, "/v1/models")
        .await
        .map_err(|f| format!("{what}: {}", f.error.message))?;
    json_body(resp, what).await.map(Some)
}

/// A response's whole body as JSON; `what` names the operation in errors.
async fn json_body(resp: meridian_upstream::Response, what: &str) -> Result<Value, String> {
    let body = resp
        .collect()
        .await
        .map_err(|f| format!("{what}: {}", f.error.message))?;
    serde_json::from_slice(&body).map_err(|e| format!("{what} answered invalid JSON: {e}"))
}

/// A list operation's answer: "not found" is an error there, not an answer.
async fn read_list(
    state: &AppState,
    region: &str,
    path: &str,
    what: &str,
) -> Result<Value, String> {
    read_json(state, region, path, what)
        .await?
        .ok_or_else(|| format!("{what}: not found"))
}

/// One region's system-defined profile summaries, every page.
async fn list(state: &AppState, region: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut q = "/inference-profiles?type=SYSTEM_DEFINED&maxResults=1000".to_string();
        if let Some(t) = &next {
            q.push_str("&nextToken=");
            q.push_str(&meridian_wire::operation::encode_label(t));
        }
        let v = read_list(state, region, &q, "ListInferenceProfiles").await?;
        out.extend(
            v["inferenceProfileSummaries"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match v["nextToken"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => next = Some(t.to_string()),
            None => return Ok(out),
        }
    }
    Ok(out)
}

/// One refresh: reads, compares, and serves from the result. A refresh that
/// read nothing changes nothing.
pub async fn refresh(live: &Live) {
    let state = live.get();
    let (found, errors) = discover(&state).await;
    let m = &state.metrics;
    for e in &errors {
        tracing::warn!(error = %e, "catalog refresh: a region's profiles could not be read; its compiled data stays");
    }
    if found.regions.is_empty() {
        m.add(
            Family::CatalogRefreshesTotal,
            labels([("outcome", "failed")]),
            1.0,
        );
        live.catalog_status.write().errors = errors;
        return;
    }
    // A region this refresh could not read keeps what an earlier one read there.
    let mut found = found;
    if let Some(before) = state.catalog.discovered() {
        found.keep_unread(before);
    }
    let findings = diff(&state.catalog, &state.config.app_profiles, &found);
    for f in findings.iter().filter(|f| f.verdict.is_contradiction()) {
        tracing::warn!(profile = %f.profile, source = %f.source, verdict = ?f.verdict,
            compiled = ?f.compiled, discovered = ?f.discovered,
            "catalog refresh: Bedrock contradicts the compiled catalog");
    }
    for f in findings
        .iter()
        .filter(|f| f.verdict == meridian_catalog::discovered::Verdict::Added)
    {
        tracing::info!(profile = %f.profile, source = %f.source, "catalog refresh: a profile the compiled catalog does not list");
    }
    m.add(
        Family::CatalogRefreshesTotal,
        labels([(
            "outcome",
            if errors.is_empty() {
                "success"
            } else {
                "partial"
            },
        )]),
        1.0,
    );
    apply(live, found);
    let mut s = live.catalog_status.write();
    s.refreshes += 1;
    s.refreshed_at = Some(SystemTime::now());
    s.errors = errors;
    s.findings = findings;
}

/// Serves from the compiled catalog with `found` applied — unless those are
/// the facts already served (then nothing needs resolving again).
fn apply(live: &Live, found: Discovered) {
    let state = live.get();
    if state.catalog.discovered().is_some_and(|d| **d == found) {
        return;
    }
    let catalog = state.catalog.with_discovered(Arc::new(found));
    let (next, _) = state.reloaded(state.config.clone(), catalog);
    live.swap(Arc::new(next));
}

/// Forever: a refresh now, then one every `every`.
pub async fn run(live: Arc<Live>, every: Duration) {
    loop {
        refresh(&live).await;
        tokio::time::sleep(every).await;
    }
}
