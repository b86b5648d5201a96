//! The plan stage: what a request may be sent to, in what order, under what
//! deadline. Candidates come only from the catalog's resolution under the
//! request's residency policy (fallback models are resolved under that same
//! policy), multiplied by the accounts allowed in each called region; the
//! router then orders them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use meridian_catalog::Policy;
use meridian_config::{AccountMode, Strategy};
use meridian_router::route::fnv_bytes;
use meridian_router::{Candidate, Order};
use meridian_wire::{BedrockError, converse};
use serde_json::Value;
use tokio::time::Instant;

use crate::bedrock::plan_error;
use crate::execute::Plan;
use crate::state::AppState;

/// Request header: the caller's region, for the `geo` strategy.
pub const CALLER_REGION_HEADER: &str = "x-meridian-caller-region";
/// Request header: a deadline in milliseconds, shorter than the configured one.
pub const DEADLINE_HEADER: &str = "x-meridian-deadline-ms";

/// Tokens reserved when a request does not say how many it may generate.
const DEFAULT_MAX_TOKENS: u64 = 1024;
/// Bytes of the prompt hashed for prompt-cache affinity.
const AFFINITY_PREFIX: usize = 2048;

/// What the plan stage needs from a request.
#[derive(Debug)]
pub struct Ask<'a> {
    /// Model name, ID or ARN as the client sent it.
    pub requested: &'a str,
    /// A narrowing policy from `x-meridian-residency`.
    pub narrow: Option<&'a Policy>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Body sent upstream.
    pub body: Bytes,
    /// The body as JSON, when it is.
    pub json: Option<&'a Value>,
    /// Bedrock action.
    pub action: &'static str,
    /// Whether the answer streams.
    pub streaming: bool,
    /// Headers forwarded upstream.
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// When the request arrived.
    pub started: Instant,
}

