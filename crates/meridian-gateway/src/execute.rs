//! Upstream attempts under one deadline: the router's candidates in order,
//! retries on a different candidate, one hedge when the first attempt is
//! slower than its candidate's p95, and never a retry after the first byte
//! has reached the client.
//!
//! An attempt is "answered" when its whole body is in (non-streaming) or its
//! first whole event is (streaming); until then it can be retried or raced
//! invisibly. The first answered attempt wins; the others are cancelled.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderName, HeaderValue};
use meridian_router::Candidate;
use meridian_router::backoff::Backoff;
use meridian_router::health::Verdict;
use meridian_upstream::{Call, Failure, Outcome, OutcomeClass, Response as Upstream};
use meridian_wire::eventstream::FrameSplitter;
use meridian_wire::{BedrockError, ErrorKind};
use serde::Serialize;
use tokio::time::Instant;

use crate::state::AppState;

/// One request's plan, ready to execute.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the client asked for.
    pub requested: String,
    /// The residency policy that produced the candidates, by name.
    pub policy: String,
    /// Regions that policy allows, for error messages ("anywhere" when unrestricted).
    pub policy_regions: String,
    /// Candidates in the order to try them.
    pub candidates: Vec<Candidate>,
    /// Strategy name, for the decision record.
    pub strategy: &'static str,
    /// Bedrock action (`converse`, `invoke-with-response-stream`, …).
    pub action: &'static str,
    /// Request body sent to every attempt unchanged.
    pub body: Bytes,
    /// Request headers forwarded upstream.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the answer is an event stream.
    pub streaming: bool,
    /// Tokens reserved per attempt (input estimate + max tokens).
    pub tokens: u64,
    /// When the request arrived.
    pub started: Instant,
    /// When the whole request must be done.
    pub deadline: Instant,
    /// The deadline as configured or asked for, ms.
    pub deadline_ms: u64,
    /// Whether a slow first attempt may be hedged.
    pub hedging: bool,
    /// Most attempts, hedges included.
    pub max_attempts: usize,
}

/// One attempt in the decision record.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// Account called.
    pub account: String,
    /// Region called.
    pub region: String,
    /// Model ID sent.
    pub model_id: String,
    /// `first`, `retry`, `hedge` or `fallback`.
    pub reason: &'static str,
    /// Milliseconds after the request started.
    pub start_ms: u64,
    /// How long it ran, ms.
    pub elapsed_ms: u64,
    /// `success`, an outcome label, `slow` (lost to a hedge started after
    /// it), or `cancelled`.
    pub outcome: &'static str,
}

/// How a request was routed: what could be called, what was, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Strategy applied.
    pub strategy: &'static str,
    /// Residency policy name.
    pub policy: String,
    /// Candidate keys (account|region|model ID) in the order considered.
    pub candidates: Vec<String>,
    /// Attempts in start order.
    pub attempts: Vec<AttemptRecord>,
    /// Index into `attempts` of the one that answered.
    pub served_by: Option<usize>,
    /// Whether a hedge was sent.
    pub hedged: bool,
    /// Why the request ended without an answer, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gave_up: Option<String>,
}

impl Decision {
    /// A compact summary for the `x-meridian-route` header:
    /// `reason:region:outcome` per attempt, comma-separated.
    pub fn summary(&self) -> String {
        self.attempts
            .iter()
            .map(|a| format!("{}:{}:{}", a.reason, a.region, a.outcome))
            .collect::<Vec<_>>()
            .join(",")
    }
}

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
    Call {
        region: c.target.endpoint_region.clone(),
        model_id: c.target.model_id.clone(),
        action: plan.action,
        body: plan.body.clone(),
        headers: plan.headers.clone(),
    }
}

fn verdict(f: &Failure) -> Verdict {
    match f.outcome.class() {
        OutcomeClass::Success => Verdict::Healthy,
        OutcomeClass::Retryable => Verdict::Unhealthy,
        OutcomeClass::Fatal => Verdict::Neutral,
    }
}

/// One attempt, to its answer.
async fn attempt(state: &AppState, c: &Candidate, plan: &Plan) -> Result<Answer, Failure> {
    let client = state.client(&c.account).ok_or_else(|| Failure {
        outcome: Outcome::Unavailable { status: 500 },
        error: BedrockError::new(
            ErrorKind::InternalServer,
            format!("no upstream account named '{}'", c.account),
        ),
    })?;
    let mut upstream = client.call(&call_for(c, plan)).await?;
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

/// State of one request's attempts.
struct Run<'a> {
    state: &'a AppState,
    plan: &'a Plan,
    started: Instant,
    next: usize,
    wrapped: bool,
    decision: Decision,
    /// (candidate index, attempt record index, started) of attempts in flight.
    in_flight: Vec<(usize, usize, Instant)>,
    /// Regions whose endpoint could not be reached during this request:
    /// other accounts' candidates there are passed over too.
    unreachable: Vec<String>,
    last: Option<Failure>,
}

