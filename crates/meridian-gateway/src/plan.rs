//! The plan stage: what a request may be sent to, in what order, under what
//! deadline. Candidates come only from the catalog's resolution under the
//! request's residency policy (fallback models are resolved under that same
//! policy), multiplied by the accounts allowed in each called region; the
//! router then orders them.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use meridian_catalog::resolve::Resolution;
use meridian_catalog::resolve::ResolveError;
use meridian_catalog::{Policy, ServiceTier, Target, TargetKind};
use meridian_config::Strategy;
use meridian_router::route::fnv_bytes;
use meridian_router::{Candidate, Order, Surface};
use meridian_wire::Action;
use meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION;
use meridian_wire::{BedrockError, ErrorKind, converse};
use serde_json::Value;
use tokio::time::Instant;

use crate::canonical::Call;
use crate::state::AppState;

/// Request header that narrows the residency policy (comma-separated terms).
pub const RESIDENCY_HEADER: &str = "x-meridian-residency";

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
    /// The Bedrock Runtime call each attempt makes.
    pub action: Action,
    /// Request body sent to every attempt unchanged (but for its service tier).
    pub body: Bytes,
    /// The body with `serviceTier` set, per tier Meridian asks for
    /// (Converse actions only; InvokeModel carries the tier in a header).
    pub tier_bodies: Vec<(ServiceTier, Bytes)>,
    /// Bodies sent after `body` as their own calls (see `Call::more`).
    pub more: Vec<Bytes>,
    /// Request headers forwarded upstream.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the answer is an event stream.
    pub streaming: bool,
    /// Tokens reserved per attempt (input estimate + max tokens).
    pub tokens: u64,
    /// The input estimate alone: what a stream cut before its usage
    /// arrived is charged for input.
    pub input_tokens: u64,
    /// When the request arrived.
    pub started: Instant,
    /// The request's trace, sent upstream as `X-Amzn-Trace-Id` per attempt.
    pub trace: Option<crate::traces::TraceContext>,
    /// When the whole request must be done.
    pub deadline: Instant,
    /// The deadline as configured or asked for, ms.
    pub deadline_ms: u64,
    /// Whether a slow first attempt may be hedged.
    pub hedging: bool,
    /// Most attempts, hedges included.
    pub max_attempts: usize,
    /// The residency policy itself (model ∩ tenant ∩ header), kept when it
    /// is not the exposed model's start-up policy, or when the response
    /// cache needs it to check an entry's region. See [`Plan::policy_in`].
    pub residency: Option<Policy>,
    /// Bedrock guardrails to apply: (exposed model, called region, guardrail).
    pub guardrails: Vec<(String, String, meridian_config::Guardrail)>,
    /// Mantle's body and headers, made from `body` when a Mantle attempt
    /// first needs them (see [`Plan::mantle`]).
    pub mantle: std::sync::OnceLock<Option<MantleCall>>,
    /// The client's OpenAI request, for Mantle's OpenAI-compatible endpoint.
    pub openai: Option<crate::canonical::OpenAiBody>,
}

/// A Messages body as Mantle takes it, with the headers it moved there.
pub type MantleCall = (Bytes, Vec<(HeaderName, HeaderValue)>);

impl Plan {
    /// Mantle's body (without `anthropic_version` and `anthropic_beta`) and
    /// the headers those become; made once, by the first Mantle attempt, so a
    /// request Mantle never serves does not parse its body again.
    pub fn mantle(&self) -> Option<&MantleCall> {
        self.mantle.get_or_init(|| mantle_call(&self.body)).as_ref()
    }

    /// What accounting needs of this plan once it has run.
    pub fn placement(&self) -> Placement<'_> {
        Placement {
            requested: &self.requested,
            policy: &self.policy,
            residency: self.residency.as_ref(),
            first_region: self
                .candidates
                .first()
                .map(|c| c.target.endpoint_region.as_str()),
        }
    }
}