/// Builds a request's plan.
pub fn build(state: &AppState, ask: Ask<'_>) -> Result<Plan, BedrockError> {
    let resolution = state
        .resolve(ask.requested, ask.narrow)
        .map_err(plan_error)?;
    let exposed = state.config.model(ask.requested);
    let routing = &state.config.routing;
    let mut models = vec![(ask.requested.to_string(), resolution.targets.clone())];
    for f in exposed.map(|m| m.fallback.as_slice()).unwrap_or_default() {
        // Under the requested model's policy as well as the fallback's own.
        match state
            .config
            .resolve(&state.catalog, f, &state.region, Some(&resolution.policy))
        {
            Ok(r) => models.push((f.clone(), r.targets)),
            Err(e) => tracing::debug!(fallback = %f, error = %e, "fallback has no target"),
        }
    }
    let accounts = state.accounts.len().max(1);
    let mut candidates = Vec::new();
    for (m, (model, targets)) in models.into_iter().enumerate() {
        for t in targets {
            for (a, acct) in state.accounts.iter().enumerate() {
                if !acct.regions.is_empty() && !acct.regions.contains(&t.endpoint_region) {
                    continue;
                }
                let tier = match routing.accounts {
                    AccountMode::Tiered => a,
                    AccountMode::Pooled => 0,
                };
                candidates.push(Candidate {
                    account: acct.name.clone(),
                    tier: m * accounts + tier,
                    model: model.clone(),
                    target: t.clone(),
                });
            }
        }
    }
    let strategy = exposed.map_or(&Strategy::Priority, |m| &m.strategy);
    let order = match strategy {
        Strategy::Priority => Order::Priority,
        Strategy::Latency => Order::Latency,
        Strategy::Weighted(w) => Order::Weighted(w.clone()),
        Strategy::Geo => Order::Geo(distances(state, ask.headers, &candidates)?),
    };
    let tokens = tokens(ask.json, &ask.body);
    let affinity = exposed
        .filter(|m| m.prompt_cache_affinity)
        .and(ask.json)
        .map(prompt_hash);
    let sorted = state.router.order(&candidates, &order, tokens, affinity);
    let candidates: Vec<Candidate> = sorted.into_iter().map(|i| candidates[i].clone()).collect();
    let deadline_ms = deadline_ms(ask.headers, routing.deadline_ms)?;
    let policy = &resolution.policy;
    let policy_regions = match &policy.allow {
        None if policy.exclude.is_empty() => "anywhere".to_string(),
        None => format!(
            "anywhere but {}",
            policy
                .exclude
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(allow) => allow
            .iter()
            .filter(|r| !policy.exclude.contains(*r))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    };
    Ok(Plan {
        requested: ask.requested.to_string(),
        policy: policy.name.clone(),
        policy_regions,
        candidates,
        strategy: strategy.name(),
        action: ask.action,
        body: ask.body,
        headers: ask.forward,
        streaming: ask.streaming,
        tokens,
        started: ask.started,
        deadline: ask.started + Duration::from_millis(deadline_ms),
        deadline_ms,
        hedging: exposed.and_then(|m| m.hedging).unwrap_or(routing.hedging),
        max_attempts: state.max_attempts,
    })
}

/// Distance from the caller's region to each candidate's called region.
fn distances(
    state: &AppState,
    headers: &HeaderMap,
    candidates: &[Candidate],
) -> Result<Vec<f64>, BedrockError> {
    let caller = match headers.get(CALLER_REGION_HEADER) {
        Some(v) => v
            .to_str()
            .map_err(|_| BedrockError::validation("x-meridian-caller-region must be ASCII"))?
            .trim()
            .to_string(),
        None => state
            .config
            .routing
            .caller_region
            .clone()
            .unwrap_or_else(|| state.region.clone()),
    };
    let Some(from) = state.catalog.region(&caller) else {
        return Err(BedrockError::validation(format!(
            "x-meridian-caller-region: '{caller}' is not a region code Meridian knows"
        )));
    };
    Ok(candidates
        .iter()
        .map(|c| {
            state
                .catalog
                .region(&c.target.endpoint_region)
                .map_or(f64::MAX, |to| from.distance_km(to))
        })
        .collect())
}

/// The configured deadline, shortened by `x-meridian-deadline-ms` (never lengthened).
fn deadline_ms(headers: &HeaderMap, configured: u64) -> Result<u64, BedrockError> {
    let Some(v) = headers.get(DEADLINE_HEADER) else {
        return Ok(configured);
    };
    let ms = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            BedrockError::validation(
                "x-meridian-deadline-ms must be a positive whole number of milliseconds",
            )
        })?;
    Ok(ms.min(configured))
}

/// Tokens Bedrock reserves for a request: input estimate plus the most it may generate.
fn tokens(json: Option<&Value>, body: &Bytes) -> u64 {
    let Some(v) = json else {
        return (body.len() as u64).div_ceil(4) + DEFAULT_MAX_TOKENS;
    };
    let max = converse::max_tokens(v)
        .or_else(|| {
            ["max_tokens", "max_gen_len", "maxTokens"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_u64))
        })
        .or_else(|| {
            v.pointer("/textGenerationConfig/maxTokenCount")
                .and_then(Value::as_u64)
        })
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let input = if v.get("messages").is_some() {
        converse::estimate_input_tokens(v)
    } else {
        (body.len() as u64).div_ceil(4)
    };
    input + max
}

/// A hash of the prompt's beginning (system prompt, then messages).
fn prompt_hash(v: &Value) -> u64 {
    let mut prefix = Vec::with_capacity(AFFINITY_PREFIX);
    for t in converse::texts(v) {
        prefix.extend_from_slice(t.as_bytes());
        prefix.push(0);
        if prefix.len() >= AFFINITY_PREFIX {
            break;
        }
    }
    prefix.truncate(AFFINITY_PREFIX);
    fnv_bytes(&prefix)
}
