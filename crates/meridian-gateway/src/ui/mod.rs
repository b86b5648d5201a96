//! The live dashboard at `/ui`: a page compiled into the binary (no request
//! to any other host) fed by a snapshot a second over server-sent events.
//! Read-only; with `[admin] key_hash` set, its data needs the admin key as a
//! bearer token (the page asks for it). Drills started from the page run as
//! `meridian drill` child processes, each with its own simulated fleet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_router::breaker::State as Breaker;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::message;
use crate::live::Live;
use crate::state::AppState;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// Country outlines: Natural Earth 1:110m (public domain) as TopoJSON, from
/// the npm package world-atlas 2.0.2 (ISC, `assets/countries-110m.LICENSE`).
const COUNTRIES: &str = include_str!("assets/countries-110m.json");

/// Seconds the live figures (share, rates, percentiles) are taken over.
pub const WINDOW_S: u64 = 3;

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            ("content-type", kind),
            ("cache-control", "no-cache"),
            (
                "content-security-policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-src 'self'; frame-ancestors 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/countries-110m.json`: the map's country outlines.
pub async fn countries() -> Response {
    asset("application/json", COUNTRIES)
}

/// `GET /ui/app.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Whether the caller may read the dashboard's data: the admin key, when
/// one is configured.
fn allowed(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .config
        .admin_key
        .as_ref()
        .is_none_or(|want| crate::keys::bearer_is(headers, want))
}

/// The state for a dashboard call, when the caller may make it.
fn authorized(live: &Live, headers: &HeaderMap) -> Option<Arc<AppState>> {
    let state = live.get();
    allowed(&state, headers).then_some(state)
}

/// The answer to a caller without the admin key.
fn refused() -> Response {
    message(
        StatusCode::UNAUTHORIZED,
        "the dashboard needs the admin key",
    )
}

/// `GET /ui/api/auth`: whether the dashboard needs the admin key and
/// whether the caller sent it (always 200, so the page can ask for the key
/// without a failed request).
pub async fn auth(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let state = live.get();
    Json(json!({
        "key_required": state.config.admin_key.is_some(),
        "authorized": allowed(&state, &headers),
    }))
    .into_response()
}

/// Counts a connected browser while it is alive.
struct Viewer(Arc<crate::traffic::Stats>);

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Deserialize)]
pub struct Since {
    since: Option<u64>,
}

/// `GET /ui/api/stream`: a snapshot a second, as server-sent events.
pub async fn stream(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Response {
    let Some(state) = authorized(&live, &headers) else {
        return refused();
    };
    let stats = state.stats.clone();
    stats.viewers.fetch_add(1, Ordering::Relaxed);
    let viewer = Viewer(stats);
    let mut since = q.since.unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let _viewer = viewer;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let snap = snapshot(&live.get(), since).await;
            if let Some(s) = snap["tail_seq"].as_u64() {
                since = s;
            }
            let event = format!("event: snapshot\ndata: {snap}\n\n");
            if tx.send(Ok(bytes::Bytes::from(event))).await.is_err() {
                return;
            }
        }
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// `GET /ui/api/snapshot`: one snapshot (what the stream sends).
pub async fn snapshot_once(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Response {
    let Some(state) = authorized(&live, &headers) else {
        return refused();
    };
    Json(snapshot(&state, q.since.unwrap_or(0)).await).into_response()
}

/// `GET /ui/api/requests/{id}`: a request's record, while it is in the tail.
pub async fn request(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(state) = authorized(&live, &headers) else {
        return refused();
    };
    match state.stats.record(&id) {
        Some(r) => Json(r).into_response(),
        None => message(
            StatusCode::NOT_FOUND,
            &format!("request {id} is no longer in the live tail"),
        ),
    }
}

/// Everything the page shows, now; tail entries after `since`.
async fn snapshot(state: &AppState, since: u64) -> Value {
    let now = crate::traffic::unix_now();
    let views = state.router.views();
    // Per region, per model: traffic, latency, errors, breakers and quotas.
    let rows = state.stats.regions(now, WINDOW_S);
    let mut model_served: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        *model_served.entry(r.model.as_str()).or_default() += r.window.served;
    }
    let mut regions: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in &rows {
        let w = &r.window;
        let of_model = model_served.get(r.model.as_str()).copied().unwrap_or(0);
        // Breaker and quota of this region's candidates for the model.
        let ids = model_ids(state, &r.model);
        let mine: Vec<_> = views
            .iter()
            .filter(|v| *v.key.region == *r.region && ids.iter().any(|x| **x == *v.key.model))
            .collect();
        let breaker = [Breaker::Open, Breaker::HalfOpen]
            .into_iter()
            .find(|s| mine.iter().any(|v| v.breaker == *s))
            .unwrap_or(Breaker::Closed);
        let quota: Option<u64> = mine.iter().filter_map(|v| v.quota_tokens_per_min).max();
        let used: u64 = mine.iter().map(|v| v.tokens_last_min).sum();
        let rate = |n: u64| n as f64 / WINDOW_S as f64;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        regions.entry(r.region.clone()).or_default().push(json!({
            "model": r.model,
            "share": ratio(w.served, of_model),
            "rps": rate(w.served),
            "total": r.total,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "ttft_p50_ms": r.ttft_p50_ms,
            "surfaces": r.surfaces,
            "error_rate": ratio(w.errors, w.attempts),
            "throttle_rate": ratio(w.throttles, w.attempts),
            "attempts": w.attempts,
            "breaker": breaker,
            "quota_tokens_per_min": quota,
            "tokens_last_min": used,
            "served_per_s": r.served_per_s,
        }));
    }
    // Regions with candidates but no traffic yet still show their breakers.
    for v in &views {
        if !regions.contains_key(&*v.key.region) {
            regions.insert(v.key.region.to_string(), Vec::new());
        }
    }
    let place = |r: &str| {
        state
            .catalog
            .region(r)
            .map_or((String::new(), String::new(), 0.0, 0.0), |x| {
                (x.geography.clone(), x.name.clone(), x.lat, x.lon)
            })
    };
    let regions: Vec<Value> = regions
        .into_iter()
        .map(|(region, models)| {
            let open = views
                .iter()
                .any(|v| v.breaker == Breaker::Open && *v.key.region == *region);
            let (geography, name, lat, lon) = place(&region);
            json!({"region": region, "name": name, "geography": geography, "lat": lat, "lon": lon,
                   "any_breaker_open": open, "models": models})
        })
        .collect();
    let processed = state.stats.processed(now);
    let residency = residency(state, &processed);
    let tail: Vec<Value> = state
        .stats
        .tail_since(since)
        .iter()
        .map(|e| json!(**e))
        .collect();
    let tail_seq = tail.last().and_then(|e| e["seq"].as_u64()).unwrap_or(since);
    let tenants = if state.tenants.enforced() {
        crate::admin::usage_json(state).await
    } else {
        None
    };
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *requests.entry(r.model.clone()).or_default() += r.total;
    }
    json!({
        "now": now,
        "window_s": WINDOW_S,
        "gateway_region": state.region,
        "upstream": state.upstream_info,
        "simulated": state.upstream_info.mode == "simulated",
        "regions": regions,
        "reroutes": state.stats.reroutes(),
        "residency": residency,
        "served_by_model": requests,
        "breakers": crate::status::breakers(state),
        "tail": tail,
        "tail_seq": tail_seq,
        "tenants": tenants,
        "drills": state.drills.list(),
        "drills_allowed": drills_allowed(state),
        "scenarios": crate::drills::SCENARIOS,
    })
}