/// What accounting needs of a plan once it has run: the residency policy
/// it was made under and where it meant to go first.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// What the client asked for (names the start-up policy).
    pub requested: &'a str,
    /// The residency policy's name.
    pub policy: &'a str,
    /// The policy itself, when it is not the start-up one (see [`Plan::residency`]).
    pub residency: Option<&'a Policy>,
    /// The first candidate's region: an answer from elsewhere was rerouted.
    pub first_region: Option<&'a str>,
}

impl<'a> Placement<'a> {
    /// The residency policy this request was planned under.
    pub fn policy_in(&self, state: &'a AppState) -> Option<&'a Policy> {
        self.residency
            .or_else(|| state.planned_policy(self.requested))
    }
}

/// A [`Placement`] of its own: what a stream keeps of its plan until it
/// ends, in place of the whole plan (candidates, bodies, headers).
#[derive(Debug)]
pub struct KeptPlacement {
    policy: Box<str>,
    residency: Option<Box<Policy>>,
    first_region: Option<Box<str>>,
}

impl KeptPlacement {
    /// Keeps what `p` says; the request's name is the ledger's, given back to
    /// [`KeptPlacement::view`].
    pub fn of(p: Placement<'_>) -> KeptPlacement {
        KeptPlacement {
            policy: p.policy.into(),
            residency: p.residency.map(|r| Box::new(r.clone())),
            first_region: p.first_region.map(Into::into),
        }
    }

