//! The one request pipeline. A front door is only an adapter — it says what
//! it can from the head, decodes its wire format into a [`Call`], and encodes
//! answers, streams and errors back — and [`handle`] runs every stage, in
//! this order, for every front door:
//!
//! admit (server-wide cap) → identify (head only: the tenant) → hold the
//! tenant's slot (before any body is read) → read body (declared length,
//! then bounded size and time) → authenticate (the signature covers this
//! body) → decode → admit the tenant (its models, limits and budgets) →
//! guard input (the tenant's and the model's detectors) → plan (residency:
//! model ∩ tenant ∩ header; Bedrock guardrails' regions) → cache (it needs
//! the resolved policy) → answer: execute → guard output → account, log and
//! settle → encode.
//!
//! Each stage is a function over the request's [`RequestCtx`]; [`stages`]
//! lists them in order. A request refused at any stage is accounted for and
//! logged like one that was served, and one that never finishes (its client
//! left, a stage panicked) is summarized all the same ([`Summary`]). A front
//! door cannot skip a stage, because it has no code path of its own; a stage
//! added here reaches every front door.

mod answer;
mod body;
mod cache_stage;
mod fan_out;
mod guard_input;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;
use meridian_config::Tenant;
use meridian_router::Decision;
use meridian_wire::{BedrockError, ErrorKind};
use tokio::time::Instant;

use self::cache_stage::Lookup;
use crate::account::{self, Finished, Ledger};
use crate::auth::Identified;
use crate::canonical::{Call, Head};
use crate::execute::{Events, Served};
use crate::limits::{self, Claim};
use crate::plan::{self, Plan};
use crate::state::AppState;
use crate::summary::Summary;
use crate::{auth, respond};

/// What a front door decoded.
pub enum Decoded<C, E> {
    /// A model invocation, to plan and execute; `C` is what the front door
    /// keeps for encoding the answer.
    Invoke(Call, C),
    /// Answered by Meridian itself (control-plane reads).
    Local(Response),
    /// Decoding needs stored state first (a Responses request that
    /// continues a stored one, a read of a stored response): the rest of
    /// the decode, run by the decode stage.
    Pending(futures_util::future::BoxFuture<'static, Result<Decoded<C, E>, E>>),
}

impl<C, E> std::fmt::Debug for Decoded<C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoded::Invoke(..) => "Invoke",
            Decoded::Local(_) => "Local",
            Decoded::Pending(_) => "Pending",
        })
    }
}

/// A wire format: how requests are decoded and answers encoded. Nothing
/// else — the stages are the pipeline's.
pub trait FrontDoor: Send + Sync + 'static {
    /// Name in invocation records and traces (`bedrock`, `openai`).
    const API: &'static str;
    /// Services a SigV4 signature on this door may be scoped to.
    const SIGNING_SERVICES: &'static [&'static str] = auth::BEDROCK;
    /// What the front door keeps between decoding and encoding.
    type Ctx: Send + 'static;
    /// An error in this front door's shape.
    type Error: Send;

    /// What the head alone says about the request.
    fn head(parts: &Parts) -> Head;
    /// The whole request, decoded.
    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        request_id: &str,
        tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<Self::Ctx, Self::Error>, Self::Error>;
    /// A whole answer.
    /// A whole answer, with the usage it counted (summed over the calls of
    /// a request that needed several).
    fn unary(
        ctx: Self::Ctx,
        served: &Served,
        body: Bytes,
        usage: &crate::usage::Usage,
    ) -> Result<Response, Self::Error>;
    /// A streamed answer: typed events, then possibly an error; the front
    /// door encodes them at its edge.
    fn stream(ctx: Self::Ctx, served: &Served, events: Events) -> Response;
    /// Guards what the front door keeps beyond the answer (the Responses
    /// door's stored input) with the request's own guard session, as the
    /// body that goes upstream was guarded.
    fn guard_kept(_ctx: &mut Self::Ctx, _guard: &mut crate::guard::Session) {}
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

