//! The Bedrock Runtime front door, one stage after another as in DESIGN.md:
//! decode → authenticate → admit → guard input → cache → plan → execute →
//! guard output → account → log → encode. Stages marked "pass-through" below
//! do nothing yet; they are where tenants' rate limits and budgets, guardrails,
//! the response cache, cost accounting and invocation logs will go.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use meridian_catalog::Policy;
use meridian_catalog::resolve::ResolveError;
use meridian_wire::{BedrockError, ErrorKind, Operation, converse};

use crate::execute::{self, Served};
use crate::state::AppState;
use crate::{account, auth, control_plane, plan, respond};

/// Handles every request that is not a Meridian endpoint.
pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = respond::request_id();
    let (parts, body) = req.into_parts();
    // decode
    let op = match Operation::from_request(parts.method.as_str(), parts.uri.path()) {
        Ok(op) => op,
        Err(e) => return respond::error(&request_id, &e, 0),
    };
    let body = match axum::body::to_bytes(body, state.max_body).await {
        Ok(b) => b,
        Err(_) => {
            let e = BedrockError::validation(format!(
                "The request body is larger than the {} bytes this endpoint accepts.",
                state.max_body
            ));
            return respond::error(&request_id, &e, 0);
        }
    };
    // authenticate
    if let Err(e) = auth::authenticate(&state, &parts, &body) {
        return respond::error(&request_id, &e, 0);
    }
    let query = parts.uri.query().unwrap_or("");
    match op.model_id() {
        None => control_plane::handle(&state, &op, query, &request_id),
        Some(_) => match runtime(&state, &op, &parts.headers, body, &request_id).await {
            Ok(resp) => resp,
            Err((e, attempts, route)) => {
                let mut resp = respond::error(&request_id, &e, attempts);
                if let Some(v) = route.and_then(|r| HeaderValue::from_str(&r).ok()) {
                    resp.headers_mut().insert(crate::ROUTE_HEADER, v);
                }
                resp
            }
        },
    }
}

async fn runtime(
    state: &Arc<AppState>,
    op: &Operation,
    headers: &http::HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Result<Response, (BedrockError, usize, Option<String>)> {
    let started = tokio::time::Instant::now();
    let model_id = op.model_id().unwrap_or_default();
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let request_body = state.log.include_bodies.then(|| body.clone());
    let who = account::Request {
        api: "bedrock",
        operation: op.name(),
        requested: model_id,
        request_id,
        started,
        traceparent,
        request_body: request_body.as_ref(),
    };
    // Every early exit is accounted for and logged like a finished request.
    let refuse =
        |e: BedrockError, plan: Option<&execute::Plan>, ex: Option<&execute::Exhausted>| {
            let decision = ex.map(|x| &x.decision);
            account::finish(state, &account::Finished::failed(who, plan, decision, &e));
            let attempts = ex.map_or(0, |x| x.attempts);
            (e, attempts, ex.map(|x| x.decision.summary()))
        };
    // admit: pass-through (per-tenant rate limits and budgets come with tenants)
    // guard input: pass-through (guardrails)
    // cache: pass-through (response cache)
    // plan
    let narrow = residency_header(state, headers).map_err(|e| refuse(e, None, None))?;
    // validate what Meridian can check before spending an upstream call
    let json = match op {
        Operation::Converse { .. }
        | Operation::ConverseStream { .. }
        | Operation::CountTokens { .. } => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                refuse(
                    BedrockError::validation(format!("The request body is not valid JSON: {e}")),
                    None,
                    None,
                )
            })?;
            if !matches!(op, Operation::CountTokens { .. }) {
                converse::validate_request(&v).map_err(|e| refuse(e, None, None))?;
            }
            Some(v)
        }
        _ => serde_json::from_slice::<serde_json::Value>(&body).ok(),
    };
    let plan = plan::build(
        state,
        plan::Ask {
            requested: model_id,
            narrow: narrow.as_ref(),
            headers,
            body,
            json: json.as_ref(),
            action: op.action().unwrap_or("converse"),
            streaming: op.is_streaming(),
            forward: passthrough_request_headers(headers),
            started,
        },
    )
    .map_err(|e| refuse(e, None, None))?;
    // execute; then guard output (pass-through), account and log, encode
    if plan.streaming {
        let on_end = stream_end(
            state,
            "bedrock",
            op.name(),
            model_id,
            request_id,
            &plan,
            traceparent,
        );
        let (served, frames) = match execute::streaming(state, &plan, on_end).await {
            Ok(x) => x,
            Err(ex) => {
                let e = ex.failure.error.clone();
                return Err(refuse(e, Some(&plan), Some(&ex)));
            }
        };
        Ok(encode(
            request_id,
            &served,
            execute::eventstream_body(frames),
        ))
    } else {
        let (served, body) = match execute::unary(state, &plan).await {
            Ok(x) => x,
            Err(ex) => {
                let e = ex.failure.error.clone();
                return Err(refuse(e, Some(&plan), Some(&ex)));
            }
        };
        let usage = account::unary_usage(&served.headers, &body);
        let mut done = account::Finished::served(who, &plan, &served, usage, None);
        done.response_body = Some(&body);
        account::finish(state, &done);
        Ok(encode(request_id, &served, axum::body::Body::from(body)))
    }
}

