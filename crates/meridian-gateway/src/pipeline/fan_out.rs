//! Fan-out, inside the answer stage: a call with several bodies — an
//! embeddings request with several inputs, for a model that embeds one per
//! call — runs each body under the one plan, deadline and claim. The
//! answers are one JSON array, in input order, and the usage their sum; the
//! first body that fails fails the request (nothing is half-answered). The
//! front door splits the request into bodies when it decodes and reads the
//! array when it encodes; the stages between see one call.

use bytes::Bytes;

use crate::execute;
use crate::plan::Plan;
use crate::state::AppState;
use crate::usage::unary_usage;

/// A unary request's calls: `plan.body`, then each of `plan.more` under the
/// same plan and deadline. With more than one, the answers are one JSON
/// array and the usage their sum; the first call that fails fails the request.
pub(super) async fn execute_each(
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
    Ok((served, Bytes::from(joined), usage))
}
