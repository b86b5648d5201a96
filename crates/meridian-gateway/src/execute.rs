//! The execute stage: upstream attempts as meridian-router's attempt state
//! machine asks for them, under one deadline. This module does the I/O —
//! calls, first frames, cancellation — and reports each attempt's end back;
//! which candidate next, backoff, hedging and slow verdicts are the router's.
//!
//! An attempt is "answered" when its whole body is in (non-streaming) or its
//! first whole event is (streaming); until then it can be retried or raced
//! invisibly. The first answered attempt wins; the others are cancelled.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use meridian_router::{Action, Attempts, Candidate, Decision, Failed, Limits, Surface};
use meridian_upstream::{
    Call, Failure, Outcome, OutcomeClass, Response as Upstream, ResponseBody, Route,
};

use meridian_wire::event::{Event, Kind};
use meridian_wire::eventstream::FrameSplitter;
use meridian_wire::sse_decode::SseDecoder;
use meridian_wire::{BedrockError, ErrorKind};
use tokio::time::Instant;

use crate::guard::stream::StreamGuard;
use crate::plan::Plan;
use crate::state::AppState;
use crate::usage::{StreamUsage, Usage};

/// A successful attempt's head.
#[derive(Debug, Clone)]
pub struct Served {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub candidate: Candidate,
    pub attempts: usize,
    pub decision: Decision,
}

/// The simulated fleet says here where it processed a request (Bedrock
/// answers from the region it was called in).
pub(crate) const SIM_REGION: http::HeaderName =
    http::HeaderName::from_static("x-meridian-sim-inference-region");

impl Served {
    /// What accounting reads of it ([`crate::respond::served_region`],
    /// [`crate::usage::tier_header`]), for a stream to keep until it ends:
    /// of the upstream's headers only those two, and the candidate without
    /// its target's destination set.
    pub(crate) fn for_accounting(&self) -> Served {
        let kept = [SIM_REGION, crate::usage::TIER]
            .map(|name| self.headers.get(&name).map(|v| (name, v.clone())));
        // Sized to what is kept: a map grown by inserting takes room for six.
        let mut headers = http::HeaderMap::with_capacity(kept.iter().flatten().count());
        headers.extend(kept.into_iter().flatten());
        Served {
            status: self.status,
            headers,
            candidate: self.candidate.without_destinations(),
            attempts: self.attempts,
            decision: self.decision.clone(),
        }
    }
}

/// What the winning attempt got.
enum Got {
    Unary(Bytes),
    Stream {
        first: Event,
        upstream: Box<Upstream>,
        decoder: Decoder,
    },
}

/// How an upstream stream is cut into events: eventstream frames
/// (Converse, InvokeModel), or server-sent events (the native Messages
/// surfaces).
enum Decoder {
    Frames(FrameSplitter),
    /// Server-sent events; `true`: OpenAI's (else Anthropic's). Boxed: its
    /// decoder is larger than the frame splitter, and a stream keeps its
    /// decoder inline for its whole life.
    Sse(Box<SseDecoder>, bool),
}

/// The largest server-sent event read from an upstream.
const MAX_SSE_EVENT: usize = 16 << 20;

