//! `/health` and `/status`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use meridian_catalog::arn::partition_of;
use serde_json::{Value, json};

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// What this Meridian is and where it sends requests.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state
        .config
        .models
        .iter()
        .map(|m| match state.resolve(&m.name, None) {
            Ok(res) => json!({
                "name": m.name, "model": m.model, "residency": m.policy.to_string(),
                "targets": res.targets.iter().map(|t| json!({
                    "endpoint_region": t.endpoint_region, "model_id": t.model_id,
                    "destinations": t.destinations,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"name": m.name, "model": m.model, "residency": m.policy.to_string(), "error": e.to_string()}),
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "region": state.region,
        "region_source": state.region_step.label(),
        "partition": partition_of(&state.region),
        "upstream": state.upstream_info,
        "inbound_auth": if state.config.auth.is_enforced() { "enforced" } else { "not enforced (no [auth] in config)" },
        "models": models,
        "breakers": state.router.health.states().into_iter().map(|(k, st)| json!({"target": k, "state": format!("{st:?}").to_lowercase()})).collect::<Vec<_>>(),
        "candidates": state.router.views(),
    }))
}
