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

fn call_for(c: &Candidate, plan: &Plan) -> Call {
    // CountTokens takes a base foundation-model ID, never a profile.
    let model_id = match (&c.target.base_model_id, plan.action) {
        (Some(base), "count-tokens") => base.clone(),
        _ => c.target.model_id.clone(),
    };
    let mut body = plan.body.clone();
    let mut headers = plan.headers.clone();
    if let Some(tier) = c.service_tier {
        match plan.tier_bodies.iter().find(|(t, _)| *t == tier) {
            Some((_, b)) => body = b.clone(),
            None => headers.push((
                http::HeaderName::from_static(crate::plan::TIER_HEADER),
                http::HeaderValue::from_static(tier.name()),
            )),
        }
    }
    Call {
        region: c.target.endpoint_region.clone(),
        model_id,
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
    on_end: OnEnd,
) -> Result<(Served, Frames), Exhausted> {
    let (served, answer) = run(state, plan).await?;
    let ttft = plan.started.elapsed();
    let copy = served.clone();
    let on_end: Box<dyn FnOnce(StreamEnd) + Send> = Box::new(move |mut end: StreamEnd| {
        end.ttft = ttft;
        on_end(end, &copy);
    });
    match answer.got {
        Got::Stream {
            first,
            upstream,
            splitter,
        } => Ok((served, forward(first, *upstream, splitter, on_end))),
        Got::Unary(body) => {
            on_end(StreamEnd::default());
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

fn forward_whole(body: Bytes) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.try_send(Ok(body));
    rx
}

fn forward(
    first: Bytes,
    mut upstream: Upstream,
    mut splitter: FrameSplitter,
    on_end: Box<dyn FnOnce(StreamEnd) + Send>,
) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BedrockError>>(32);
    tokio::spawn(async move {
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
        see(&first, &mut usage);
        // Events go out as they arrive; only a frame a stream ends with
        // (Converse's metadata, the chunk with the invocation metrics) is
        // held until the upstream ends or sends more, so the stream is
        // accounted for (and logged) before the client receives its end.
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut held: Option<Bytes> = None;
        let end = |usage: StreamUsage, error: Option<&BedrockError>| StreamEnd {
            usage: usage.usage,
            error: error.map(|e| e.kind.name().to_string()),
            ttft: Duration::ZERO,
        };
        let failure = loop {
            let next = match splitter.next_frame() {
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
                    Ok(None) => break None,
                    Err(f) => {
                        tracing::warn!(
                            outcome = f.outcome.label(),
                            "stream failed after the first byte"
                        );
                        break Some(f.error);
                    }
                },
                Err(e) => break Some(bad_frames(e).error),
            };
            // An end-looking frame is held; any other frame sends what was
            // held (it was not the end after all), then itself.
            let (earlier, now) = if see(&next, &mut usage) {
                (held.replace(next), None)
            } else {
                (held.take(), Some(next))
            };
            for out in earlier.into_iter().chain(now) {
                if tx.send(Ok(out)).await.is_err() {
                    on_end(end(
                        usage,
                        Some(&BedrockError::new(
                            ErrorKind::ModelStreamError,
                            "client went away",
                        )),
                    ));
                    return;
                }
            }
        };
        match failure {
            None => {
                on_end(end(usage, None));
                if let Some(last) = held {
                    let _ = tx.send(Ok(last)).await;
                }
            }
            Some(e) => {
                on_end(end(usage, Some(&e)));
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
