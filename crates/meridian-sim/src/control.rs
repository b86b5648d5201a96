//! The fleet's control API: faults, records, manifest.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::FaultSet;
use crate::manifest::Manifest;
use crate::region::Shared;
use crate::world::{NewModel, ProfileChange};

#[derive(Clone)]
struct Control {
    shared: Arc<Shared>,
    manifest: Arc<Manifest>,
}

#[derive(Debug, Deserialize)]
struct Since {
    since: Option<u64>,
}

/// Routes: `GET /manifest`, `GET /regions`, `PUT|DELETE /regions/{r}/faults`,
/// `GET|DELETE /records?since=N`, `GET|DELETE /world`, `PUT /world/profiles`, `PUT /world/models`,
/// `GET|PUT /guardrails`, `GET /batch-jobs`.
pub fn router(shared: Arc<Shared>, manifest: Manifest) -> Router {
    let token = shared.config.read().control_token.clone();
    let state = Control {
        shared,
        manifest: Arc::new(manifest),
    };
    let router = Router::new()
        .route(
            "/manifest",
            get(|State(c): State<Control>| async move { Json(json!(*c.manifest)) }),
        )
        .route("/regions", get(regions))
        .route(
            "/regions/{region}/faults",
            put(put_faults).delete(clear_faults).get(get_faults),
        )
        .route("/records", get(records).delete(clear_records))
        .route("/world", get(get_world).delete(reset_world))
        .route("/world/profiles", put(put_profile))
        .route("/world/models", put(put_model))
        .route("/guardrails", put(put_guardrails).get(get_guardrails))
        .route(
            "/batch-jobs",
            get(|State(c): State<Control>| async move {
                Json(json!(
                    crate::batch::jobs(&c.shared)
                        .iter()
                        .map(|j| {
                            let mut v = json!(j);
                            v["region"] = json!(j.region);
                            v
                        })
                        .collect::<Vec<_>>()
                ))
            }),
        )
        .with_state(state);
    match token {
        None => router,
        Some(token) => router.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let want = format!("Bearer {token}");
            async move {
                let ok = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .is_some_and(|v| v.as_bytes() == want.as_bytes());
                if ok {
                    next.run(req).await
                } else {
                    use axum::response::IntoResponse;
                    (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"message": "the fleet's control API needs its token (printed in the log at start-up)"})),
                    )
                        .into_response()
                }
            }
        })),
    }
}

async fn get_guardrails(State(c): State<Control>) -> Json<Value> {
    Json(json!(c.shared.config.read().guardrails))
}

/// Replaces every guardrail: a JSON list of guardrails.
async fn put_guardrails(
    State(c): State<Control>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    match serde_json::from_slice::<Vec<crate::guardrails::SimGuardrail>>(&body) {
        Ok(list) => {
            let n = list.len();
            c.shared.config.write().guardrails = list;
            (StatusCode::OK, Json(json!({"guardrails": n})))
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("guardrails: {e}")})),
        ),
    }
}

async fn regions(State(c): State<Control>) -> Json<Value> {
    let out: serde_json::Map<String, Value> = c
        .manifest
        .regions
        .iter()
        .map(|(code, r)| {
            let faults = c
                .shared
                .regions
                .get(code)
                .map(|s| s.faults.read().clone())
                .unwrap_or_default();
            (code.clone(), json!({"url": r.url, "faults": faults}))
        })
        .collect();
    Json(Value::Object(out))
}

async fn put_faults(
    State(c): State<Control>,
    Path(region): Path<String>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let faults: FaultSet = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": format!("fault set: {e}")})),
            );
        }
    };
    if let Err(e) = faults.validate() {
        return (StatusCode::BAD_REQUEST, Json(json!({"message": e})));
    }
    if c.shared.set_faults(&region, faults.clone()) {
        (StatusCode::OK, Json(json!(faults)))
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("unknown region {region}")})),
        )
    }
}

async fn get_faults(
    State(c): State<Control>,
    Path(region): Path<String>,
) -> (StatusCode, Json<Value>) {
    match c.shared.regions.get(&region) {
        Some(s) => (StatusCode::OK, Json(json!(*s.faults.read()))),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("unknown region {region}")})),
        ),
    }
}

async fn clear_faults(State(c): State<Control>, Path(region): Path<String>) -> StatusCode {
    if c.shared.set_faults(&region, FaultSet::default()) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn records(State(c): State<Control>, Query(q): Query<Since>) -> Json<Value> {
    let since = q.since.unwrap_or(0);
    let out: Vec<_> = c
        .shared
        .records
        .lock()
        .iter()
        .filter(|r| r.seq >= since)
        .cloned()
        .collect();
    Json(json!(out))
}

async fn clear_records(State(c): State<Control>) -> StatusCode {
    c.shared.records.lock().clear();
    StatusCode::NO_CONTENT
}

async fn get_world(State(c): State<Control>) -> Json<Value> {
    let world = c.shared.world.read();
    Json(json!({"profiles": world.changes(), "models": world.models()}))
}

async fn reset_world(State(c): State<Control>) -> StatusCode {
    c.shared.world.write().reset();
    StatusCode::NO_CONTENT
}

/// A model the compiled catalog does not have starts being served.
async fn put_model(State(c): State<Control>, body: axum::body::Bytes) -> (StatusCode, Json<Value>) {
    let model: NewModel = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": format!("new model: {e}")})),
            );
        }
    };
    if let Some(r) = model
        .regions
        .iter()
        .chain(model.mantle.iter().flatten())
        .find(|r| c.shared.catalog.region(r).is_none())
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("unknown region {r}")})),
        );
    }
    let on_mantle = model.mantle.as_ref().is_some_and(|m| !m.is_empty());
    if !model.id.contains('.') || (model.regions.is_empty() && !on_mantle) {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"message": "a new model needs a base model ID (provider.name) and regions (or Mantle regions)"}),
            ),
        );
    }
    tracing::info!(model = %model.id, regions = ?model.regions, on_demand = model.on_demand, "simulated world: new model");
    c.shared.world.write().add_model(model.clone());
    (StatusCode::OK, Json(json!(model)))
}

/// A system profile appears, or its destination set changes, in one source
/// region: published at once, routed by after `effective_after_ms`.
async fn put_profile(
    State(c): State<Control>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let change: ProfileChange = match serde_json::from_slice(&body) {
        Ok(ch) => ch,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": format!("profile change: {e}")})),
            );
        }
    };
    let catalog = &c.shared.catalog;
    if let Some(r) = std::iter::once(&change.source)
        .chain(change.destinations.iter())
        .find(|r| catalog.region(r).is_none())
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("unknown region {r}")})),
        );
    }
    if change.destinations.is_empty() || !(change.id.contains('.') || change.id.starts_with("arn:"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"message": "a profile change needs a system profile ID (prefix.model) or an application profile ARN, and destinations"}),
            ),
        );
    }
    tracing::info!(profile = %change.id, source = %change.source, destinations = ?change.destinations, "simulated world changed");
    c.shared.world.write().apply(change.clone());
    (StatusCode::OK, Json(json!(change)))
}