impl Decoder {
    fn for_surface(surface: Surface) -> Decoder {
        if surface.is_messages() || surface.is_openai() {
            Decoder::Sse(
                Box::new(SseDecoder::new(MAX_SSE_EVENT)),
                surface.is_openai(),
            )
        } else {
            Decoder::Frames(FrameSplitter::new())
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        match self {
            Decoder::Frames(f) => f.push(bytes),
            Decoder::Sse(s, _) => s.push(bytes),
        }
    }

    /// The next whole event; `None` until one is in.
    fn next(&mut self) -> Result<Option<Event>, BedrockError> {
        match self {
            Decoder::Frames(f) => match f.next_frame().map_err(|e| bad_frames(e).error)? {
                Some(frame) => Event::from_frame(frame)
                    .map(Some)
                    .map_err(|e| bad_frames(e).error),
                None => Ok(None),
            },
            Decoder::Sse(s, openai) => loop {
                let Some(sse) = s.next_event().map_err(|e| bad_stream(&e))? else {
                    return Ok(None);
                };
                // An event of a type Messages does not define is skipped,
                // as the SDKs skip it; OpenAI's are passed on, but for the
                // `[DONE]` that only marks the end.
                let ev = if *openai {
                    Event::openai_text(sse.event.as_deref(), sse.data)
                } else {
                    Event::messages_text(sse.data)
                };
                if let Some(ev) = ev {
                    return Ok(Some(ev));
                }
            },
        }
    }

    /// Whether the upstream ended inside an event.
    fn partial(&self) -> bool {
        match self {
            Decoder::Frames(f) => f.pending() > 0,
            Decoder::Sse(s, _) => s.finish().is_err(),
        }
    }
}

fn bad_stream(e: &dyn std::fmt::Display) -> BedrockError {
    BedrockError::new(
        ErrorKind::ModelStreamError,
        format!("malformed upstream stream: {e}"),
    )
}

struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    got: Got,
}

/// The request failed on every attempt it was allowed.
#[derive(Debug)]
pub struct Exhausted {
    pub failure: Failure,
    pub attempts: usize,
    pub decision: Decision,
}

/// The upstream call to `c`, as [`meridian_router::call::shape`] decides it.
fn call_for(c: &Candidate, plan: &Plan) -> Call {
    use meridian_router::call::{GuardrailIn, TierIn};
    if c.surface.is_messages() {
        return messages_call(c, plan);
    }
    if let (true, Some(o)) = (c.surface.is_openai(), &plan.openai) {
        return openai_call(c, plan, o);
    }
    let guardrail = plan
        .guardrails
        .iter()
        .find(|(m, r, _)| *m == c.model && *r == c.target.endpoint_region)
        .map(|(_, _, g)| g);
    let named = guardrail.map(|g| format!("{}:{}", g.id, g.version));
    let tier_body = c
        .service_tier
        .and_then(|t| plan.tier_bodies.iter().find(|(x, _)| *x == t))
        .map(|(_, b)| b);
    let shape = meridian_router::call::shape(c, plan.action, named.as_deref(), tier_body.is_some());
    let mut body = tier_body.unwrap_or(&plan.body).clone();
    let mut headers = plan.headers.clone();
    if let TierIn::Header(tier) = shape.tier {
        headers.push((
            http::HeaderName::from_static(crate::plan::TIER_HEADER),
            http::HeaderValue::from_static(tier.name()),
        ));
    }
    match (shape.guardrail, guardrail) {
        (GuardrailIn::Body, Some(g)) => {
            if let Some(b) = crate::plan::with_guardrail(&body, g) {
                body = b;
            }
        }
        (GuardrailIn::Headers, Some(g)) => {
            headers.retain(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "x-amzn-bedrock-guardrailidentifier" | "x-amzn-bedrock-guardrailversion"
                )
            });
            for (n, v) in [
                ("x-amzn-bedrock-guardrailidentifier", &g.id),
                ("x-amzn-bedrock-guardrailversion", &g.version),
            ] {
                if let Ok(v) = http::HeaderValue::from_str(v) {
                    headers.push((http::HeaderName::from_static(n), v));
                }
            }
        }
        // The path names it (ApplyGuardrail), or there is none.
        _ => {}
    }
    Call {
        region: c.target.endpoint_region.clone(),
        model_id: shape.model_id,
        action: plan.action,
        route: Route::Model,
        body,
        headers,
    }
}

