//! The one request pipeline. A front door is only an adapter — it says what
//! it can from the head, decodes its wire format into a [`Call`], and encodes
//! answers, streams and errors back — and [`handle`] runs every stage, in
//! this order, for every front door:
//!
//! admit (server-wide cap) → identify (head only: the tenant) → read body
//! (bounded size and time) → authenticate (the signature covers this body)
//! → decode → admit (the tenant's models, limits and budgets) → guard input
//! (the tenant's and the model's detectors) → plan (residency: model ∩
//! tenant ∩ header; Bedrock guardrails' regions) → cache (it needs the
//! resolved policy) → execute → guard output → account, log and settle →
//! encode.
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
use meridian_wire::Action;
use meridian_wire::{BedrockError, ErrorKind};
use tokio::time::Instant;

use crate::account::{self, Finished, Ledger};
use crate::canonical::{Call, Head};
use crate::execute::{self, Frames, Served};
use crate::limits::{self, Claim};
use crate::plan::{self, Plan};
use crate::state::AppState;
use crate::summary::{self, Summary};
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
        tenant: &meridian_config::Tenant,
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

/// Runs one request through every stage. A stage that panics is answered
/// with the front door's 500 and summarized like any other request.
pub async fn handle<F: FrontDoor>(state: Arc<AppState>, req: Request) -> Response {
    use futures_util::FutureExt as _;
    let request_id = respond::request_id();
    let run = run::<F>(state, req, request_id.clone());
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => {
            // The panic hook has logged it; the summary recorded it.
            let e = BedrockError::new(
                ErrorKind::InternalServer,
                format!("Meridian failed while handling this request ({request_id}); retry it."),
            );
            let mut resp = F::error(&request_id, &F::from_bedrock(&e));
            respond::common_headers(&mut resp, &request_id, 0, None);
            resp
        }
    }
}