/// One request as it passes the stages: the gateway state it started
/// under, its head, and its summary (the ledger every record of it shares).
struct RequestCtx<'p> {
    state: Arc<AppState>,
    parts: &'p Parts,
    summary: Summary,
    started: Instant,
}

/// Why the stages stopped before an answer.
enum Stop<E> {
    /// Refused: the front door's error, and headers to send with it.
    Refused(E, Vec<(&'static str, String)>),
    /// Answered by Meridian itself (a control-plane read).
    Local(Box<Response>),
}

/// A refusal from a stage, in the front door's shape.
fn no<F: FrontDoor>(e: &BedrockError) -> Stop<F::Error> {
    Stop::Refused(F::from_bedrock(e), Vec::new())
}

async fn run<F: FrontDoor>(state: Arc<AppState>, req: Request, request_id: String) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let head = F::head(&parts);
    let ledger = Ledger {
        api: F::API,
        operation: head.operation,
        requested: head.requested,
        request_id,
        started,
        trace: crate::traces::TraceContext::for_request(
            parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok()),
            state.tracer.as_deref(),
        ),
        invocation: head.invocation,
        request_body: None,
        tenant: None,
        guard: Vec::new(),
        cache: None,
        finished: Arc::default(),
    };
    let mut cx = RequestCtx {
        summary: Summary::new(state.clone(), ledger),
        state,
        parts: &parts,
        started,
    };
    match stages::<F>(&mut cx, body).await {
        Ok(resp) => resp,
        Err(Stop::Local(resp)) => {
            let mut resp = *resp;
            account::finish(&cx.state, &Finished::local(&cx.summary));
            respond::common_headers(&mut resp, &cx.summary.request_id, 0, None);
            resp
        }
        Err(Stop::Refused(error, headers)) => {
            let mut r = Refusal::early(error);
            r.headers = headers;
            refuse::<F>(&cx.state, &cx.summary, r)
        }
    }
}

/// Every stage, in order.
async fn stages<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    body: Body,
) -> Result<Response, Stop<F::Error>> {
    let permit = admit::<F>(cx)?;
    let identified = identify::<F>(cx).await?;
    let (slot, body) = hold_slot::<F>(cx, &identified, body)?;
    let body = read_body::<F>(cx, body).await?;
    let tenant = authenticate::<F>(cx, identified, &body)?;
    let (mut call, mut door) = decode::<F>(cx, body, &tenant).await?;
    let admitted = admit_tenant::<F>(cx, &tenant, &call).await?;
    let mut guard = guard_input::<F>(cx, &tenant, &mut call)?;
    if let Some(g) = guard.as_mut() {
        F::guard_kept(&mut door, g);
    }
    let plan = plan::<F>(cx, &call, &tenant, admitted.reserve)?;
    let lookup = cache::<F>(cx, &tenant, &plan).await?;
    let held = (permit, slot);
    let mut resp = answer::answer::<F>(cx, plan, lookup, guard, door, admitted.claim, held).await;
    add_headers(&mut resp, &admitted.rate);
    Ok(resp)
}

/// admit: a cap on requests in flight, so overload is refused, not queued.
fn admit<F: FrontDoor>(
    cx: &RequestCtx<'_>,
) -> Result<tokio::sync::OwnedSemaphorePermit, Stop<F::Error>> {
    cx.state.admission.clone().try_acquire_owned().map_err(|_| {
        no::<F>(&BedrockError::new(
            ErrorKind::ServiceUnavailable,
            format!(
                "Meridian is handling its limit of {} concurrent requests; retry shortly.",
                cx.state.config.server.max_concurrent_requests
            ),
        ))
    })
}