/// A call to a native Messages surface: the plan's Messages body (Mantle's
/// own for Mantle) with the candidate's model ID and the stream flag put in
/// front — spliced into the bytes, not parsed again.
fn messages_call(c: &Candidate, plan: &Plan) -> Call {
    let (route, mantle) = if c.surface == Surface::MantleMessages {
        (Route::MantleMessages, plan.mantle())
    } else {
        (Route::RuntimeMessages, None)
    };
    let (base, extra) = match mantle {
        Some((body, headers)) => (body, headers.as_slice()),
        None => (&plan.body, &[][..]),
    };
    let model = serde_json::to_string(&c.target.model_id).unwrap_or_default();
    let trimmed = base.trim_ascii_start();
    let rest = trimmed.strip_prefix(b"{").unwrap_or(trimmed);
    let mut body = Vec::with_capacity(base.len() + model.len() + 32);
    body.extend_from_slice(b"{\"model\":");
    body.extend_from_slice(model.as_bytes());
    if plan.streaming {
        body.extend_from_slice(b",\"stream\":true");
    }
    if rest.first().is_some_and(|b| *b != b'}') {
        body.push(b',');
    }
    body.extend_from_slice(rest);
    let accept = if plan.streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut headers = vec![(http::header::ACCEPT, http::HeaderValue::from_static(accept))];
    headers.extend(extra.iter().cloned());
    Call {
        region: c.target.endpoint_region.clone(),
        model_id: c.target.model_id.clone(),
        action: plan.action,
        route,
        body: Bytes::from(body),
        headers,
    }
}

/// A call to an OpenAI-compatible endpoint (bedrock-runtime's or Mantle's):
/// the client's request with the candidate's model ID.
fn openai_call(c: &Candidate, plan: &Plan, o: &crate::canonical::OpenAiBody) -> Call {
    let body = match serde_json::from_slice::<serde_json::Value>(&o.body) {
        Ok(mut v) => {
            v["model"] = serde_json::Value::String(c.target.model_id.clone());
            meridian_wire::json_bytes(&v)
        }
        Err(_) => o.body.clone(),
    };
    let accept = if plan.streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    Call {
        region: c.target.endpoint_region.clone(),
        model_id: c.target.model_id.clone(),
        action: plan.action,
        route: if c.surface == Surface::MantleOpenAi {
            Route::MantleOpenAi(o.path)
        } else {
            Route::RuntimeOpenAi(o.path)
        },
        body,
        headers: vec![(http::header::ACCEPT, http::HeaderValue::from_static(accept))],
    }
}

/// An upstream failure in the router's terms.
fn failed(f: &Failure) -> Failed {
    Failed {
        label: f.outcome.label(),
        retryable: f.outcome.class() != OutcomeClass::Fatal,
        unreachable: matches!(
            f.outcome,
            Outcome::ConnectionRefused | Outcome::TimeoutBeforeFirstByte
        ),
        throttled: match f.outcome {
            Outcome::Throttled { retry_after } => Some(retry_after),
            _ => None,
        },
    }
}

/// One attempt, to its answer.
async fn attempt(
    state: &AppState,
    c: &Candidate,
    plan: &Plan,
    n: usize,
) -> Result<Answer, Failure> {
    let missing = |what: &str| Failure {
        outcome: Outcome::Unavailable { status: 500 },
        error: BedrockError::new(
            ErrorKind::InternalServer,
            format!("no {what} named '{}'", c.account),
        ),
    };
    let mut upstream = if c.target.kind == meridian_catalog::TargetKind::Provider {
        let provider = state
            .providers
            .get(&c.account)
            .ok_or_else(|| missing("provider"))?;
        provider
            .call(&c.target.model_id, plan.action, &plan.body)
            .await?
    } else {
        let client = state
            .client(&c.account)
            .ok_or_else(|| missing("upstream account"))?;
        let mut call = call_for(c, plan);
        if let Some(trace) = &plan.trace
            && let Ok(v) = http::HeaderValue::from_str(&trace.amzn_trace_id(n))
        {
            // Outside the signature (SigV4 leaves this header out), as the
            // AWS SDKs send it.
            call.headers
                .push((http::HeaderName::from_static("x-amzn-trace-id"), v));
        }
        client.call(&call).await?
    };
    // Taken, not cloned: a stream keeps `upstream` (its body) to its end,
    // and its headers are read only here.
    let (status, headers) = (upstream.status, std::mem::take(&mut upstream.headers));
    let got = if plan.streaming {
        let mut decoder = Decoder::for_surface(c.surface);
        let first = first_event(&mut upstream, &mut decoder).await?;
        Got::Stream {
            first,
            upstream: Box::new(upstream),
            decoder,
        }
    } else {
        Got::Unary(upstream.collect().await?)
    };
    Ok(Answer {
        status,
        headers,
        got,
    })
}

