//! Upstream attempts: the next allowed target on a retryable failure, never
//! after the first byte has reached the client.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use meridian_catalog::Target;
use meridian_router::health::Verdict;
use meridian_upstream::{Call, Failure, OutcomeClass, Response as Upstream};
use meridian_wire::eventstream::FrameSplitter;
use meridian_wire::{BedrockError, ErrorKind};

use crate::state::AppState;

/// One request's plan, ready to execute.
pub struct Plan<'a> {
    pub targets: &'a [Target],
    pub action: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A successful attempt's head.
pub struct Served {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub target: Target,
    pub attempts: usize,
}

/// The request failed on every attempt it was allowed.
pub struct Exhausted {
    pub failure: Failure,
    pub attempts: usize,
}

fn call_for(target: &Target, plan: &Plan<'_>) -> Call {
    Call {
        region: target.endpoint_region.clone(),
        model_id: target.model_id.clone(),
        action: plan.action,
        body: plan.body.clone(),
        headers: plan.headers.clone(),
    }
}

/// Breaker key of a target: where it is called and what is sent.
fn key(t: &Target) -> String {
    format!("{}|{}", t.endpoint_region, t.model_id)
}

fn verdict(f: &Failure) -> Verdict {
    match f.outcome.class() {
        OutcomeClass::Success => Verdict::Healthy,
        OutcomeClass::Retryable => Verdict::Unhealthy,
        OutcomeClass::Fatal => Verdict::Neutral,
    }
}

/// Where a request is in its list of targets.
#[derive(Default)]
struct Cursor {
    next: usize,
    attempts: usize,
    last: Option<Failure>,
    fatal: bool,
}

impl Cursor {
    fn exhausted(self) -> Exhausted {
        Exhausted {
            failure: self.last.unwrap_or_else(no_target),
            attempts: self.attempts,
        }
    }
}

/// The next target that answers with a response head. Targets whose breaker
/// is open are skipped; retries come out of the fleet-wide budget; a caller
/// error ends the search. If breakers skip every target before any attempt,
/// the first one is tried anyway rather than failing untried.
async fn next_head(
    state: &AppState,
    plan: &Plan<'_>,
    cur: &mut Cursor,
) -> Option<(Served, Upstream)> {
    let max = state.max_attempts.max(1);
    while !cur.fatal && cur.attempts < max {
        let untried_fallback =
            cur.next >= plan.targets.len() && cur.attempts == 0 && !plan.targets.is_empty();
        let target = if untried_fallback {
            &plan.targets[0]
        } else {
            let t = plan.targets.get(cur.next)?;
            cur.next += 1;
            if !state.health.try_acquire(&key(t)) {
                tracing::debug!(region = %t.endpoint_region, "breaker open; skipping");
                continue;
            }
            t
        };
        if cur.attempts > 0 && !state.health.try_retry() {
            tracing::warn!("retry budget exhausted");
            return None;
        }
        cur.attempts += 1;
        match state.upstream.call(&call_for(target, plan)).await {
            Ok(upstream) => {
                state.health.record(&key(target), Verdict::Healthy);
                let served = Served {
                    status: upstream.status,
                    headers: upstream.headers.clone(),
                    target: target.clone(),
                    attempts: cur.attempts,
                };
                return Some((served, upstream));
            }
            Err(f) => {
                tracing::debug!(region = %target.endpoint_region, outcome = f.outcome.label(), "attempt failed");
                state.health.record(&key(target), verdict(&f));
                cur.fatal = f.outcome.class() == OutcomeClass::Fatal;
                cur.last = Some(f);
                if untried_fallback {
                    return None;
                }
            }
        }
    }
    None
}

fn no_target() -> Failure {
    Failure {
        outcome: meridian_upstream::Outcome::Unavailable { status: 503 },
        error: BedrockError::new(ErrorKind::ServiceUnavailable, "no target to try"),
    }
}

/// Non-streaming: the whole body, retrying elsewhere when it breaks off.
pub async fn unary(state: &AppState, plan: &Plan<'_>) -> Result<(Served, Bytes), Exhausted> {
    state.health.request_started();
    let mut cur = Cursor::default();
    loop {
        let Some((mut served, upstream)) = next_head(state, plan, &mut cur).await else {
            return Err(cur.exhausted());
        };
        match upstream.collect().await {
            Ok(body) => {
                served.attempts = cur.attempts;
                return Ok((served, body));
            }
            Err(f) => {
                state.health.record(&key(&served.target), verdict(&f));
                cur.last = Some(f);
            }
        }
    }
}

/// Streaming: waits for the first whole frame before answering, so a failure
/// before it is retried invisibly; afterwards frames are forwarded as they
/// arrive and a failure ends the stream with an exception frame.
pub async fn streaming(state: &AppState, plan: &Plan<'_>) -> Result<(Served, Frames), Exhausted> {
    state.health.request_started();
    let mut cur = Cursor::default();
    loop {
        let Some((mut served, mut upstream)) = next_head(state, plan, &mut cur).await else {
            return Err(cur.exhausted());
        };
        let mut splitter = FrameSplitter::new();
        match first_frame(&mut upstream, &mut splitter).await {
            Ok(first) => {
                served.attempts = cur.attempts;
                return Ok((served, forward(first, upstream, splitter)));
            }
            Err(f) => {
                state.health.record(&key(&served.target), verdict(&f));
                cur.last = Some(f);
            }
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
                    outcome: meridian_upstream::Outcome::ConnectionReset,
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
        outcome: meridian_upstream::Outcome::ConnectionReset,
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

fn forward(first: Bytes, mut upstream: Upstream, mut splitter: FrameSplitter) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BedrockError>>(32);
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            loop {
                match splitter.next_frame() {
                    Ok(Some(frame)) => {
                        if tx.send(Ok(frame)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(bad_frames(e).error)).await;
                        return;
                    }
                }
            }
            match upstream.next_chunk().await {
                Ok(Some(chunk)) => splitter.push(&chunk),
                Ok(None) => {
                    if splitter.pending() > 0 {
                        let e = BedrockError::new(
                            ErrorKind::ModelStreamError,
                            "the upstream stream ended in the middle of an event",
                        );
                        let _ = tx.send(Err(e)).await;
                    }
                    return;
                }
                Err(f) => {
                    tracing::warn!(
                        outcome = f.outcome.label(),
                        "stream failed after the first byte"
                    );
                    let _ = tx.send(Err(f.error)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// An event-stream body: frames as they are, a failure as one exception frame.
pub fn eventstream_body(frames: Frames) -> Body {
    use tokio_stream::StreamExt;
    let stream = tokio_stream::wrappers::ReceiverStream::new(frames)
        .map(|item| Ok::<_, std::io::Error>(item.unwrap_or_else(|e| e.exception_frame())));
    Body::from_stream(stream)
}

/// Headers copied from the upstream response.
pub fn passthrough_response_headers(served: &Served, resp: &mut Response) {
    for (k, v) in &served.headers {
        let name = k.as_str();
        if name == "content-type" || name.starts_with("x-amzn-bedrock-") {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
    }
}
