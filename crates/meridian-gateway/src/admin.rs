//! `/admin`: issue, list and revoke tenants' API keys and read their usage.
//! Off unless `[admin] key_hash` is set; every call needs that key as a
//! bearer token. Keys issued here live in the state backend (Redis: every
//! replica sees them); a key is shown once, when it is issued.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::keys;
use crate::limits::runtime_keys::KeyError;
use crate::live::Live;
use crate::state::AppState;

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

pub(crate) fn message(status: StatusCode, text: &str) -> Response {
    answer(status, json!({ "message": text }))
}

/// `None` when the caller holds the admin key; else the refusal.
fn check(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &state.config.admin_key else {
        return Some(message(
            StatusCode::NOT_FOUND,
            "the admin API is off: set [admin] key_hash (meridian keys create --tenant admin)",
        ));
    };
    if keys::bearer_is(headers, want) {
        None
    } else {
        Some(message(
            StatusCode::UNAUTHORIZED,
            "the admin key is missing or wrong",
        ))
    }
}

fn unavailable(e: &KeyError) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// What `POST /admin/keys` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    tenant: String,
}

/// `POST /admin/keys {"tenant": NAME}`: a new key for a configured tenant.
/// The body is JSON whatever its content type says (`curl -d` sends a form
/// type), and every refusal is a JSON message.
pub async fn issue(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let state = live.get();
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<NewKey>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"tenant\": NAME}",
        );
    };
    if state.tenants.named(&req.tenant).is_none() || !state.tenants.enforced() {
        return message(
            StatusCode::BAD_REQUEST,
            &format!("no tenant '{}' in the config", req.tenant),
        );
    }
    match state.limiter.issue_key(&req.tenant).await {
        Ok((key, rec)) => answer(
            StatusCode::CREATED,
            json!({"id": rec.id, "key": key, "prefix": rec.prefix, "tenant": rec.tenant, "created": rec.created}),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `GET /admin/keys`: every key by id and prefix, configured and issued.
pub async fn list(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let state = live.get();
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    let mut out: Vec<Value> = Vec::new();
    for t in state.tenants.all() {
        for h in &t.api_keys {
            out.push(json!({"id": keys::id(h), "tenant": t.name, "source": "config"}));
        }
    }
    match state.limiter.list_keys().await {
        Ok(issued) => {
            for r in issued {
                out.push(json!({"id": r.id, "prefix": r.prefix, "tenant": r.tenant, "created": r.created, "source": "admin"}));
            }
            answer(StatusCode::OK, json!({ "keys": out }))
        }
        Err(e) => unavailable(&e),
    }
}

/// `DELETE /admin/keys/{id}`: revokes an issued key.
pub async fn revoke(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let state = live.get();
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match state.limiter.revoke_key(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            &format!("no issued key '{id}' (keys in the config are removed by editing it)"),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `GET /admin/usage`: each tenant's usage today and this month, and its limits.
pub async fn usage(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let state = live.get();
    if let Some(r) = check(&state, &headers) {
        return r;
    }
    match usage_json(&state).await {
        Some(v) => answer(StatusCode::OK, v),
        None => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "the state backend is unreachable; usage cannot be read now",
        ),
    }
}

/// Every tenant's usage today and this month, with its limits; `None` when
/// the state backend cannot be read.
pub(crate) async fn usage_json(state: &AppState) -> Option<Value> {
    let rows = state.limiter.usage(state.tenants.all()).await?;
    let tenants: Vec<Value> = rows
        .into_iter()
        .zip(state.tenants.all())
        .map(|((name, day, month), t)| {
            let l = &t.limits;
            json!({
                "name": name,
                "day": day,
                "month": month,
                "limits": {
                    "requests_per_minute": l.requests_per_minute,
                    "tokens_per_minute": l.tokens_per_minute,
                    "max_concurrent": l.max_concurrent,
                    "budget_usd_per_day": l.budget_usd_per_day,
                    "budget_usd_per_month": l.budget_usd_per_month,
                },
            })
        })
        .collect();
    Some(json!({ "tenants": tenants }))
}