    /// The placement again, for the request that asked for `requested`.
    pub fn view<'a>(&'a self, requested: &'a str) -> Placement<'a> {
        Placement {
            requested,
            policy: &self.policy,
            residency: self.residency.as_deref(),
            first_region: self.first_region.as_deref(),
        }
    }
}

/// Request header: the caller's region, for the `geo` strategy.
pub const CALLER_REGION_HEADER: &str = "x-meridian-caller-region";
/// Request header: a deadline in milliseconds, shorter than the configured one.
pub const DEADLINE_HEADER: &str = "x-meridian-deadline-ms";

/// Tokens reserved when a request does not say how many it may generate.
const DEFAULT_MAX_TOKENS: u64 = 1024;
/// Bytes of the prompt hashed for prompt-cache affinity.
const AFFINITY_PREFIX: usize = 2048;

/// Builds a request's plan from what the caller asked for and its headers:
/// `x-meridian-residency` (narrows the policy), `x-meridian-deadline-ms`
/// (shortens the deadline) and `x-meridian-caller-region` (for `geo`).
/// `reserve` is what admission reserved ([`reserve`]).
pub fn build(
    state: &AppState,
    call: &Call,
    headers: &HeaderMap,
    tenant_policy: Option<&Policy>,
    reserve: Reserve,
    started: Instant,
) -> Result<Plan, BedrockError> {
    let tokens = reserve.total();
    // The model's policy, narrowed by the tenant's, narrowed by the header's.
    let narrow = request_policy(state, headers, tenant_policy)?;
    let requested = call.requested.as_str();
    let resolved = state.resolve(requested, narrow.as_ref());
    // Nothing inside the policy, or a base ID the catalog does not know (only
    // a guess called in-region): Mantle's lists may know better.
    let ask_mantle = match &resolved {
        Ok(r) => guessed(r),
        Err(e) => matches!(
            e,
            ResolveError::NoTarget { .. } | ResolveError::UnknownModel { .. }
        ),
    };
    let resolution = match ask_mantle
        .then(|| mantle_only(state, call, narrow.as_ref()))
        .flatten()
    {
        Some(m) => Cow::Owned(m),
        None => resolved.map_err(plan_error)?,
    };
    let exposed = state.config.model(requested);
    let routing = &state.config.routing;
    let fallbacks = state.fallbacks(requested, narrow.as_ref(), &resolution.policy);
    let models = std::iter::once((requested, resolution.targets.as_slice()))
        .chain(fallbacks.iter().map(|(m, t)| (m.as_str(), t.as_slice())));
    // The model's service tiers, in order, unless the client named its own.
    let tiers: &[ServiceTier] = match exposed {
        Some(m) if !m.service_tiers.is_empty() && !names_tier(call) => &m.service_tiers,
        _ => &[],
    };
    let per_tier: Vec<Option<ServiceTier>> = if tiers.is_empty() {
        vec![None]
    } else {
        tiers.iter().copied().map(Some).collect()
    };
    // A provider takes only what it can answer in the front door's terms;
    // asked once, and only when a provider is among the targets.
    let provider_serves = std::cell::OnceCell::new();
    let mut candidates = state.candidates(models, &per_tier, || {
        *provider_serves.get_or_init(|| {
            call.json
                .as_ref()
                .is_some_and(|v| meridian_upstream::openai_compat::serves(call.action, v))
        })
    });
    let guardrails = guardrail_stage(state, requested, &mut candidates, &resolution.policy)?;
    let tier_bodies = if call.action.is_converse() {
        tiers
            .iter()
            .filter_map(|t| Some((*t, with_tier(&call.body, *t)?)))
            .collect()
    } else {
        Vec::new()
    };
    let strategy = exposed.map_or(&Strategy::Priority, |m| &m.strategy);
    let order = match strategy {
        Strategy::Priority => Order::Priority,
        Strategy::Latency => Order::Latency,
        Strategy::Weighted(w) => Order::Weighted(w.clone()),
        Strategy::Geo => Order::Geo(distances(state, headers, &candidates)?),
    };
    let affinity = exposed
        .filter(|m| m.prompt_cache_affinity)
        .and(call.json.as_ref())
        .map(prompt_hash);
    let sorted = state.router.order(&candidates, &order, tokens, affinity);
    // Move each candidate into its place instead of cloning it.
    let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    let candidates: Vec<Candidate> = sorted
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect();
    let deadline_ms = deadline_ms(headers, routing.deadline_ms)?;
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
    let candidates = if call.messages && guardrails.is_empty() {
        messages_surfaces(state, candidates, policy)
    } else if call.openai.is_some() && guardrails.is_empty() {
        openai_surfaces(state, candidates)
    } else if call.openai.is_some() {
        // Bedrock guardrails apply on Converse and InvokeModel only.
        let mut candidates = candidates;
        candidates.retain(|c| !c.surface.is_mantle());
        candidates
    } else {
        candidates
    };
    let body = legacy_version(state, call, &candidates).unwrap_or_else(|| call.body.clone());
    Ok(Plan {
        requested: requested.to_string(),
        policy: policy.name.clone(),
        policy_regions,
        candidates,
        strategy: strategy.name(),
        action: call.action,
        body,
        tier_bodies,
        more: call.more.clone(),
        headers: call.forward.clone(),
        streaming: call.streaming,
        tokens,
        input_tokens: reserve.input,
        started,
        deadline: started + Duration::from_millis(deadline_ms),
        deadline_ms,
        hedging: exposed.and_then(|m| m.hedging).unwrap_or(routing.hedging),
        max_attempts: state.max_attempts,
        // The policy itself when it is not the start-up snapshot's (a
        // narrowed one, a raw model ID) or the cache needs it; else it is
        // found by name ([`AppState::planned_policy`]).
        residency: (matches!(resolution, Cow::Owned(_)) || exposed.and_then(|m| m.cache).is_some())
            .then(|| policy.clone()),
        guardrails,
        mantle: std::sync::OnceLock::new(),
        openai: call.openai.clone(),
        trace: None,
    })
}

/// An OpenAI request's Mantle candidates call Mantle's OpenAI-compatible
/// endpoint, which serves the models that are not Claude (Claude is on
/// Mantle's Messages endpoint only, which an OpenAI request does not speak);
/// bedrock-runtime's OpenAI endpoint comes first for the models that have it
/// there (OpenAI's open-weight models), Converse right after it.
fn openai_surfaces(state: &AppState, planned: Vec<Candidate>) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(planned.len() + 2);
    for c in planned {
        let base = c
            .target
            .base_model_id
            .as_deref()
            .unwrap_or(&c.target.model_id);
        match c.surface {
            Surface::MantleMessages => {
                let reachable = state.client(&c.account).is_some_and(|cl| {
                    cl.endpoints()
                        .mantle_url(&c.target.endpoint_region)
                        .is_some()
                });
                if reachable && !base.starts_with("anthropic.") {
                    out.push(c.on(Surface::MantleOpenAi, c.target.clone()));
                }
            }
            Surface::Runtime => {
                let openai = state
                    .catalog
                    .model_by_id(base)
                    .is_some_and(|m| m.provider.eq_ignore_ascii_case("openai"));
                if openai {
                    out.push(c.on(Surface::RuntimeOpenAi, c.target.clone()));
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// An Anthropic Messages request on Bedrock's native Messages surfaces too
/// (runtime and Mantle), for the candidates whose model is served there:
/// a Claude model of the Messages generation (no ARN-versioned ID), compiled
/// or found by a refresh. See [`meridian_router::plan::with_messages_surfaces`].
fn messages_surfaces(state: &AppState, planned: Vec<Candidate>, policy: &Policy) -> Vec<Candidate> {
    let native = |c: &Candidate| {
        let base = c
            .target
            .base_model_id
            .as_deref()
            .unwrap_or(&c.target.model_id);
        state
            .catalog
            .model_by_id(base)
            .is_some_and(|m| m.provider.eq_ignore_ascii_case("anthropic") && !m.arn_versioned)
    };
    // Mantle where the account has an endpoint, for a model Mantle's list
    // there names (once a refresh read it; until then, any).
    let mantle = |account: &str, region: &str, id: &str| {
        state
            .client(account)
            .is_some_and(|c| c.endpoints().mantle_url(region).is_some())
            && state
                .catalog
                .discovered()
                .and_then(|d| d.on_mantle(region, id))
                .unwrap_or(true)
    };
    let mut out = meridian_router::plan::with_messages_surfaces(planned, native, mantle, |r| {
        policy.allows(r)
    });
    // Mantle targets the catalog resolved (a Mantle-only model) need the
    // account's Mantle endpoint too.
    out.retain(|c| {
        c.surface != Surface::MantleMessages
            || mantle(
                &c.account,
                &c.target.endpoint_region,
                c.target
                    .base_model_id
                    .as_deref()
                    .unwrap_or(&c.target.model_id),
            )
    });
    out
}

/// A resolution that only guessed: a base ID the catalog does not know,
/// called and processed in-region (no alias, every target on demand).
fn guessed(r: &Resolution) -> bool {
    r.alias.is_none()
        && !r.targets.is_empty()
        && r.targets.iter().all(|t| t.kind == TargetKind::OnDemand)
}

/// A model only Mantle serves inside the policy — one Mantle lists that
/// Bedrock Runtime does not (Claude Mythos preview), or a policy narrower
/// than every profile of the model — for an Anthropic Messages request: a
/// Mantle target in each region the policy admits whose Mantle list (as a
/// refresh read it) names the model, nearest first. The price is the
/// catalog's in-region price when it knows the model, else unknown.
fn mantle_only(state: &AppState, call: &Call, narrow: Option<&Policy>) -> Option<Resolution> {
    if !call.messages && call.openai.is_none() {
        return None;
    }
    let found = state.catalog.discovered()?;
    let exposed = state.config.model(&call.requested);
    let reference = exposed.map_or(call.requested.as_str(), |m| m.model.as_str());
    let model = state.catalog_model(&call.requested);
    let id = match model {
        Some(m) => m.id.clone(),
        None if call.messages && reference.starts_with("anthropic.") => reference.to_string(),
        None if call.messages && reference.starts_with("claude-") => {
            format!("anthropic.{reference}")
        }
        // An OpenAI request names a model Mantle lists by its ID, or by
        // the ID without its provider (`gpt-5.5` for `openai.gpt-5.5`).
        None if call.openai.is_some() => found
            .mantle
            .values()
            .flatten()
            .find(|id| {
                !id.starts_with("anthropic.")
                    && (*id == reference || id.split_once('.').is_some_and(|(_, n)| n == reference))
            })?
            .clone(),
        None => return None,
    };
    let base = exposed.map_or(&state.config.default_policy, |m| &m.policy);
    let policy = match narrow {
        Some(n) => base.intersect(n),
        None => base.clone(),
    };
    let here = state.catalog.region(&state.region);
    let mut targets: Vec<Target> = found
        .mantle
        .iter()
        .filter(|(region, ids)| ids.contains(&id) && policy.allows(region))
        .map(|(region, _)| Target {
            endpoint_region: region.clone(),
            model_id: id.clone(),
            kind: TargetKind::Mantle,
            prefix: None,
            base_model_id: Some(id.clone()),
            destinations: BTreeSet::from([region.clone()]),
            price: model.and_then(|m| m.price.in_region()),
            confirmed: true,
            distance_km: here
                .zip(state.catalog.region(region))
                .map_or(u32::MAX, |(a, b)| a.distance_km(b) as u32),
            capacity_tpm: None,
        })
        .collect();
    if targets.is_empty() {
        return None;
    }
    targets.sort_by_key(|t| t.distance_km);
    Some(Resolution {
        requested: call.requested.clone(),
        alias: model.map(|m| m.alias.clone()),
        source_region: state.region.clone(),
        policy,
        targets,
        rejected: Vec::new(),
    })
}

/// Mantle's version of a Messages body: `anthropic_version` and
/// `anthropic_beta` move to headers (Mantle takes Anthropic's API version,
/// not Bedrock's body field).
fn mantle_call(body: &[u8]) -> Option<MantleCall> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("anthropic_version");
    let mut headers = vec![(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(MANTLE_ANTHROPIC_VERSION),
    )];
    if let Some(Value::Array(betas)) = obj.remove("anthropic_beta") {
        let joined: Vec<&str> = betas.iter().filter_map(Value::as_str).collect();
        if let Ok(h) = HeaderValue::from_str(&joined.join(",")) {
            headers.push((HeaderName::from_static("anthropic-beta"), h));
        }
    }
    Some((Bytes::from(serde_json::to_vec(&v).ok()?), headers))
}

/// The Anthropic API version Mantle is sent: the one every model on it
/// takes (the SDKs' `AnthropicBedrockMantle` sends it).
const MANTLE_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Bedrock guardrails are regional resources: a model that maps any is
/// called only in regions where one is mapped (a provider has none), exactly
/// as a region outside the policy is not called. Returns the guardrails the
/// remaining candidates need.
fn guardrail_stage(
    state: &AppState,
    requested: &str,
    candidates: &mut Vec<Candidate>,
    policy: &Policy,
) -> Result<Vec<(String, String, meridian_config::Guardrail)>, BedrockError> {
    let mapped = |model: &str| {
        state
            .config
            .model(model)
            .map(|m| &m.guardrails)
            .filter(|g| !g.is_empty())
    };
    // Most configs map no guardrail at all: one look at the models, not one
    // per candidate.
    if state.config.models.iter().all(|m| m.guardrails.is_empty())
        || !candidates.iter().any(|c| mapped(&c.model).is_some())
    {
        return Ok(Vec::new());
    }
    let out = meridian_router::plan::keep_guardrailed(candidates, mapped);
    if candidates.is_empty() {
        let regions: Vec<&str> = mapped(requested)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(BedrockError::validation(format!(
            "No region allowed by residency policy '{}' has a Bedrock guardrail for '{requested}': \
             guardrails are mapped in {} only, and a region without one is never called.",
            policy.name,
            regions.join(", ")
        )));
    }
    Ok(out)
}

/// Whether the client named a service tier itself (Converse `serviceTier`,
/// InvokeModel's `X-Amzn-Bedrock-Service-Tier`): then it is sent as asked.
fn names_tier(call: &Call) -> bool {
    call.forward.iter().any(|(n, _)| n == TIER_HEADER)
        || call
            .json
            .as_ref()
            .is_some_and(|j| j.get("serviceTier").is_some())
}

/// InvokeModel's service-tier request header.
pub const TIER_HEADER: &str = "x-amzn-bedrock-service-tier";

/// A Converse body with `guardrailConfig` naming `g` (the client's `trace`
/// and `streamProcessingMode` kept).
pub fn with_guardrail(body: &[u8], g: &meridian_config::Guardrail) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let o = v.as_object_mut()?;
    let mut cfg = match o.remove("guardrailConfig") {
        Some(Value::Object(c)) => c,
        _ => serde_json::Map::new(),
    };
    cfg.insert("guardrailIdentifier".into(), Value::String(g.id.clone()));
    cfg.insert("guardrailVersion".into(), Value::String(g.version.clone()));
    o.insert("guardrailConfig".into(), Value::Object(cfg));
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// A Converse body with `serviceTier` set to `tier`.
fn with_tier(body: &[u8], tier: ServiceTier) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.insert(
        "serviceTier".into(),
        serde_json::json!({"type": tier.name()}),
    );
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// The request's own policy: the tenant's, narrowed by the header's
/// (`None`: neither says anything).
pub fn request_policy(
    state: &AppState,
    headers: &HeaderMap,
    tenant_policy: Option<&Policy>,
) -> Result<Option<Policy>, BedrockError> {
    Ok(match (tenant_policy, residency_header(state, headers)?) {
        (None, h) => h,
        (Some(t), None) => Some(t.clone()),
        (Some(t), Some(h)) => Some(t.intersect(&h)),
    })
}

/// The policy in `x-meridian-residency`, if the request has one: it can
/// only narrow the model's policy, never widen it. Repeated headers (a proxy
/// that appends its own) intersect: each one narrows further.
fn residency_header(state: &AppState, headers: &HeaderMap) -> Result<Option<Policy>, BedrockError> {
    let mut policy: Option<Policy> = None;
    for v in headers.get_all(RESIDENCY_HEADER) {
        let v = v
            .to_str()
            .map_err(|_| BedrockError::validation("x-meridian-residency must be ASCII"))?;
        let terms: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if terms.is_empty() {
            continue;
        }
        let one = Policy::from_terms(RESIDENCY_HEADER, &state.catalog, &terms, &[])
            .map_err(|e| BedrockError::validation(format!("x-meridian-residency: {e}")))?;
        policy = Some(match policy {
            None => one,
            Some(p) => {
                let mut both = p.intersect(&one);
                both.name = RESIDENCY_HEADER.to_string();
                both
            }
        });
    }
    Ok(policy)
}

/// The Bedrock error for a model that does not resolve.
pub fn plan_error(e: ResolveError) -> BedrockError {
    match e {
        ResolveError::UnknownModel { .. } | ResolveError::UnknownAppProfile { .. } => {
            BedrockError::new(ErrorKind::ResourceNotFound, e.to_string())
        }
        ResolveError::UnknownRegion { .. } => {
            BedrockError::new(ErrorKind::InternalServer, e.to_string())
        }
        ResolveError::NotOffered { .. } | ResolveError::NoTarget { .. } => {
            BedrockError::validation(e.to_string())
        }
    }
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

/// What a request may consume: its input estimate and the most it may
/// generate. Bedrock reserves their sum; so does admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// Estimated input tokens.
    pub input: u64,
    /// The most output tokens the request allows.
    pub max_output: u64,
}

impl Reserve {
    /// Input estimate plus maximum output, saturating (a `maxTokens` of
    /// 2^64−1 reserves everything, it does not wrap).
    pub fn total(self) -> u64 {
        self.input.saturating_add(self.max_output)
    }
}

/// What a request may consume, for admission and for settling a stream cut
/// before the upstream reported its usage.
pub fn reserve(call: &Call) -> Reserve {
    let body_estimate = (call.body.len() as u64).div_ceil(4);
    let more: u64 = call
        .more
        .iter()
        .map(|b| (b.len() as u64).div_ceil(4))
        .fold(0, u64::saturating_add);
    let Some(v) = call.json.as_ref() else {
        return Reserve {
            input: body_estimate.saturating_add(more),
            max_output: DEFAULT_MAX_TOKENS,
        };
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
        body_estimate
    };
    // An embeddings batch is one call per input: each reserves its own.
    Reserve {
        input: input.saturating_add(more),
        max_output: max,
    }
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

/// An InvokeModel body whose `anthropic_version` an ARN-versioned candidate
/// (Opus 4.6 and earlier) would refuse, with the version it accepts (a newer model takes that one
/// too); `None` when the body goes as it is. Read from the body as it is
/// now, after the guard.
fn legacy_version(state: &AppState, call: &Call, candidates: &[Candidate]) -> Option<Bytes> {
    if !matches!(call.action, Action::Invoke | Action::InvokeStream)
        || !names_another_version(&call.body)
    {
        return None;
    }
    let legacy = candidates.iter().any(|c| {
        c.target
            .base_model_id
            .as_deref()
            .and_then(|b| state.catalog.model_by_id(b))
            .is_some_and(|m| m.arn_versioned)
    });
    if !legacy {
        return None;
    }
    let mut body: Value = serde_json::from_slice(&call.body).ok()?;
    let version = body.get_mut("anthropic_version")?;
    if version.as_str() == Some(BEDROCK_ANTHROPIC_VERSION) {
        return None;
    }
    *version = Value::from(BEDROCK_ANTHROPIC_VERSION);
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// Whether `body` has an `anthropic_version` key whose value is not the
/// legacy one, read from the bytes (no parse: most bodies, and every one the
/// Anthropic door builds, carry the legacy version or none).
fn names_another_version(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"anthropic_version\"";
    let legacy = BEDROCK_ANTHROPIC_VERSION.as_bytes();
    let mut rest = body;
    while let Some(i) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let escaped = i > 0 && rest[i - 1] == b'\\';
        let after = &rest[i + KEY.len()..];
        rest = after;
        if escaped {
            continue;
        }
        let value = after
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b':'))
            .map_or(&b""[..], |j| &after[j..]);
        let quoted = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_prefix(legacy))
            .is_some_and(|v| v.starts_with(b"\""));
        if !quoted {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod version_tests {
    use super::names_another_version;

    #[test]
    fn another_version_is_found_without_parsing() {
        assert!(!names_another_version(
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1}"#
        ));
        assert!(!names_another_version(
            br#"{"anthropic_version" : "bedrock-2023-05-31"}"#
        ));
        assert!(!names_another_version(br#"{"max_tokens":1}"#));
        assert!(names_another_version(
            br#"{"anthropic_version":"2026-10-21"}"#
        ));
        assert!(names_another_version(br#"{"anthropic_version": 7}"#));
        // Inside a string it is text, not a key.
        assert!(!names_another_version(
            br#"{"anthropic_version":"bedrock-2023-05-31","m":"say \"anthropic_version\": 1"}"#
        ));
    }
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    /// A stream's kept placement gives back what the plan said.
    #[test]
    fn a_kept_placement_gives_back_what_the_plan_said() {
        let eu = Policy {
            name: "eu".into(),
            allow: Some(["eu-west-1".to_string(), "eu-west-3".to_string()].into()),
            exclude: Default::default(),
            terms: vec!["eu".into()],
        };
        let narrowed = Placement {
            requested: "m",
            policy: "eu",
            residency: Some(&eu),
            first_region: Some("eu-west-1"),
        };
        let start_up = Placement {
            residency: None,
            first_region: None,
            ..narrowed
        };
        for p in [narrowed, start_up] {
            let kept = KeptPlacement::of(p);
            let v = kept.view("m");
            assert_eq!(
                (v.requested, v.policy, v.residency, v.first_region),
                (p.requested, p.policy, p.residency, p.first_region)
            );
        }
    }
}
