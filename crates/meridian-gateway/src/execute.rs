//! Upstream attempts: the next allowed target on a retryable failure, never
//! after the first byte has reached the client.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use meridian_catalog::Target;
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

/// Tries targets in order until one answers with a response head.
async fn first_head(state: &AppState, plan: &Plan<'_>) -> Result<(Served, Upstream), Exhausted> {
    let mut last = None;
    let mut attempts = 0;
    for target in plan.targets.iter().take(state.max_attempts.max(1)) {
        attempts += 1;
        match state.upstream.call(&call_for(target, plan)).await {
            Ok(upstream) => {
                let served = Served {
                    status: upstream.status,
                    headers: upstream.headers.clone(),
                    target: target.clone(),
                    attempts,
                };
                return Ok((served, upstream));
            }
            Err(f) => {
                tracing::debug!(region = %target.endpoint_region, outcome = f.outcome.label(), "attempt failed");
                let fatal = f.outcome.class() == OutcomeClass::Fatal;
                last = Some(f);
                if fatal {
                    break;
                }
            }
        }
    }
    Err(Exhausted {
        failure: last.unwrap_or_else(no_target),
        attempts,
    })
}

fn no_target() -> Failure {
    Failure {
        outcome: meridian_upstream::Outcome::Unavailable { status: 503 },
        error: BedrockError::new(ErrorKind::ServiceUnavailable, "no target to try"),
    }
}

/// Non-streaming: the whole body, retrying elsewhere when it breaks off.
pub async fn unary(state: &AppState, plan: &Plan<'_>) -> Result<(Served, Bytes), Exhausted> {
    let mut offset = 0;
    let mut attempts = 0;
    loop {
        let rest = Plan {
            targets: &plan.targets[offset..],
            action: plan.action,
            body: plan.body.clone(),
            headers: plan.headers.clone(),
        };
        let (mut served, upstream) = first_head(state, &rest).await.map_err(|mut e| {
            e.attempts += attempts;
            e
        })?;
        let used = served.attempts;
        match upstream.collect().await {
            Ok(body) => {
                served.attempts = attempts + used;
                return Ok((served, body));
            }
            Err(f) => {
                attempts += used;
                offset += used;
                if offset >= plan.targets.len() || attempts >= state.max_attempts {
                    return Err(Exhausted {
                        failure: f,
                        attempts,
                    });
                }
            }
        }
    }
}

/// Streaming: waits for the first whole frame before answering, so a failure
/// before it is retried invisibly; afterwards frames are forwarded as they
/// arrive and a failure ends the stream with an exception frame.
pub async fn streaming(state: &AppState, plan: &Plan<'_>) -> Result<(Served, Frames), Exhausted> {
    let mut offset = 0;
    let mut attempts = 0;
    loop {
        let rest = Plan {
            targets: &plan.targets[offset..],
            action: plan.action,
            body: plan.body.clone(),
            headers: plan.headers.clone(),
        };
        let (mut served, mut upstream) = first_head(state, &rest).await.map_err(|mut e| {
            e.attempts += attempts;
            e
        })?;
        let used = served.attempts;
        let mut splitter = FrameSplitter::new();
        match first_frame(&mut upstream, &mut splitter).await {
            Ok(first) => {
                served.attempts = attempts + used;
                return Ok((served, forward(first, upstream, splitter)));
            }
            Err(f) => {
                attempts += used;
                offset += used;
                if offset >= plan.targets.len() || attempts >= state.max_attempts {
                    return Err(Exhausted {
                        failure: f,
                        attempts,
                    });
                }
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