async fn run<F: FrontDoor>(state: Arc<AppState>, req: Request, request_id: String) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let head = F::head(&parts);
    let mut ledger = Summary::new(
        state.clone(),
        Ledger {
            api: F::API,
            operation: head.operation,
            requested: head.requested,
            request_id,
            started,
            traceparent: parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            invocation: head.invocation,
            request_body: None,
            tenant: None,
            guard: Vec::new(),
            cache: None,
            finished: Arc::default(),
        },
    );
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
    // admit: the tenant's slot on this replica before its body is buffered,
    // and a declared length over the limit refused before it is read
    let tenant_slot = match state.limiter.slots.take(identified.tenant()) {
        Ok(s) => s,
        Err(refused) => {
            let name = &identified.tenant().name;
            let mut r = Refusal::early(F::from_bedrock(&refused.error(name)));
            r.headers = refused.headers();
            discard(&state, body);
            return refuse::<F>(&state, &ledger, r);
        }
    };
    if let Some(e) = declared_too_long(&state, &parts.headers) {
        discard(&state, body);
        return early(&ledger, e);
    }
    let permit = (permit, tenant_slot);
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
    let (mut call, ctx) = match F::decode(&state, &parts, body, &ledger.request_id, &tenant) {
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
    let reserve = plan::reserve(&call);
    let tokens = reserve.total();
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
    // guard input: the tenant's and the model's guards on what goes upstream
    let model_guard = state
        .config
        .model(&call.requested)
        .and_then(|m| m.guard.as_deref());
    let mut guard = state.guards.session([tenant.guard.as_deref(), model_guard]);
    if let Some(g) = guard.as_mut() {
        let blocked = guard_input(g, &mut call);
        ledger.guard = g.report();
        if let Err(b) = blocked {
            return early(&ledger, b.error());
        }
    }
    if state.log.include_bodies {
        ledger.request_body = Some(call.body.clone());
    }
    // plan: catalog, residency (model ∩ tenant ∩ request header), deadline
    let plan = match plan::build(
        &state,
        &call,
        &parts.headers,
        tenant.residency.as_ref(),
        reserve,
        started,
    ) {
        Ok(p) => p,
        Err(e) => return early(&ledger, e),
    };
    // cache: an exact repeat, produced where this plan's policy allows
    let (hit, store) = match cache_stage(&state, &parts, &tenant.name, &plan, &mut ledger).await {
        Ok(Lookup::Hit(served, body)) => (Some((*served, body)), None),
        Ok(Lookup::Miss(store)) => (None, store),
        Err(e) => return early(&ledger, e),
    };
    let cached = hit.is_some();
    // execute (or replay the hit); then guard output, account, log and
    // settle, encode
    let mut resp = if plan.streaming {
        let on_end = summary::at_stream_end(ledger.hand_off(), plan.clone(), claim, permit);
        let guard = guard.map(crate::guard::stream::StreamGuard::new);
        let answered = match hit {
            Some((served, body)) => {
                let (frames, end) = execute::replay(body, guard);
                on_end(end, &served);
                Ok((served, frames))
            }
            None => {
                let keep = store.map(|(key, ttl)| keeper(state.clone(), key, ttl));
                execute::streaming(&state, &plan, guard, keep, on_end).await
            }
        };
        match answered {
            Ok((served, frames)) => {
                let mut resp = F::stream(ctx, &served, frames);
                respond::served_headers(&mut resp, &ledger.request_id, &served);
                resp
            }
            Err(ex) => exhausted::<F>(&state, &ledger, &plan, &ex),
        }
    } else {
        let answered = match hit {
            // A hit costs nothing upstream: no tokens are charged.
            Some((served, body)) => Ok((served, body, crate::usage::Usage::default())),
            None => run_unary(&state, &plan).await,
        };
        match answered {
            Ok((served, body, usage)) => {
                if let Some((key, ttl)) = store
                    && served.status == http::StatusCode::OK
                    && body.len() <= crate::cache::MAX_ENTRY_BYTES
                {
                    // Kept before the answer goes out, so a repeat sent
                    // once it has arrived (to any replica) finds it.
                    let entry = entry_of(&served, &body);
                    state
                        .cache
                        .put(state.limiter.shared(), key, entry, ttl)
                        .await;
                }
                let got = Got {
                    served: &served,
                    body,
                    usage,
                };
                let resp =
                    unary_answer::<F>(&state, &mut ledger, &plan, got, guard.as_mut(), ctx, claim);
                drop(permit);
                resp
            }
            // The claim is settled with nothing when it drops.
            Err(ex) => exhausted::<F>(&state, &ledger, &plan, &ex),
        }
    };
    if cached {
        resp.headers_mut()
            .insert(crate::cache::HEADER, HeaderValue::from_static("hit"));
    }
    add_headers(&mut resp, &rate);
    resp
}

/// A whole answer, as the upstream (or the cache) gave it.
struct Got<'a> {
    served: &'a Served,
    body: Bytes,
    usage: crate::usage::Usage,
}

/// Guard output, account, log and settle, encode: a whole answer.
fn unary_answer<F: FrontDoor>(
    state: &AppState,
    ledger: &mut Ledger,
    plan: &Plan,
    got: Got<'_>,
    guard: Option<&mut crate::guard::Session>,
    ctx: F::Ctx,
    claim: Claim,
) -> Response {
    let Got {
        served,
        body,
        usage,
    } = got;
    let (body, refused) = match guard {
        None => (body, None),
        Some(g) => {
            let out = g.body(&body, crate::guard::Direction::Output);
            ledger.guard = g.report();
            match out {
                Ok(Some((b, _))) => (b, None),
                Ok(None) => (body, None),
                Err(b) => (body, Some(F::from_bedrock(&b.error()))),
            }
        }
    };
    let mut done = Finished::served(ledger, plan, served, usage, None);
    if let Some(e) = &refused {
        let (status, code) = F::code(e);
        done.status = status;
        done.error_code = Some(code);
    } else {
        done.response_body = Some(&body);
    }
    summary::finish_served(state, &done, claim);
    let outcome = match refused {
        Some(e) => Err(e),
        None => F::unary(ctx, served, body),
    };
    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => F::error(&ledger.request_id, &e),
    };
    respond::served_headers(&mut resp, &ledger.request_id, served);
    resp
}