type Pending<'a> = FuturesUnordered<
    std::pin::Pin<Box<dyn Future<Output = (usize, Result<Answer, Failure>)> + Send + 'a>>,
>;

/// Runs a request's attempts to the first answer, or gives up.
async fn run(state: &AppState, plan: &Plan) -> Result<(Served, Answer), Exhausted> {
    let limits = Limits {
        max_attempts: plan.max_attempts,
        deadline: plan.deadline,
        deadline_ms: plan.deadline_ms,
        hedging: plan.hedging,
        streaming: plan.streaming,
    };
    let mut attempts = Attempts::new(
        &state.router,
        &plan.candidates,
        limits,
        plan.strategy,
        &plan.policy,
        Instant::now(),
    );
    let mut pending: Pending<'_> = FuturesUnordered::new();
    let mut last: Option<Failure> = None;
    loop {
        let until = match attempts.poll(Instant::now()) {
            Action::Start {
                attempt: n,
                candidate,
            } => {
                let c = &plan.candidates[candidate];
                let guard = state.router.start(c, plan.tokens);
                pending.push(Box::pin(async move {
                    let res = attempt(state, c, plan, n).await;
                    drop(guard);
                    (n, res)
                }));
                continue;
            }
            Action::Wait(until) => until,
            Action::GiveUp => break,
        };
        tokio::select! {
            Some((n, res)) = pending.next() => match res {
                Ok(mut answer) => {
                    let Some(i) = attempts.succeeded(n, Instant::now()) else { continue };
                    let served = Served {
                        status: answer.status,
                        headers: std::mem::take(&mut answer.headers),
                        candidate: plan.candidates[i].clone(),
                        attempts: attempts.started(),
                        decision: attempts.into_decision(),
                    };
                    return Ok((served, answer));
                }
                Err(f) => {
                    tracing::debug!(
                        region = attempts.decision().attempts.get(n).map_or("", |a| a.region.as_str()),
                        outcome = f.outcome.label(),
                        "attempt failed"
                    );
                    attempts.failed(n, &failed(&f), Instant::now());
                    last = Some(f);
                }
            },
            () = tokio::time::sleep_until(until) => {}
        }
    }
    // Dropping `pending` cancels what still runs.
    drop(pending);
    let n = attempts.started();
    let (decision, why) = attempts.give_up(Instant::now());
    Err(Exhausted {
        failure: give_up_failure(plan, last, &why),
        attempts: n,
        decision,
    })
}

/// The error a client sees when nothing answered. Caller errors pass through
/// as they came; a throttle stays a throttle; otherwise a
/// ServiceUnavailableException that names the residency policy, so an
/// operator can tell "no capacity inside the policy" from a bug.
fn give_up_failure(plan: &Plan, last: Option<Failure>, why: &str) -> Failure {
    match last {
        Some(f) if f.outcome.class() == OutcomeClass::Fatal => f,
        Some(f) if matches!(f.outcome, Outcome::Throttled { .. }) => f,
        last => {
            let tried = last.as_ref().map_or_else(String::new, |f| {
                format!(" The last attempt failed with: {}", f.error.message)
            });
            let tried = format!("{tried}{}", only_mantle(plan));
            Failure {
                outcome: last.map_or(Outcome::Unavailable { status: 503 }, |f| f.outcome),
                error: BedrockError::new(
                    ErrorKind::ServiceUnavailable,
                    format!(
                        "No answer for '{}' from any candidate inside residency policy '{}' (allowed regions: {}): {why}.{tried}",
                        plan.requested, plan.policy, plan.policy_regions
                    ),
                ),
            }
        }
    }
}