/// A hook that accounts for and logs a stream when it ends.
pub(crate) fn stream_end(
    state: &Arc<AppState>,
    api: &'static str,
    operation: &'static str,
    requested: &str,
    request_id: &str,
    plan: &execute::Plan,
    traceparent: Option<&str>,
) -> execute::OnEnd {
    let state = state.clone();
    let traceparent = traceparent.map(str::to_string);
    let (requested, request_id) = (requested.to_string(), request_id.to_string());
    let plan = plan.clone();
    Box::new(move |end: execute::StreamEnd, served: &execute::Served| {
        let who = account::Request {
            api,
            operation,
            requested: &requested,
            request_id: &request_id,
            started: plan.started,
            traceparent: traceparent.as_deref(),
            request_body: None,
        };
        let mut done =
            account::Finished::served(who, &plan, served, end.usage, end.error.as_deref());
        done.ttft = Some(end.ttft);
        account::finish(&state, &done);
    })
}

pub(crate) fn encode(request_id: &str, served: &Served, body: axum::body::Body) -> Response {
    let region = served
        .headers
        .get("x-meridian-sim-inference-region")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&served.candidate.target.endpoint_region)
        .to_string();
    let mut resp = Response::builder()
        .status(served.status)
        .header("x-amzn-requestid", request_id)
        .header(crate::REGION_HEADER, region)
        .header(crate::ATTEMPTS_HEADER, served.attempts.to_string())
        .header(crate::ROUTE_HEADER, served.decision.summary())
        .header(crate::ACCOUNT_HEADER, served.candidate.account.as_str())
        .body(body)
        .unwrap_or_default();
    if let Some(id) = served.headers.get("x-amzn-requestid") {
        resp.headers_mut()
            .insert("x-meridian-upstream-request-id", id.clone());
    }
    execute::passthrough_response_headers(served, &mut resp);
    resp
}

fn residency_header(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Result<Option<Policy>, BedrockError> {
    let Some(v) = headers.get(crate::RESIDENCY_HEADER) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| BedrockError::validation("x-meridian-residency must be ASCII"))?;
    let terms: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Ok(None);
    }
    Policy::from_terms(crate::RESIDENCY_HEADER, &state.catalog, &terms, &[])
        .map(Some)
        .map_err(|e| BedrockError::validation(format!("x-meridian-residency: {e}")))
}

pub(crate) fn plan_error(e: ResolveError) -> BedrockError {
    match e {
        ResolveError::UnknownModel { .. } | ResolveError::UnknownAppProfile { .. } => {
            BedrockError::new(ErrorKind::ResourceNotFound, e.to_string())
        }
        ResolveError::UnknownRegion { .. } => {
            BedrockError::new(ErrorKind::InternalServer, e.to_string())
        }
        ResolveError::NotOffered { .. } | ResolveError::NoTarget { .. } => {
            BedrockError::validation(e.to_string())
        }
    }
}

/// Request headers forwarded upstream: content negotiation and every
/// `x-amzn-bedrock-*` member header (trace, guardrail, latency, tier, metadata).
fn passthrough_request_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let n = k.as_str();
            n == "content-type" || n == "accept" || n.starts_with("x-amzn-bedrock-")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