/// The upstream model IDs an exposed model (or catalog name) resolves to.
fn model_ids(state: &AppState, model: &str) -> Vec<String> {
    state
        .resolve(model, None)
        .map(|r| r.targets.iter().map(|t| t.model_id.clone()).collect())
        .unwrap_or_default()
}

/// Per policy and tenant: the regions requests were processed in (last
/// hour) against the regions the policy allows; a region outside them is a
/// violation, listed first.
fn residency(state: &AppState, processed: &[crate::traffic::Processed]) -> Value {
    let mut violations = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for p in processed {
        // The same computation as meridian_residency_violations_total: the
        // request's own policy, narrowed ones included.
        let allowed = p
            .allowed
            .or_else(|| policy_allows(state, &p.policy, &p.region));
        if allowed == Some(false) {
            violations.push(json!({"policy": p.policy, "tenant": p.tenant, "region": p.region, "count": p.count}));
        }
        groups
            .entry((p.policy.clone(), p.tenant.clone()))
            .or_default()
            .push(
                json!({"region": p.region, "count": p.count, "last": p.last, "allowed": allowed}),
            );
    }
    let policies: Vec<Value> = groups
        .into_iter()
        .map(|((policy, tenant), regions)| {
            json!({"policy": policy, "tenant": tenant, "allowed": allowed_regions(state, &policy), "processed": regions})
        })
        .collect();
    json!({"violations": violations, "policies": policies})
}

/// The policy named `name` (a config policy, or a model's own).
fn policy_of<'s>(state: &'s AppState, name: &str) -> Option<&'s meridian_catalog::Policy> {
    if let Some(p) = state.config.policies.get(name) {
        return Some(p);
    }
    if state.config.default_policy.name == name {
        return Some(&state.config.default_policy);
    }
    state
        .config
        .models
        .iter()
        .map(|m| &m.policy)
        .find(|p| p.name == name)
}

fn policy_allows(state: &AppState, name: &str, region: &str) -> Option<bool> {
    policy_of(state, name).map(|p| p.allows(region))
}

fn allowed_regions(state: &AppState, name: &str) -> Vec<String> {
    policy_of(state, name).map_or_else(Vec::new, |p| {
        state
            .catalog
            .regions()
            .iter()
            .filter(|r| r.bedrock && p.allows(&r.code))
            .map(|r| r.code.clone())
            .collect()
    })
}

/// `POST /ui/api/drills` `{"scenario": "region-outage", "duration_s": 8}`.
pub async fn start_drill(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(state) = authorized(&live, &headers) else {
        return refused();
    };
    if !drills_allowed(&state) {
        return message(
            StatusCode::FORBIDDEN,
            "drills start from the page when the fleet is simulated, or with [admin] key_hash set",
        );
    }
    let req: crate::drills::Start = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"scenario\": NAME, \"duration_s\": N}}: {e}"),
            );
        }
    };
    match state.drills.start(&req).await {
        Ok(d) => (StatusCode::ACCEPTED, Json(d)).into_response(),
        Err(m) => message(StatusCode::CONFLICT, &m),
    }
}

/// Whether the page may start drills: the fleet this gateway calls is
/// simulated, or an admin key guards the dashboard.
pub fn drills_allowed(state: &AppState) -> bool {
    state.upstream_info.mode == "simulated" || state.config.admin_key.is_some()
}

/// `GET /ui/api/drills/{id}/report`: the drill's HTML report.
pub async fn drill_report(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let Some(state) = authorized(&live, &headers) else {
        return refused();
    };
    match state.drills.report(id).await {
        Some(html) => (
            [
                ("content-type", "text/html; charset=utf-8"),
                (
                    "content-security-policy",
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            html,
        )
            .into_response(),
        None => message(
            StatusCode::NOT_FOUND,
            &format!("drill {id} has no report (yet)"),
        ),
    }
}
