//! The one request pipeline. A front door is only an adapter — it says what
//! it can from the head, decodes its wire format into a [`Call`], and encodes
//! answers, streams and errors back — and [`handle`] runs every stage, in
//! this order, for every front door:
//!
//! admit (server-wide cap) → identify (head only: the tenant) → read body
//! (bounded size and time) → authenticate (the signature covers this body)
//! → decode → admit (the tenant's models, limits and budgets) → guard input
//! (pass-through) → cache (pass-through) → plan (residency: model ∩ tenant ∩
//! header) → execute → guard output (pass-through) → account, log and
//! settle → encode.
//!
//! A request refused at any stage is accounted for and logged like one that
//! was served. A front door cannot skip a stage, because it has no code path
//! of its own; a stage added here reaches every front door.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;
use meridian_router::Decision;
use meridian_wire::{BedrockError, ErrorKind};
use tokio::time::Instant;

use crate::account::{self, Finished, Ledger};
use crate::canonical::{Call, Head};
use crate::execute::{self, Frames, Served};
use crate::limits::{self, Claim};
use crate::plan::{self, Plan};
use crate::state::AppState;
use crate::usage::unary_usage;
use crate::{auth, respond};

/// What a front door decoded.
#[derive(Debug)]
pub enum Decoded<C> {
    /// A model invocation, to plan and execute; `C` is what the front door
    /// keeps for encoding the answer.
    Invoke(Call, C),
    /// Answered by Meridian itself (control-plane reads).
    Local(Response),
}

/// A wire format: how requests are decoded and answers encoded. Nothing
/// else — the stages are the pipeline's.
pub trait FrontDoor: Send + Sync + 'static {
    /// Name in invocation records and traces (`bedrock`, `openai`).
    const API: &'static str;
    /// What the front door keeps between decoding and encoding.
    type Ctx: Send + 'static;
    /// An error in this front door's shape.
    type Error: Send;

    /// What the head alone says about the request.
    fn head(parts: &Parts) -> Head;
    /// The whole request, decoded.
    fn decode(
        state: &AppState,
        parts: &Parts,
        body: Bytes,
        request_id: &str,
    ) -> Result<Decoded<Self::Ctx>, Self::Error>;
    /// A whole answer.
    fn unary(ctx: Self::Ctx, served: &Served, body: Bytes) -> Result<Response, Self::Error>;
    /// A streamed answer: whole event-stream frames, then possibly an error.
    fn stream(ctx: Self::Ctx, served: &Served, frames: Frames) -> Response;
    /// A pipeline error in this front door's shape.
    fn from_bedrock(e: &BedrockError) -> Self::Error;
    /// Status and error code, for metrics and the invocation record.
    fn code(e: &Self::Error) -> (u16, &'static str);
    /// An error response.
    fn error(request_id: &str, e: &Self::Error) -> Response;
}

/// Why a request ended without an answer, and how far it got.
struct Refusal<'a, E> {
    error: E,
    plan: Option<&'a Plan>,
    decision: Option<&'a Decision>,
    attempts: usize,
    headers: Vec<(&'static str, String)>,
}

impl<E> Refusal<'_, E> {
    fn early(error: E) -> Self {
        Refusal {
            error,
            plan: None,
            decision: None,
            attempts: 0,
            headers: Vec::new(),
        }
    }
}

fn add_headers(resp: &mut Response, headers: &[(&'static str, String)]) {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(*k, v);
        }
    }
}

/// Accounts for and logs a refused request, then answers it.
fn refuse<F: FrontDoor>(state: &AppState, ledger: &Ledger, r: Refusal<'_, F::Error>) -> Response {
    let (status, code) = F::code(&r.error);
    account::finish(
        state,
        &Finished::failed(ledger, r.plan, r.decision, status, code),
    );
    let mut resp = F::error(&ledger.request_id, &r.error);
    respond::common_headers(
        &mut resp,
        &ledger.request_id,
        r.attempts,
        r.decision.map(Decision::summary),
    );
    add_headers(&mut resp, &r.headers);
    resp
}