/// identify: the tenant, from the head alone, before any of the body is read.
async fn identify<'p, F: FrontDoor>(cx: &RequestCtx<'p>) -> Result<Identified<'p>, Stop<F::Error>> {
    let parts: &'p Parts = cx.parts;
    auth::identify(&cx.state, &parts.headers, F::SIGNING_SERVICES)
        .await
        .map_err(|e| no::<F>(&e))
}

/// hold the tenant's slot on this replica before its body is buffered; a
/// declared length over the limit is refused before any of it is read (a
/// refused body is drained in the background).
fn hold_slot<F: FrontDoor>(
    cx: &RequestCtx<'_>,
    identified: &Identified<'_>,
    body: Body,
) -> Result<(Option<tokio::sync::OwnedSemaphorePermit>, Body), Stop<F::Error>> {
    let slot = match cx.state.limiter.slots.take(identified.tenant()) {
        Ok(s) => s,
        Err(refused) => {
            body::discard(&cx.state, body);
            let e = F::from_bedrock(&refused.error(&identified.tenant().name));
            return Err(Stop::Refused(e, refused.headers()));
        }
    };
    if let Some(e) = body::declared_too_long(&cx.state, &cx.parts.headers) {
        body::discard(&cx.state, body);
        return Err(no::<F>(&e));
    }
    Ok((slot, body))
}

/// read the body, bounded in size and time.
async fn read_body<F: FrontDoor>(cx: &RequestCtx<'_>, body: Body) -> Result<Bytes, Stop<F::Error>> {
    body::read_body(&cx.state, body)
        .await
        .map_err(|e| no::<F>(&e))
}

/// authenticate: the signature must cover this body.
fn authenticate<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    identified: Identified<'_>,
    body: &Bytes,
) -> Result<Arc<Tenant>, Stop<F::Error>> {
    let tenant = auth::authenticate(identified, cx.parts, body).map_err(|e| no::<F>(&e))?;
    if cx.state.tenants.enforced() {
        cx.summary.tenant = Some(tenant.name.clone());
    }
    Ok(tenant)
}

/// decode: the front door's wire format into the canonical call (with the
/// stored state it needs, read here).
async fn decode<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    body: Bytes,
    tenant: &Tenant,
) -> Result<(Call, F::Ctx), Stop<F::Error>> {
    let mut decoded = F::decode(&cx.state, cx.parts, body, &cx.summary.request_id, tenant);
    let (call, door) = loop {
        match decoded {
            Ok(Decoded::Invoke(call, door)) => break (call, door),
            Ok(Decoded::Local(resp)) => return Err(Stop::Local(Box::new(resp))),
            Ok(Decoded::Pending(rest)) => decoded = rest.await,
            Err(e) => return Err(Stop::Refused(e, Vec::new())),
        }
    };
    cx.summary.operation = call.operation;
    cx.summary.requested.clone_from(&call.requested);
    cx.summary.invocation = true;
    Ok((call, door))
}