/// Why nothing else was tried, when only Mantle serves the model inside
/// the policy (Mantle processes in the region called, so no other region's
/// endpoint or profile can stand in).
fn only_mantle(plan: &Plan) -> String {
    if plan.candidates.is_empty() || !plan.candidates.iter().all(|c| c.surface.is_mantle()) {
        return String::new();
    }
    let mut regions: Vec<&str> = plan
        .candidates
        .iter()
        .map(|c| c.target.endpoint_region.as_str())
        .collect();
    regions.dedup();
    format!(
        " Inside this policy only Bedrock's Mantle endpoint serves '{}' (in {}); no other surface or region may stand in for it.",
        plan.requested,
        regions.join(", ")
    )
}

/// Non-streaming: the whole body from the first attempt that completes.
pub async fn unary(state: &AppState, plan: &Plan) -> Result<(Served, Bytes), Exhausted> {
    let (served, answer) = run(state, plan).await?;
    match answer.got {
        Got::Unary(body) => Ok((served, body)),
        Got::Stream { .. } => Err(Exhausted {
            failure: Failure {
                outcome: Outcome::ModelError,
                error: BedrockError::new(ErrorKind::InternalServer, "expected a whole body"),
            },
            attempts: served.attempts,
            decision: served.decision,
        }),
    }
}

/// How a stream ended, for accounting and the invocation log.
#[derive(Debug, Default)]
pub struct StreamEnd {
    /// Usage read from the events.
    pub usage: Usage,
    /// The error code, when the stream broke after its first event.
    pub error: Option<String>,
    /// From the request's start to its first event.
    pub ttft: Duration,
    /// What the guards did, when the stream had any.
    pub guard: Option<Vec<crate::guard::Fired>>,
}

/// Called once when a stream ends, before its last event (or its exception
/// event) is sent, so the record exists before the client has the whole answer.
pub type OnEnd = Box<dyn FnOnce(StreamEnd, &Served) + Send>;

/// A model's answer as typed events, then possibly an error (never a partial
/// event, never events from two attempts). Pulled by the front door's body:
/// a stream has no task of its own, and a client that goes away drops it.
pub type Events = Pin<Box<dyn Stream<Item = Result<Event, BedrockError>> + Send>>;

/// Streaming: answers once the first whole event is in, so a failure before
/// it is retried (or raced) invisibly; afterwards events are forwarded as they
/// arrive and a failure ends the stream with an error.
pub async fn streaming(
    state: &AppState,
    plan: &Plan,
    guard: Option<StreamGuard>,
    keep: Option<Keep>,
    on_end: OnEnd,
) -> Result<(Served, Events), Exhausted> {
    let (served, answer) = run(state, plan).await?;
    let ttft = plan.started.elapsed();
    let keep = keep.map(|k| {
        let copy = served.clone();
        Box::new(move |b: Bytes| k(b, &copy)) as KeepServed
    });
    match answer.got {
        Got::Stream {
            first,
            upstream,
            decoder,
        } => {
            let mut forward = Forward {
                input_estimate: plan.input_tokens,
                upstream: upstream.into_body(),
                decoder,
                guard: guard.map(Box::new),
                kept: keep.map(|k| Box::new((Vec::new(), k))),
                usage: StreamUsage::default(),
                out: Outbox::default(),
                held: None,
                settle: Some(Settle {
                    on_end,
                    served: served.for_accounting(),
                    ttft,
                }),
                done: false,
            };
            forward.pass(first);
            Ok((served, Box::pin(forward)))
        }
        Got::Unary(body) => {
            // A whole answer in stream form (a provider's): guarded and
            // counted event by event all the same.
            let (events, mut end) = replay(body, guard, Some(plan.input_tokens));
            end.ttft = ttft;
            on_end(end, &served);
            Ok((served, events))
        }
    }
}

