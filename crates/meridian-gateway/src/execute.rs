//! The execute stage: upstream attempts as meridian-router's attempt state
//! machine asks for them, under one deadline. This module does the I/O —
//! calls, first frames, cancellation — and reports each attempt's end back;
//! which candidate next, backoff, hedging and slow verdicts are the router's.
//!
//! An attempt is "answered" when its whole body is in (non-streaming) or its
//! first whole event is (streaming); until then it can be retried or raced
//! invisibly. The first answered attempt wins; the others are cancelled.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use meridian_router::{Action, Attempts, Candidate, Decision, Failed, Limits};
use meridian_upstream::{Call, Failure, Outcome, OutcomeClass, Response as Upstream};

use meridian_wire::eventstream::FrameSplitter;
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

/// What the winning attempt got.
enum Got {
    Unary(Bytes),
    Stream {
        first: Bytes,
        upstream: Box<Upstream>,
        splitter: FrameSplitter,
    },
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
        body,
        headers,
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
async fn attempt(state: &AppState, c: &Candidate, plan: &Plan) -> Result<Answer, Failure> {
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
        client.call(&call_for(c, plan)).await?
    };
    let (status, headers) = (upstream.status, upstream.headers.clone());
    let got = if plan.streaming {
        let mut splitter = FrameSplitter::new();
        let first = first_frame(&mut upstream, &mut splitter).await?;
        Got::Stream {
            first,
            upstream: Box::new(upstream),
            splitter,
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
                    let res = attempt(state, c, plan).await;
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
                Ok(answer) => {
                    let Some(i) = attempts.succeeded(n, Instant::now()) else { continue };
                    let served = Served {
                        status: answer.status,
                        headers: answer.headers.clone(),
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

/// Streaming: answers once the first whole event is in, so a failure before
/// it is retried (or raced) invisibly; afterwards events are forwarded as they
/// arrive and a failure ends the stream with an exception event.
pub async fn streaming(
    state: &AppState,
    plan: &Plan,
    guard: Option<StreamGuard>,
    keep: Option<Keep>,
    on_end: OnEnd,
) -> Result<(Served, Frames), Exhausted> {
    let (served, answer) = run(state, plan).await?;
    let ttft = plan.started.elapsed();
    let copy = served.clone();
    let keep = keep.map(|k| {
        let copy = served.clone();
        Box::new(move |b: Bytes| k(b, &copy)) as Box<dyn FnOnce(Bytes) + Send>
    });
    let on_end: Box<dyn FnOnce(StreamEnd) + Send> = Box::new(move |mut end: StreamEnd| {
        end.ttft = ttft;
        on_end(end, &copy);
    });
    match answer.got {
        Got::Stream {
            first,
            upstream,
            splitter,
        } => Ok((
            served,
            forward(
                plan.input_tokens,
                first,
                *upstream,
                splitter,
                guard,
                keep,
                on_end,
            ),
        )),
        Got::Unary(body) => {
            // A whole answer in stream form (a provider's): guarded frame
            // by frame all the same.
            let mut guard = guard;
            let mut end = StreamEnd::default();
            let body = match guard.as_mut() {
                None => Ok(body),
                Some(g) => guard_whole(g, &body),
            };
            end.guard = guard.as_ref().map(|g| g.session().report());
            on_end(end);
            Ok((served, forward_whole(body)))
        }
    }
}

async fn first_frame(
    upstream: &mut Upstream,
    splitter: &mut FrameSplitter,
) -> Result<Bytes, Failure> {
    loop {
        if let Some(frame) = splitter.next_frame().map_err(bad_frames)? {
            return Ok(frame);
        }
        match upstream.next_chunk().await? {
            Some(chunk) => splitter.push(&chunk),
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

/// Whole frames as they arrive; the last item is an error when the stream
/// broke after the first frame. Never a partial frame, never output from two
/// attempts.
pub type Frames = tokio::sync::mpsc::Receiver<Result<Bytes, BedrockError>>;

fn forward_whole(body: Result<Bytes, BedrockError>) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.try_send(body);
    rx
}

/// Keeps a whole, unbroken stream (its raw upstream frames) once it ends.
pub type Keep = Box<dyn FnOnce(Bytes, &Served) + Send>;

/// A stream answered from the cache: its frames through the guard, and how
/// it ends for the record (what the guard did; the error it ended with).
pub fn replay(body: Bytes, guard: Option<StreamGuard>) -> (Frames, StreamEnd) {
    let mut splitter = FrameSplitter::new();
    splitter.push(&body);
    let mut frames = Vec::new();
    let mut guard = guard;
    let mut failed = None;
    loop {
        let frame = match splitter.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                failed = Some(bad_frames(e).error);
                break;
            }
        };
        let r = match guard.as_mut() {
            None => {
                frames.push(frame);
                Ok(())
            }
            Some(g) => g.frame(frame, &mut frames),
        };
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none()
        && let Some(g) = guard.as_mut()
        && let Err(e) = g.finish(&mut frames)
    {
        failed = Some(e);
    }
    let end = StreamEnd {
        error: failed.as_ref().map(|e| e.kind.name().to_string()),
        guard: guard.map(|g| g.session().report()),
        ..StreamEnd::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(frames.len() + 1);
    for f in frames {
        let _ = tx.try_send(Ok(f));
    }
    if let Some(e) = failed {
        let _ = tx.try_send(Err(e));
    }
    (rx, end)
}

/// Guards every frame of a whole event-stream body.
fn guard_whole(g: &mut StreamGuard, body: &Bytes) -> Result<Bytes, BedrockError> {
    let mut splitter = FrameSplitter::new();
    splitter.push(body);
    let mut out = Vec::new();
    while let Some(frame) = splitter.next_frame().map_err(|e| bad_frames(e).error)? {
        g.frame(frame, &mut out)?;
    }
    g.finish(&mut out)?;
    Ok(Bytes::from(out.concat()))
}

/// The error code of a stream whose client went away before its end.
pub const CLIENT_GONE: &str = "client-gone";

fn forward(
    input_estimate: u64,
    first: Bytes,
    mut upstream: Upstream,
    mut splitter: FrameSplitter,
    mut guard: Option<StreamGuard>,
    keep: Option<Box<dyn FnOnce(Bytes) + Send>>,
    on_end: Box<dyn FnOnce(StreamEnd) + Send>,
) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BedrockError>>(32);
    tokio::spawn(async move {
        // The raw frames of the whole stream, for the cache; dropped when
        // it grows past what an entry may hold.
        let mut kept = keep.map(|k| (Vec::new(), k));
        let mut usage = StreamUsage::default();
        // Whether a frame is one a stream ends with (see StreamUsage::see).
        let see = |frame: &Bytes, usage: &mut StreamUsage| {
            if let Ok(f) = meridian_wire::eventstream::decode_one(frame)
                && let meridian_wire::eventstream::FrameKind::Event(kind) = &f.kind
            {
                return usage.see(kind, &f.payload);
            }
            false
        };
        let end =
            |usage: StreamUsage, error: Option<&str>, guard: &Option<StreamGuard>| StreamEnd {
                usage: usage.settled(input_estimate),
                error: error.map(str::to_string),
                ttft: Duration::ZERO,
                guard: guard.as_ref().map(|g| g.session().report()),
            };
        // What the guard lets out of one upstream frame (the frame itself
        // without a guard); reused for every frame.
        let mut out: Vec<Bytes> = Vec::with_capacity(2);
        let pass = |frame: Bytes, out: &mut Vec<Bytes>, guard: &mut Option<StreamGuard>| {
            out.clear();
            match guard {
                None => {
                    out.push(frame);
                    Ok(())
                }
                Some(g) => g.frame(frame, out),
            }
        };
        // Events go out as they arrive; only a frame a stream ends with
        // (Converse's metadata, the chunk with the invocation metrics) is
        // held until the upstream ends or sends more, so the stream is
        // accounted for (and logged) before the client receives its end.
        let mut held: Option<Bytes> = None;
        let mut next = Some(first);
        let failure = loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match splitter.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => match upstream.next_chunk().await {
                        Ok(Some(chunk)) => {
                            splitter.push(&chunk);
                            continue;
                        }
                        Ok(None) if splitter.pending() > 0 => {
                            break Some(BedrockError::new(
                                ErrorKind::ModelStreamError,
                                "the upstream stream ended in the middle of an event",
                            ));
                        }
                        Ok(None) => {
                            // Whatever a guard still holds goes out now.
                            out.clear();
                            if let Some(g) = guard.as_mut()
                                && let Err(e) = g.finish(&mut out)
                            {
                                break Some(e);
                            }
                            break None;
                        }
                        Err(f) => {
                            tracing::warn!(
                                outcome = f.outcome.label(),
                                "stream failed after the first byte"
                            );
                            break Some(f.error);
                        }
                    },
                    Err(e) => break Some(bad_frames(e).error),
                },
            };
            if let Some((buf, _)) = kept.as_mut() {
                if buf.len() + frame.len() > crate::cache::MAX_ENTRY_BYTES {
                    kept = None;
                } else {
                    buf.extend_from_slice(&frame);
                }
            }
            if let Err(e) = pass(frame, &mut out, &mut guard) {
                break Some(e);
            }
            for frame in out.drain(..) {
                // An end-looking frame is held; any other frame sends what
                // was held (it was not the end after all), then itself.
                let (earlier, now) = if see(&frame, &mut usage) {
                    (held.replace(frame), None)
                } else {
                    (held.take(), Some(frame))
                };
                for f in earlier.into_iter().chain(now) {
                    if tx.send(Ok(f)).await.is_err() {
                        on_end(end(usage, Some(CLIENT_GONE), &guard));
                        return;
                    }
                }
            }
        };
        match failure {
            None => {
                // Frames a guard let out at the end go before the held one.
                for f in out.drain(..) {
                    if tx.send(Ok(f)).await.is_err() {
                        break;
                    }
                }
                on_end(end(usage, None, &guard));
                if let Some((buf, k)) = kept.take() {
                    k(Bytes::from(buf));
                }
                if let Some(last) = held {
                    let _ = tx.send(Ok(last)).await;
                }
            }
            Some(e) => {
                on_end(end(usage, Some(e.kind.name()), &guard));
                let sent = match held {
                    Some(last) => tx.send(Ok(last)).await.is_ok(),
                    None => true,
                };
                if sent {
                    let _ = tx.send(Err(e)).await;
                }
            }
        }
    });
    rx
}

/// An event-stream body: frames as they are, a failure as one exception frame.
pub fn eventstream_body(frames: Frames) -> Body {
    let stream = tokio_stream::wrappers::ReceiverStream::new(frames)
        .map(|item| Ok::<_, std::io::Error>(item.unwrap_or_else(|e| e.exception_frame())));
    Body::from_stream(stream)
}