/// What admitting the tenant gave the request.
struct Admitted {
    /// Its share of the tenant's limits and budgets, settled when it ends.
    claim: Claim,
    /// The tokens reserved for it.
    reserve: plan::Reserve,
    /// Rate-limit headers for the answer.
    rate: Vec<(&'static str, String)>,
}

/// admit the tenant: its model list, then its limits and budgets.
async fn admit_tenant<F: FrontDoor>(
    cx: &RequestCtx<'_>,
    tenant: &Arc<Tenant>,
    call: &Call,
) -> Result<Admitted, Stop<F::Error>> {
    if !tenant.may_call(&call.requested) {
        let models: Vec<String> = tenant.models.iter().flatten().cloned().collect();
        return Err(no::<F>(&BedrockError::new(
            ErrorKind::AccessDenied,
            format!(
                "Tenant '{}' may not call '{}'; it may call: {}.",
                tenant.name,
                call.requested,
                models.join(", ")
            ),
        )));
    }
    let reserve = plan::reserve(call);
    let ask = limits::Ask {
        tenant: tenant.clone(),
        request_id: cx.summary.request_id.clone(),
        tokens: reserve.total(),
        lease_ms: cx.state.config.routing.deadline_ms + LEASE_SLACK_MS,
    };
    match cx.state.limiter.admit(ask).await {
        Ok(t) => {
            let claim = Claim::new(cx.state.limiter.clone(), t);
            let rate = claim.ticket().map(limits::rate_headers).unwrap_or_default();
            Ok(Admitted {
                claim,
                reserve,
                rate,
            })
        }
        Err(refused) => Err(Stop::Refused(
            F::from_bedrock(&refused.error(&tenant.name)),
            refused.headers(),
        )),
    }
}

/// guard input: the tenant's and the model's guards on what goes upstream.
fn guard_input<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    tenant: &Tenant,
    call: &mut Call,
) -> Result<Option<crate::guard::Session>, Stop<F::Error>> {
    let model_guard = cx
        .state
        .config
        .model(&call.requested)
        .and_then(|m| m.guard.as_deref());
    let mut guard = cx
        .state
        .guards
        .session([tenant.guard.as_deref(), model_guard]);
    if let Some(g) = guard.as_mut() {
        let blocked = guard_input::guard_input(g, call);
        cx.summary.guard = g.report();
        if let Err(b) = blocked {
            return Err(no::<F>(&b.error()));
        }
    }
    if cx.state.log.include_bodies {
        cx.summary.request_body = Some(call.body.clone());
    }
    Ok(guard)
}

/// plan: catalog, residency (model ∩ tenant ∩ request header), deadline.
fn plan<F: FrontDoor>(
    cx: &RequestCtx<'_>,
    call: &Call,
    tenant: &Tenant,
    reserve: plan::Reserve,
) -> Result<Plan, Stop<F::Error>> {
    let mut plan = plan::build(
        &cx.state,
        call,
        &cx.parts.headers,
        tenant.residency.as_ref(),
        reserve,
        cx.started,
    )
    .map_err(|e| no::<F>(&e))?;
    plan.trace = cx.summary.trace.clone();
    refuse_unpriced(&mut plan, tenant).map_err(|e| no::<F>(&e))?;
    Ok(plan)
}

/// A tenant with a budget is not served by a Bedrock target whose price the
/// catalog does not know (a model a refresh found), unless its config says
/// `unpriced = "admit"`: spend that cannot be accounted does not go upstream.
fn refuse_unpriced(plan: &mut Plan, tenant: &Tenant) -> Result<(), BedrockError> {
    if !tenant.limits.refuses_unpriced() {
        return Ok(());
    }
    let unpriced = |c: &meridian_router::Candidate| {
        c.target.price.is_none() && c.target.kind != meridian_catalog::TargetKind::Provider
    };
    if !plan.candidates.iter().any(unpriced) {
        return Ok(());
    }
    plan.candidates.retain(|c| !unpriced(c));
    if plan.candidates.is_empty() {
        return Err(BedrockError::validation(format!(
            "The price of {} is not known to Meridian (a model a catalog refresh found), so tenant '{}''s budget cannot account for it; set unpriced = \"admit\" in [tenants.{}] to serve it uncharged.",
            plan.requested, tenant.name, tenant.name
        )));
    }
    Ok(())
}

/// cache: an exact repeat, produced where this plan's policy allows.
async fn cache<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    tenant: &Tenant,
    plan: &Plan,
) -> Result<Lookup, Stop<F::Error>> {
    let RequestCtx {
        state,
        parts,
        summary,
        ..
    } = cx;
    cache_stage::cache_stage(state, parts, &tenant.name, plan, summary)
        .await
        .map_err(|e| no::<F>(&e))
}

/// An in-flight lease outlives the longest deadline by this much before a
/// request that was never settled (a crashed replica) stops counting.
const LEASE_SLACK_MS: u64 = 60_000;