/// Runs one request through every stage.
pub async fn handle<F: FrontDoor>(state: Arc<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let head = F::head(&parts);
    let mut ledger = Ledger {
        api: F::API,
        operation: head.operation,
        requested: head.requested,
        request_id: respond::request_id(),
        started,
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        invocation: head.invocation,
        request_body: None,
        tenant: None,
    };
    let early = |ledger: &Ledger, e: BedrockError| {
        refuse::<F>(&state, ledger, Refusal::early(F::from_bedrock(&e)))
    };

    // admit: a cap on requests in flight, so overload is refused, not queued
    let Ok(permit) = state.admission.clone().try_acquire_owned() else {
        let e = BedrockError::new(
            ErrorKind::ServiceUnavailable,
            format!(
                "Meridian is handling its limit of {} concurrent requests; retry shortly.",
                state.config.server.max_concurrent_requests
            ),
        );
        return early(&ledger, e);
    };
    // identify: from the head alone, before any of the body is read
    let identified = match auth::identify(&state, &parts.headers).await {
        Ok(i) => i,
        Err(e) => return early(&ledger, e),
    };
    // read the body, bounded in size and time
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => return early(&ledger, e),
    };
    // authenticate: the signature must cover this body
    let tenant = match auth::authenticate(identified, &parts, &body) {
        Ok(t) => t,
        Err(e) => return early(&ledger, e),
    };
    if state.tenants.enforced() {
        ledger.tenant = Some(tenant.name.clone());
    }
    // decode
    let (call, ctx) = match F::decode(&state, &parts, body, &ledger.request_id) {
        Ok(Decoded::Invoke(call, ctx)) => (call, ctx),
        Ok(Decoded::Local(mut resp)) => {
            account::finish(&state, &Finished::local(&ledger));
            respond::common_headers(&mut resp, &ledger.request_id, 0, None);
            return resp;
        }
        Err(e) => return refuse::<F>(&state, &ledger, Refusal::early(e)),
    };
    ledger.operation = call.operation;
    ledger.requested.clone_from(&call.requested);
    ledger.invocation = true;
    if state.log.include_bodies {
        ledger.request_body = Some(call.body.clone());
    }
    // admit: the tenant's model list, then its limits and budgets
    if !tenant.may_call(&call.requested) {
        let e = BedrockError::new(
            ErrorKind::AccessDenied,
            format!(
                "Tenant '{}' may not call '{}'; it may call: {}.",
                tenant.name,
                call.requested,
                tenant
                    .models
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return early(&ledger, e);
    }
    let tokens = plan::reserve_tokens(&call);
    let ask = limits::Ask {
        tenant: tenant.clone(),
        request_id: ledger.request_id.clone(),
        tokens,
        lease_ms: state.config.routing.deadline_ms + LEASE_SLACK_MS,
    };
    let claim = match state.limiter.admit(ask).await {
        Ok(t) => Claim::new(state.limiter.clone(), t),
        Err(refused) => {
            let mut r = Refusal::early(F::from_bedrock(&refused.error(&tenant.name)));
            r.headers = refused.headers();
            return refuse::<F>(&state, &ledger, r);
        }
    };
    let rate = claim.ticket().map(limits::rate_headers).unwrap_or_default();
    // guard input: pass-through until guardrails exist
    // cache: pass-through until the response cache exists
    // plan: catalog, residency (model ∩ tenant ∩ request header), deadline
    let plan = match plan::build(
        &state,
        &call,
        &parts.headers,
        tenant.residency.as_ref(),
        tokens,
        started,
    ) {
        Ok(p) => p,
        Err(e) => return early(&ledger, e),
    };
    // execute; then guard output (pass-through), account, log and settle, encode
    let mut resp = if plan.streaming {
        let on_end =
            account::at_stream_end(state.clone(), ledger.clone(), plan.clone(), claim, permit);
        match execute::streaming(&state, &plan, on_end).await {
            Ok((served, frames)) => {
                let mut resp = F::stream(ctx, &served, frames);
                respond::served_headers(&mut resp, &ledger.request_id, &served);
                resp
            }
            Err(ex) => exhausted::<F>(&state, &ledger, &plan, &ex),
        }
    } else {
        match run_unary(&state, &plan).await {
            Ok((served, body, usage)) => {
                let mut done = Finished::served(&ledger, &plan, &served, usage, None);
                done.response_body = Some(&body);
                account::finish_served(&state, &done, claim);
                let mut resp = match F::unary(ctx, &served, body) {
                    Ok(r) => r,
                    Err(e) => F::error(&ledger.request_id, &e),
                };
                respond::served_headers(&mut resp, &ledger.request_id, &served);
                drop(permit);
                resp
            }
            // The claim is settled with nothing when it drops.
            Err(ex) => exhausted::<F>(&state, &ledger, &plan, &ex),
        }
    };
    add_headers(&mut resp, &rate);
    resp
}

/// A unary request's calls: `plan.body`, then each of `plan.more` under the
/// same plan and deadline. With more than one, the answers are one JSON
/// array and the usage their sum; the first call that fails fails the request.
async fn run_unary(
    state: &AppState,
    plan: &Plan,
) -> Result<(execute::Served, Bytes, crate::usage::Usage), execute::Exhausted> {
    let (served, body) = execute::unary(state, plan).await?;
    let mut usage = unary_usage(&served.headers, &body);
    if plan.more.is_empty() {
        return Ok((served, body, usage));
    }
    let mut joined = Vec::with_capacity(body.len() * (plan.more.len() + 1) + 2);
    joined.push(b'[');
    joined.extend_from_slice(&body);
    let mut part = plan.clone();
    part.more = Vec::new();
    for b in &plan.more {
        part.body = b.clone();
        let (s, body) = execute::unary(state, &part).await?;
        let u = unary_usage(&s.headers, &body);
        usage.input += u.input;
        usage.output += u.output;
        joined.push(b',');
        joined.extend_from_slice(&body);
    }
    joined.push(b']');
    // The first answer's token count stands for them all.
    let mut served = served;
    served.headers.insert(
        "x-amzn-bedrock-input-token-count",
        http::HeaderValue::from(usage.input),
    );
    Ok((served, Bytes::from(joined), usage))
}

/// An in-flight lease outlives the longest deadline by this much before a
/// request that was never settled (a crashed replica) stops counting.
const LEASE_SLACK_MS: u64 = 60_000;

fn exhausted<F: FrontDoor>(
    state: &AppState,
    ledger: &Ledger,
    plan: &Plan,
    ex: &execute::Exhausted,
) -> Response {
    let r = Refusal {
        error: F::from_bedrock(&ex.failure.error),
        plan: Some(plan),
        decision: Some(&ex.decision),
        attempts: ex.attempts,
        headers: Vec::new(),
    };
    refuse::<F>(state, ledger, r)
}

/// Reads the whole body: at most `max_body` bytes, within the configured
/// time (a client that stops sending cannot hold a request open forever).
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, BedrockError> {
    let limit = Duration::from_millis(state.config.server.body_read_timeout_ms);
    match tokio::time::timeout(limit, axum::body::to_bytes(body, state.max_body)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BedrockError::validation(format!(
            "The request body is larger than the {} bytes this endpoint accepts, or was cut off.",
            state.max_body
        ))),
        Err(_) => Err(BedrockError::validation(format!(
            "The request body did not arrive within {} ms.",
            limit.as_millis()
        ))),
    }
}