/// What the cache stage found.
enum Lookup {
    /// An entry this plan may serve: its answer, as served.
    Hit(Box<Served>, Bytes),
    /// None: where to keep the answer, and for how long (`None`: don't).
    Miss(Option<(crate::cache::Key, Duration)>),
}

/// The cache stage, for a model with `cache` configured. It runs once the
/// plan has resolved the residency policy: the key covers it, and an entry
/// is served only when the region that produced it is allowed and its
/// called endpoint is one of this plan's candidates.
async fn cache_stage(
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
fn entry_of(served: &Served, body: &[u8]) -> crate::cache::Entry {
    crate::cache::Entry {
        region: respond::served_region(served).to_string(),
        endpoint_region: served.candidate.target.endpoint_region.clone(),
        account: served.candidate.account.clone(),
        model_id: served.candidate.target.model_id.clone(),
        headers: crate::cache::kept_headers(&served.headers),
        body: body.to_vec(),
    }
}

/// Keeps a stream in the cache once it ended whole (in memory at once;
/// Redis in a task, as the stream's last event is already on its way).
fn keeper(state: Arc<AppState>, key: crate::cache::Key, ttl: Duration) -> execute::Keep {
    Box::new(move |body: Bytes, served: &Served| {
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
        usage.input = usage.input.saturating_add(u.input);
        usage.output = usage.output.saturating_add(u.output);
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

/// Guard input on the body (and any further bodies) sent upstream.
fn guard_input(
    g: &mut crate::guard::Session,
    call: &mut Call,
) -> Result<(), crate::guard::Blocked> {
    use crate::guard::Direction;
    if call.action == Action::CountTokens {
        // CountTokens carries an InvokeModel body as base64: guard it inside.
        if let Some(v) = count_tokens_input(g, &call.body)? {
            call.body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            call.json = Some(v);
        }
    }
    if let Some((body, json)) = g.body(&call.body, Direction::Input)? {
        call.body = body;
        call.json = Some(json);
    }
    for b in &mut call.more {
        if let Some((body, _)) = g.body(b, Direction::Input)? {
            *b = body;
        }
    }
    Ok(())
}

/// A CountTokens body whose `input.invokeModel.body` (base64 of a native
/// body) the guard changed; `None` when it did not.
fn count_tokens_input(
    g: &mut crate::guard::Session,
    body: &[u8],
) -> Result<Option<serde_json::Value>, crate::guard::Blocked> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(None);
    };
    let Some(encoded) = v["input"]["invokeModel"]["body"].as_str() else {
        return Ok(None);
    };
    let Ok(inner) = b64.decode(encoded) else {
        return Err(crate::guard::Blocked::unreadable(
            crate::guard::Direction::Input,
            "an invokeModel body that is not base64".into(),
        ));
    };
    match g.body(&inner, crate::guard::Direction::Input)? {
        Some((guarded, _)) => {
            v["input"]["invokeModel"]["body"] = serde_json::Value::String(b64.encode(&guarded));
            Ok(Some(v))
        }
        None => Ok(None),
    }
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

/// Bytes of a refused request's body read and thrown away, at most.
const DISCARD_MAX: u64 = 64 * 1024 * 1024;

/// Reads a refused request's body and throws it away, in the background,
/// bounded in bytes and time: a client that writes its whole body before
/// reading (most do, without `Expect: 100-continue`) then gets its error
/// instead of a broken pipe. Nothing is kept, and no slot is held.
fn discard(state: &AppState, body: Body) {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    if body.size_hint().lower() > DISCARD_MAX {
        return; // closed with the connection: not worth reading
    }
    let limit = Duration::from_millis(state.config.server.body_read_timeout_ms);
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let _ = tokio::time::timeout(limit, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DISCARD_MAX {
                    break;
                }
            }
        })
        .await;
    });
}

/// The error for a `Content-Length` over the body limit (checked before
/// any of the body is read).
fn declared_too_long(state: &AppState, headers: &http::HeaderMap) -> Option<BedrockError> {
    let declared: u64 = headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (declared > state.max_body as u64).then(|| {
        BedrockError::validation(format!(
            "The request body ({declared} bytes) is larger than the {} bytes this endpoint accepts.",
            state.max_body
        ))
    })
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