async fn first_event(upstream: &mut Upstream, decoder: &mut Decoder) -> Result<Event, Failure> {
    loop {
        let next = decoder.next().map_err(|error| Failure {
            outcome: Outcome::ConnectionReset,
            error,
        })?;
        if let Some(ev) = next {
            return Ok(ev);
        }
        match upstream.next_chunk().await? {
            Some(chunk) => decoder.push(&chunk),
            None => {
                return Err(Failure {
                    outcome: Outcome::ConnectionReset,
                    error: BedrockError::new(
                        ErrorKind::ServiceUnavailable,
                        "the upstream stream ended before its first event",
                    ),
                });
            }
        }
    }
}

fn bad_frames(e: meridian_wire::eventstream::FrameError) -> Failure {
    Failure {
        outcome: Outcome::ConnectionReset,
        error: BedrockError::new(
            ErrorKind::ModelStreamError,
            format!("malformed upstream stream: {e}"),
        ),
    }
}

/// The error code of a request whose client went away before its end.
pub const CLIENT_GONE: &str = "client-gone";

/// Keeps a whole, unbroken stream (its raw upstream frames) once it ends.
pub type Keep = Box<dyn FnOnce(Bytes, &Served) + Send>;

/// [`Keep`] with the winning attempt's head bound.
type KeepServed = Box<dyn FnOnce(Bytes) + Send>;

/// The error code an upstream's exception event stands for.
fn exception_code(ev: &Event) -> &'static str {
    ErrorKind::from_stream_member(ev.name())
        .unwrap_or(ErrorKind::ModelStreamError)
        .name()
}

/// A whole event-stream body as events: a stream answered from the cache
/// (no usage: a hit costs nothing) or a provider's whole answer (usage
/// counted, `input_estimate` for what it did not report). Guarded like a
/// live stream; the end says what the guard did and the error, if any.
pub fn replay(
    body: Bytes,
    guard: Option<StreamGuard>,
    input_estimate: Option<u64>,
) -> (Events, StreamEnd) {
    let mut splitter = FrameSplitter::new();
    splitter.push(&body);
    let mut out = Vec::new();
    let mut guard = guard;
    let mut usage = StreamUsage::default();
    let mut failed = None;
    loop {
        let ev = match splitter.next_frame() {
            Ok(Some(f)) => match Event::from_frame(f) {
                Ok(ev) => ev,
                Err(e) => {
                    failed = Some(bad_frames(e).error);
                    break;
                }
            },
            Ok(None) => break,
            Err(e) => {
                failed = Some(bad_frames(e).error);
                break;
            }
        };
        usage.see(&ev);
        let r = match guard.as_mut() {
            None => {
                out.push(ev);
                Ok(())
            }
            Some(g) => g.event(ev, &mut out),
        };
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none()
        && let Some(g) = guard.as_mut()
        && let Err(e) = g.finish(&mut out)
    {
        failed = Some(e);
    }
    let error = match &failed {
        Some(e) => Some(e.kind.name().to_string()),
        None => out
            .iter()
            .find(|e| e.kind() == Kind::Exception)
            .map(|e| exception_code(e).to_string()),
    };
    let end = StreamEnd {
        usage: input_estimate.map_or_else(Usage::default, |i| usage.settled(i)),
        error,
        guard: guard.map(|g| g.session().report()),
        ttft: Duration::ZERO,
    };
    let items: Vec<Result<Event, BedrockError>> =
        out.into_iter().map(Ok).chain(failed.map(Err)).collect();
    (Box::pin(futures_util::stream::iter(items)), end)
}

/// A live stream after its first event: reads the upstream as the client
/// pulls, decodes each frame once, counts usage on what the upstream sent,
/// keeps the raw frames for the cache, runs the guard, and settles the
/// request once — at the end, at a failure, or when the client goes away
/// (dropped unfinished). It is the stream itself (no future per event, no
/// task): the front door's body polls it in place.
struct Forward {
    input_estimate: u64,
    /// The upstream response's body (its head is in [`Served`]).
    upstream: ResponseBody,
    decoder: Decoder,
    /// Boxed: most streams have none, and a stream keeps its `Forward`
    /// for its whole life.
    guard: Option<Box<StreamGuard>>,
    /// The raw frames of the whole stream, for the cache; dropped when it
    /// grows past what an entry may hold, or the stream fails.
    kept: Option<Box<(Vec<u8>, KeepServed)>>,
    usage: StreamUsage,
    /// Ready to go out.
    out: Outbox,
    /// An event a stream ends with (Converse's metadata, the chunk with the
    /// invocation metrics), held until the upstream ends or sends more, so
    /// the stream is accounted for (and logged) before the client has it.
    held: Option<Event>,
    /// Taken when the stream is settled.
    settle: Option<Settle>,
    done: bool,
}

/// Events ready to go out, in order: the first inline (a stream mostly has
/// one at a time), any behind it (an event held for the end and the one that
/// followed it, a guard's release) in a queue made only when needed.
#[derive(Default)]
struct Outbox {
    first: Option<Result<Event, BedrockError>>,
    /// Empty whenever `first` is.
    more: VecDeque<Result<Event, BedrockError>>,
}

impl Outbox {
    fn push(&mut self, item: Result<Event, BedrockError>) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.more.push_back(item);
        }
    }

    fn pop(&mut self) -> Option<Result<Event, BedrockError>> {
        let item = self.first.take()?;
        self.first = self.more.pop_front();
        Some(item)
    }
}