impl Run<'_> {
    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The next candidate whose breaker lets it be tried, in plan order. The
    /// first attempt tries the first candidate even when every breaker is
    /// open, rather than failing untried.
    fn pick(&mut self) -> Option<usize> {
        let cands = &self.plan.candidates;
        while self.next < cands.len() {
            let i = self.next;
            self.next += 1;
            if self.unreachable.contains(&cands[i].target.endpoint_region) {
                continue;
            }
            if self.state.router.health.try_acquire(&cands[i].key()) {
                return Some(i);
            }
        }
        (self.decision.attempts.is_empty() && !cands.is_empty()).then_some(0)
    }

    fn finish(&mut self, rec: usize, outcome: &'static str) {
        let now_ms = self.ms(Instant::now());
        if let Some(a) = self.decision.attempts.get_mut(rec) {
            a.elapsed_ms = now_ms.saturating_sub(a.start_ms);
            a.outcome = outcome;
        }
    }

    /// Ends the request: cancels what is still in flight. With the start of
    /// the attempt that answered, attempts started before it lost to it and
    /// are convicted as slow: slow compared with another candidate, not just
    /// slow (a pause of the whole gateway slows both and convicts neither).
    fn cancel_rest(&mut self, winner_began: Option<u64>) {
        let router = &self.state.router;
        for (i, rec, since) in std::mem::take(&mut self.in_flight) {
            let c = &self.plan.candidates[i];
            let lost = winner_began.is_some_and(|w| self.decision.attempts[rec].start_ms < w);
            if lost {
                router.health.record(&c.key(), Verdict::Slow);
                router.slow(c, since.elapsed());
            }
            router.health.record(&c.key(), Verdict::Neutral);
            if self.decision.attempts[rec].outcome == "running" {
                self.finish(rec, if lost { "slow" } else { "cancelled" });
            }
        }
    }
}

/// Runs a request's attempts to the first answer, or gives up.
async fn run(state: &AppState, plan: &Plan) -> Result<(Served, Answer), Exhausted> {
    let router = &state.router;
    router.health.request_started();
    let mut r = Run {
        state,
        plan,
        started: Instant::now(),
        next: 0,
        wrapped: false,
        decision: Decision {
            strategy: plan.strategy,
            policy: plan.policy.clone(),
            candidates: plan.candidates.iter().map(Candidate::key).collect(),
            attempts: Vec::new(),
            served_by: None,
            hedged: false,
            gave_up: None,
        },
        in_flight: Vec::new(),
        unreachable: Vec::new(),
        last: None,
    };
    let mut pending = FuturesUnordered::new();
    let mut hedge_at: Option<Instant> = None;
    let max = plan.max_attempts.max(1);
    let gave_up = loop {
        if pending.is_empty() {
            if r.decision.attempts.len() >= max {
                break "every allowed attempt failed".to_string();
            }
            let mut pick = r.pick();
            if pick.is_none() && !r.wrapped && !plan.candidates.is_empty() {
                // Every candidate was tried: once more from the top, after a backoff.
                r.wrapped = true;
                r.next = 0;
                let attempt = r.decision.attempts.len() as u32;
                match Backoff::default().delay(
                    attempt,
                    router.draw(),
                    Instant::now(),
                    plan.deadline,
                ) {
                    Some(d) => tokio::time::sleep(d).await,
                    None => break "the deadline leaves no time for another attempt".into(),
                }
                pick = r.pick();
            }
            let Some(i) = pick else {
                break "no candidate is available".into();
            };
            let first_choice = r.decision.attempts.is_empty();
            if !first_choice && !router.health.try_retry() {
                router
                    .health
                    .record(&plan.candidates[i].key(), Verdict::Neutral);
                break "the fleet-wide retry budget is spent".into();
            }
            let reason = if first_choice {
                "first"
            } else if plan
                .candidates
                .first()
                .is_some_and(|f| f.model != plan.candidates[i].model)
            {
                "fallback"
            } else {
                "retry"
            };
            launch(&mut r, &mut pending, i, reason);
            hedge_at = match (first_choice && plan.hedging, plan.candidates.get(i)) {
                (true, Some(c)) => router
                    .hedge_delay(c, plan.streaming)
                    .map(|d| Instant::now() + d),
                _ => None,
            };
        }
        tokio::select! {
            Some((i, rec, res)) = pending.next() => {
                r.in_flight.retain(|(_, x, _)| *x != rec);
                let c = &plan.candidates[i];
                let began = r.decision.attempts[rec].start_ms;
                let took = Duration::from_millis(r.ms(Instant::now()).saturating_sub(began));
                match res {
                    Ok(answer) => {
                        router.health.record(&c.key(), Verdict::Healthy);
                        router.observe(c, plan.streaming, took);
                        r.finish(rec, "success");
                        r.decision.served_by = Some(rec);
                        r.cancel_rest(Some(began));
                        let served = Served {
                            status: answer.status,
                            headers: answer.headers.clone(),
                            candidate: c.clone(),
                            attempts: r.decision.attempts.len(),
                            decision: r.decision,
                        };
                        return Ok((served, answer));
                    }
                    Err(f) => {
                        tracing::debug!(region = %c.target.endpoint_region, outcome = f.outcome.label(), "attempt failed");
                        router.health.record(&c.key(), verdict(&f));
                        if let Outcome::Throttled { retry_after } = f.outcome {
                            router.throttled(c, retry_after);
                        }
                        r.finish(rec, f.outcome.label());
                        if matches!(f.outcome, Outcome::ConnectionRefused | Outcome::TimeoutBeforeFirstByte) {
                            r.unreachable.push(c.target.endpoint_region.clone());
                        }
                        let fatal = f.outcome.class() == OutcomeClass::Fatal;
                        r.last = Some(f);
                        if fatal {
                            break "the request itself was refused".into();
                        }
                    }
                }
            }
            () = sleep_until_opt(hedge_at), if hedge_at.is_some() => {
                hedge_at = None;
                if !r.in_flight.is_empty()
                    && r.decision.attempts.len() < max
                    && let Some(i) = r.pick()
                {
                    if router.health.try_retry() {
                        r.decision.hedged = true;
                        launch(&mut r, &mut pending, i, "hedge");
                    } else {
                        router.health.record(&plan.candidates[i].key(), Verdict::Neutral);
                    }
                }
            }
            () = tokio::time::sleep_until(plan.deadline) => {
                break format!("the {} ms deadline passed", plan.deadline_ms);
            }
        }
    };
    for (i, _, since) in r.in_flight.clone() {
        // Still running at the deadline: as good as down for this request.
        let c = &plan.candidates[i];
        router.slow(c, since.elapsed());
    }
    r.cancel_rest(None);
    r.decision.gave_up = Some(gave_up.clone());
    let attempts = r.decision.attempts.len();
    let failure = give_up_failure(plan, r.last.take(), &gave_up);
    Err(Exhausted {
        failure,
        attempts,
        decision: r.decision,
    })
}

