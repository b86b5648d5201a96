//! The answer stage: execute every call of the plan (or replay a cache hit),
//! guard the output, account, log and settle, encode — for a stream, when
//! the stream ends.

use axum::response::Response;
use bytes::Bytes;

use http::HeaderValue;

use super::cache_stage::{self, Lookup};
use super::fan_out;
use super::{FrontDoor, Refusal, RequestCtx, refuse};
use crate::account::{Finished, Ledger};
use crate::execute::{self, Served};
use crate::limits::Claim;
use crate::plan::Plan;
use crate::respond;
use crate::state::AppState;
use crate::summary;
use crate::usage::unary_usage;

/// answer: execute (or replay a cache hit); then guard output, account,
/// log and settle, and encode — at the end of the stream for a stream.
/// `held` (the admission permit and the tenant's slot) is released then.
pub(super) async fn answer<F: FrontDoor>(
    cx: &mut RequestCtx<'_>,
    plan: Plan,
    lookup: Lookup,
    guard: Option<crate::guard::Session>,
    door: F::Ctx,
    claim: Claim,
    held: impl Send + 'static,
) -> Response {
    let state = cx.state.clone();
    let (hit, store) = match lookup {
        Lookup::Hit(served, body) => (Some((*served, body)), None),
        Lookup::Miss(store) => (None, store),
    };
    let cached = hit.is_some();
    let mut resp = if plan.streaming {
        let on_end = summary::at_stream_end(cx.summary.hand_off(), plan.placement(), claim, held);
        let guard = guard.map(crate::guard::stream::StreamGuard::new);
        let answered = match hit {
            Some((served, body)) => {
                let (events, end) = execute::replay(body, guard, None);
                on_end(end, &served);
                Ok((served, events))
            }
            None => {
                let keep = store.map(|(key, ttl)| cache_stage::keeper(state.clone(), key, ttl));
                execute::streaming(&state, &plan, guard, keep, on_end).await
            }
        };
        match answered {
            Ok((served, events)) => {
                let mut resp = F::stream(door, &served, events);
                respond::served_headers(&mut resp, &cx.summary.request_id, &served);
                resp
            }
            Err(ex) => exhausted::<F>(&state, &cx.summary, &plan, &ex),
        }
    } else {
        let answered = match hit {
            // A hit costs nothing upstream: no tokens are charged (the
            // answer still reports what it counted).
            Some((served, body)) => {
                let reported = unary_usage(&served.headers, &body);
                Ok((served, body, crate::usage::Usage::default(), reported))
            }
            None => fan_out::execute_each(&state, &plan)
                .await
                .map(|(served, body, usage)| (served, body, usage, usage)),
        };
        match answered {
            Ok((served, body, usage, reported)) => {
                if let Some((key, ttl)) = store
                    && served.status == http::StatusCode::OK
                    && body.len() <= crate::cache::MAX_ENTRY_BYTES
                {
                    // Kept before the answer goes out, so a repeat sent
                    // once it has arrived (to any replica) finds it.
                    let entry = cache_stage::entry_of(&served, &body);
                    state
                        .cache
                        .put(state.limiter.shared(), key, entry, ttl)
                        .await;
                }
                let got = Got {
                    served: &served,
                    body,
                    usage,
                    reported,
                };
                let mut guard = guard;
                let resp = unary_answer::<F>(
                    &state,
                    &mut cx.summary,
                    &plan,
                    got,
                    guard.as_mut(),
                    door,
                    claim,
                );
                drop(held);
                resp
            }
            // The claim is settled with nothing when it drops.
            Err(ex) => exhausted::<F>(&state, &cx.summary, &plan, &ex),
        }
    };
    if cached {
        resp.headers_mut()
            .insert(crate::cache::HEADER, HeaderValue::from_static("hit"));
    }
    resp
}

/// A whole answer, as the upstream (or the cache) gave it.
pub(super) struct Got<'a> {
    pub(super) served: &'a Served,
    pub(super) body: Bytes,
    /// What is charged.
    pub(super) usage: crate::usage::Usage,
    /// What the answer counted (a cache hit's too), for the front door.
    pub(super) reported: crate::usage::Usage,
}

/// Guard output, account, log and settle, encode: a whole answer.
pub(super) fn unary_answer<F: FrontDoor>(
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
        reported,
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
    let mut done = Finished::served(ledger, plan.placement(), served, usage, None);
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
        None => F::unary(ctx, served, body, &reported),
    };
    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => F::error(&ledger.request_id, &e),
    };
    respond::served_headers(&mut resp, &ledger.request_id, served);
    resp
}

pub(super) fn exhausted<F: FrontDoor>(
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