impl Extend<Result<Event, BedrockError>> for Outbox {
    fn extend<I: IntoIterator<Item = Result<Event, BedrockError>>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

/// What settles a stream when it ends, kept in its [`Forward`] rather
/// than boxed beside it.
struct Settle {
    on_end: OnEnd,
    /// What accounting reads of the served attempt
    /// ([`Served::for_accounting`]).
    served: Served,
    /// From the request's start to the first event.
    ttft: Duration,
}

impl Stream for Forward {
    type Item = Result<Event, BedrockError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.out.pop() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.poll_pull(cx)) {
                Ok(Some(ev)) => this.pass(ev),
                Ok(None) => this.finish(),
                Err(e) => this.fail(e),
            }
        }
    }
}

impl Forward {
    /// The next upstream event; `None` at a clean end.
    fn poll_pull(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>, BedrockError>> {
        loop {
            match self.decoder.next() {
                Ok(Some(ev)) => return Poll::Ready(Ok(Some(ev))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let r = match ready!(self.upstream.poll_chunk(cx)) {
                Ok(Some(chunk)) => {
                    self.decoder.push(&chunk);
                    continue;
                }
                Ok(None) if self.decoder.partial() => Err(BedrockError::new(
                    ErrorKind::ModelStreamError,
                    "the upstream stream ended in the middle of an event",
                )),
                Ok(None) => Ok(None),
                Err(f) => {
                    tracing::warn!(
                        outcome = f.outcome.label(),
                        "stream failed after the first byte"
                    );
                    Err(f.error)
                }
            };
            return Poll::Ready(r);
        }
    }

    fn pass(&mut self, ev: Event) {
        self.usage.see(&ev);
        if let Some((buf, _)) = self.kept.as_deref_mut() {
            let frame = ev.to_frame();
            if buf.len() + frame.len() > crate::cache::MAX_ENTRY_BYTES {
                self.kept = None;
            } else {
                buf.extend_from_slice(&frame);
            }
        }
        if ev.kind() == Kind::Exception {
            // The upstream ended the stream with an error of its own: it
            // goes out as the last event, and the stream is not kept.
            self.kept = None;
            self.end(Some(exception_code(&ev)));
            self.out.extend(self.held.take().map(Ok));
            self.out.push(Ok(ev));
            self.done = true;
            return;
        }
        let Some(g) = self.guard.as_mut() else {
            self.queue(ev);
            return;
        };
        let mut guarded = Vec::with_capacity(2);
        if let Err(e) = g.event(ev, &mut guarded) {
            self.fail(e);
            return;
        }
        for ev in guarded {
            self.queue(ev);
        }
    }

    /// An end-looking event is held; any other sends what was held (it was
    /// not the end after all), then itself.
    fn queue(&mut self, ev: Event) {
        if ev.is_last() {
            if let Some(earlier) = self.held.replace(ev) {
                self.out.push(Ok(earlier));
            }
        } else {
            self.out.extend(self.held.take().map(Ok));
            self.out.push(Ok(ev));
        }
    }

    fn finish(&mut self) {
        // Whatever a guard still holds goes out before the held event.
        let mut tail = Vec::new();
        if let Some(g) = self.guard.as_mut()
            && let Err(e) = g.finish(&mut tail)
        {
            self.fail(e);
            return;
        }
        self.out.extend(tail.into_iter().map(Ok));
        self.end(None);
        if let Some((buf, k)) = self.kept.take().map(|b| *b) {
            k(Bytes::from(buf));
        }
        self.out.extend(self.held.take().map(Ok));
        self.done = true;
    }

    fn fail(&mut self, e: BedrockError) {
        self.kept = None;
        self.end(Some(e.kind.name()));
        self.out.extend(self.held.take().map(Ok));
        self.out.push(Err(e));
        self.done = true;
    }

    /// Settles the stream, once.
    fn end(&mut self, error: Option<&str>) {
        if let Some(s) = self.settle.take() {
            (s.on_end)(
                StreamEnd {
                    usage: self.usage.settled(self.input_estimate),
                    error: error.map(str::to_string),
                    ttft: s.ttft,
                    guard: self.guard.as_ref().map(|g| g.session().report()),
                },
                &s.served,
            );
        }
    }
}

impl Drop for Forward {
    /// Dropped before its end: the client went away.
    fn drop(&mut self) {
        self.end(Some(CLIENT_GONE));
    }
}

/// An event-stream body: each event as a frame (the one it arrived as when
/// unchanged), a failure as one exception frame.
pub fn eventstream_body(events: Events) -> Body {
    let frames = events.map(|item| {
        Ok::<_, std::io::Error>(match item {
            Ok(ev) => ev.to_frame(),
            Err(e) => e.exception_frame(),
        })
    });
    Body::from_stream(frames)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn delta(n: u8) -> Result<Event, BedrockError> {
        Ok(Event::from_frame(meridian_wire::eventstream::event(
            "contentBlockDelta",
            format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{n}"}}}}"#).as_bytes(),
        ))
        .unwrap())
    }

    fn text(item: Option<Result<Event, BedrockError>>) -> String {
        String::from_utf8_lossy(&item.unwrap().unwrap().to_frame()).into_owned()
    }

    /// Events leave in the order they were queued, whether one waits or
    /// several do, and the queue behind the first is made only for more.
    #[test]
    fn the_outbox_keeps_order() {
        let mut out = Outbox::default();
        out.push(delta(1));
        assert_eq!(out.more.capacity(), 0);
        assert!(text(out.pop()).contains(r#""text":"1""#));
        assert!(out.pop().is_none());
        out.extend([delta(2), delta(3), delta(4)]);
        out.push(delta(5));
        for n in 2..=5 {
            assert!(text(out.pop()).contains(&format!(r#""text":"{n}""#)));
        }
        assert!(out.pop().is_none());
        out.push(delta(6));
        assert!(text(out.pop()).contains(r#""text":"6""#));
    }

    /// A live stream's state stays within mimalloc's 1,024-byte size class
    /// (the next is 1,280): 5,000 streams hold 5,000 of them.
    #[test]
    fn a_stream_state_fits_its_size_class() {
        assert!(
            std::mem::size_of::<Forward>() <= 1024,
            "Forward is {} B",
            std::mem::size_of::<Forward>()
        );
    }
}