type Pending<'a> = FuturesUnordered<
    std::pin::Pin<Box<dyn Future<Output = (usize, usize, Result<Answer, Failure>)> + Send + 'a>>,
>;

fn launch<'a>(r: &mut Run<'a>, pending: &mut Pending<'a>, i: usize, reason: &'static str) {
    let (state, plan) = (r.state, r.plan);
    let c = &plan.candidates[i];
    let now = Instant::now();
    let rec = r.decision.attempts.len();
    r.decision.attempts.push(AttemptRecord {
        account: c.account.clone(),
        region: c.target.endpoint_region.clone(),
        model_id: c.target.model_id.clone(),
        reason,
        start_ms: r.ms(now),
        elapsed_ms: 0,
        outcome: "running",
    });
    r.in_flight.push((i, rec, now));
    let guard = state.router.start(c, plan.tokens);
    pending.push(Box::pin(async move {
        let res = attempt(state, c, plan).await;
        drop(guard);
        (i, rec, res)
    }));
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
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
    pub usage: crate::account::Usage,
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
        let mut usage = crate::account::StreamUsage::default();
        let see = |frame: &Bytes, usage: &mut crate::account::StreamUsage| {
            if let Ok(f) = meridian_wire::eventstream::decode_one(frame)
                && let meridian_wire::eventstream::FrameKind::Event(kind) = &f.kind
            {
                usage.see(kind, &f.payload);
            }
        };
        see(&first, &mut usage);
        // The first event goes out at once (time to first token); after it,
        // one event is held back so the stream's end is accounted for (and
        // logged) before the client receives its last event.
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut held: Option<Bytes> = None;
        let end = |usage: crate::account::StreamUsage, error: Option<&BedrockError>| StreamEnd {
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
            see(&next, &mut usage);
            let Some(prev) = held.replace(next) else {
                continue;
            };
            if tx.send(Ok(prev)).await.is_err() {
                on_end(end(
                    usage,
                    Some(&BedrockError::new(
                        ErrorKind::ModelStreamError,
                        "client went away",
                    )),
                ));
                return;
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

/// Headers copied from the upstream response.
pub fn passthrough_response_headers(served: &Served, resp: &mut Response) {
    for (k, v) in &served.headers {
        let name = k.as_str();
        if name == "content-type" || name.starts_with("x-amzn-bedrock-") {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
    }
}
