//! The account and log stages: when a request ends (a stream ends when its
//! last event is about to be sent), its usage, cost, latency and routing go
//! to the metrics and one invocation record goes to the log sinks.

use std::time::Duration;

use bytes::Bytes;
use meridian_router::Decision;
use tokio::time::Instant;

use crate::execute::Served;
use crate::invocation::{Record, Routing};
use crate::metrics::Family;
use crate::metrics::labels;
use crate::plan::{Placement, Plan};
use crate::respond::served_region;
use crate::state::AppState;
use crate::usage::Usage;

/// What is known of a request from the moment it arrives, whatever becomes
/// of it: every record of it shares these.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Front door: `bedrock`, `openai`.
    pub api: &'static str,
    /// Operation name.
    pub operation: &'static str,
    /// Model asked for (empty until known).
    pub requested: String,
    /// Meridian's request ID.
    pub request_id: String,
    /// When it arrived.
    pub started: Instant,
    /// Its place in a trace: the caller's `traceparent`, Meridian's spans.
    pub trace: Option<crate::traces::TraceContext>,
    /// Model invocations get an invocation record; control-plane reads
    /// are counted in metrics only.
    pub invocation: bool,
    /// The body sent upstream, when records include bodies.
    pub request_body: Option<Bytes>,
    /// The caller's tenant, once identified (when tenants are enforced).
    pub tenant: Option<String>,
    /// What the guards did (set when they are done).
    pub guard: Vec<crate::guard::Fired>,
    /// `hit` when the response cache answered.
    pub cache: Option<&'static str>,
    /// Set by the one [`finish`] that counts and logs the request; shared
    /// by the ledger's clones (a stream's end holds one).
    pub finished: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Everything known about a finished request.
#[derive(Debug)]
pub struct Finished<'a> {
    pub ledger: &'a Ledger,
    /// The plan's policy and first choice (a stream keeps only these).
    pub placement: Option<Placement<'a>>,
    pub served: Option<&'a Served>,
    pub decision: Option<&'a Decision>,
    pub status: u16,
    pub error_code: Option<&'a str>,
    pub usage: Usage,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub response_body: Option<&'a Bytes>,
}

impl<'a> Finished<'a> {
    /// Served by a target whose price the catalog does not know (a model a
    /// refresh found): its cost is unknown, not zero.
    pub fn unpriced(&self) -> bool {
        self.served
            .is_some_and(|s| s.candidate.target.price.is_none())
    }

    /// A request that ended with `status`, with nothing else known yet.
    fn ended(ledger: &'a Ledger, status: u16) -> Finished<'a> {
        Finished {
            ledger,
            placement: None,
            served: None,
            decision: None,
            status,
            error_code: None,
            usage: Usage::default(),
            latency: ledger.started.elapsed(),
            ttft: None,
            response_body: None,
        }
    }

    /// A request that ended without an answer: `status` and `code` as the
    /// client saw them.
    pub fn failed(
        ledger: &'a Ledger,
        plan: Option<&'a Plan>,
        decision: Option<&'a Decision>,
        status: u16,
        code: &'a str,
    ) -> Finished<'a> {
        Finished {
            placement: plan.map(Plan::placement),
            decision,
            error_code: Some(code),
            ..Finished::ended(ledger, status)
        }
    }

    /// A request an attempt answered; `error_code` when a stream broke after
    /// its first event.
    pub fn served(
        ledger: &'a Ledger,
        placement: Placement<'a>,
        served: &'a Served,
        usage: Usage,
        error_code: Option<&'a str>,
    ) -> Finished<'a> {
        Finished {
            placement: Some(placement),
            served: Some(served),
            decision: Some(&served.decision),
            error_code,
            usage,
            ..Finished::ended(ledger, served.status.as_u16())
        }
    }

    /// A request Meridian answered itself (a control-plane read).
    pub fn local(ledger: &'a Ledger) -> Finished<'a> {
        Finished::ended(ledger, 200)
    }
}

/// The `model` label: an exposed name, a catalog alias, else `other`.
pub fn model_label(state: &AppState, requested: &str) -> String {
    if state.config.model(requested).is_some() {
        return requested.to_string();
    }
    state
        .catalog
        .model(requested)
        .or_else(|| state.catalog.model_by_id(requested))
        .map_or_else(|| "other".to_string(), |m| m.alias.clone())
}

/// Answers processed outside their request's residency policy.
const RESIDENCY_VIOLATIONS: Family = Family::ResidencyViolationsTotal;

/// Accounts for a finished request and writes its invocation record;
/// returns its estimated cost. Only the first call for a request counts.
pub fn finish(state: &AppState, f: &Finished<'_>) -> Option<f64> {
    let l = f.ledger;
    // Exactly one summary per request, whichever path ends it.
    if l.finished.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    let model = model_label(state, &l.requested);
    let outcome = f.error_code.unwrap_or("success");
    let m = &state.metrics;
    let request_labels = labels([
        ("model", &model),
        ("operation", l.operation),
        ("outcome", outcome),
        ("tenant", l.tenant.as_deref().unwrap_or_default()),
    ]);
    // Tenant names come from the config only: a closed set.
    let with_tenant = state.config.tenant_metric_label && l.tenant.is_some();
    let request_labels = &request_labels[..if with_tenant { 4 } else { 3 }];
    m.add(Family::RequestsTotal, request_labels, 1.0);
    // Latencies carry the trace they belong to (exemplars), when traced.
    let trace_id = l
        .trace
        .as_ref()
        .filter(|c| c.exported)
        .map(|c| c.trace_id.as_str());
    m.observe_traced(
        Family::RequestDurationSeconds,
        labels([("model", &model), ("operation", l.operation)]),
        f.latency.as_secs_f64(),
        trace_id,
    );
    if let Some(t) = f.ttft {
        m.observe_traced(
            Family::TimeToFirstTokenSeconds,
            labels([("model", &model)]),
            t.as_secs_f64(),
            trace_id,
        );
    }
    let region = f.served.map(|s| served_region(s).to_string());
    let mut cost = None;
    // The tier that served it: as the answer says, else as asked.
    let tier = f.served.and_then(|s| {
        f.usage
            .service_tier
            .or_else(|| crate::usage::tier_header(&s.headers))
            .or(s.candidate.service_tier)
    });
    if let (Some(s), Some(r)) = (f.served, &region) {
        m.add(
            Family::InputTokensTotal,
            labels([("model", &model), ("region", r)]),
            f.usage.input as f64,
        );
        m.add(
            Family::OutputTokensTotal,
            labels([("model", &model), ("region", r)]),
            f.usage.output as f64,
        );
        for (name, n) in [
            (Family::CacheReadTokensTotal, f.usage.cache_read),
            (Family::CacheWriteTokensTotal, f.usage.cache_write),
        ] {
            if n > 0 {
                m.add(name, labels([("model", &model), ("region", r)]), n as f64);
            }
        }
        if let Some(p) = &s.candidate.target.price {
            let u = f.usage;
            let usd = p
                .on_tier(tier.unwrap_or(meridian_catalog::ServiceTier::Default))
                .cost(u.input, u.output, u.cache_read, u.cache_write);
            cost = Some(usd);
            m.add(
                Family::EstimatedCostUsdTotal,
                labels([("model", &model), ("region", r)]),
                usd,
            );
        } else {
            m.add(
                Family::UnpricedRequestsTotal,
                labels([("model", &model)]),
                1.0,
            );
        }
        let first = f.placement.and_then(|p| p.first_region);
        if first.is_some_and(|r| r != s.candidate.target.endpoint_region) {
            m.add(
                Family::ReroutesTotal,
                labels([("model", &model), ("region", r)]),
                1.0,
            );
        }
    }
    if let Some(d) = f.decision {
        if d.hedged {
            m.add(Family::HedgesTotal, labels([("model", &model)]), 1.0);
        }
        for a in &d.attempts {
            m.add(
                Family::UpstreamAttemptsTotal,
                labels([
                    ("region", &a.region),
                    ("account", &a.account),
                    ("model", &model),
                    ("outcome", a.outcome.label()),
                    ("reason", a.reason.label()),
                ]),
                1.0,
            );
            if a.outcome.is_error() {
                m.add(
                    Family::UpstreamErrorsTotal,
                    labels([
                        ("region", &a.region),
                        ("account", &a.account),
                        ("outcome", a.outcome.label()),
                    ]),
                    1.0,
                );
            }
        }
    }
    for g in &l.guard {
        m.add(
            Family::GuardFindingsTotal,
            labels([
                ("model", &model),
                ("direction", g.direction.name()),
                ("detector", &g.label),
                ("action", g.action),
            ]),
            g.count as f64,
        );
    }
    if let Some(c) = l.cache {
        m.add(
            Family::CacheRequestsTotal,
            labels([("model", &model), ("outcome", c)]),
            1.0,
        );
    }
    if let Some(t) = &state.tracer {
        trace(t, state, f, &model, outcome, region.as_deref());
    }
    // Residency, checked against where the answer says it was processed:
    // whatever planning promised, a region outside the policy is counted.
    let allowed = match (f.placement, region.as_deref()) {
        (Some(placed), Some(r)) => placed.policy_in(state).map(|p| p.allows(r)),
        _ => None,
    };
    if let (Some(false), Some(placed), Some(r)) = (allowed, f.placement, region.as_deref()) {
        m.add(
            RESIDENCY_VIOLATIONS,
            labels([("policy", placed.policy), ("region", r)]),
            1.0,
        );
        tracing::error!(
            request_id = %l.request_id,
            policy = %placed.policy,
            region = r,
            "residency violation: the answer says it was processed outside the request's policy"
        );
    }
    if l.invocation {
        let called = f
            .served
            .map(|s| s.candidate.target.endpoint_region.as_str());
        state.stats.finished(&crate::traffic::Finished {
            model: &model,
            policy: f.placement.map(|p| p.policy),
            allowed,
            tenant: l.tenant.as_deref(),
            served: called,
            processed: region.as_deref(),
            first: f.placement.and_then(|p| p.first_region),
            attempts: f
                .decision
                .map(|d| d.attempts.as_slice())
                .unwrap_or_default(),
            latency_ms: f.latency.as_secs_f64() * 1000.0,
            ttft_ms: f.ttft.map(|t| t.as_secs_f64() * 1000.0),
            surface: f.served.map(|s| s.candidate.surface.name()),
        });
    }
    let watched = l.invocation && state.stats.watched();
    if !l.invocation || !(state.log.enabled() || watched) {
        return cost;
    }
    let model_id = f.served.map_or(l.requested.as_str(), |s| {
        s.candidate.target.model_id.as_str()
    });
    let called = f.served.map_or(state.region.as_str(), |s| {
        s.candidate.target.endpoint_region.as_str()
    });
    let routing = Routing {
        requested_model: &l.requested,
        api: l.api,
        account: f.served.map(|s| s.candidate.account.as_str()),
        surface: f.served.map(|s| s.candidate.surface.name()),
        policy: f.placement.map_or("", |p| p.policy),
        status: f.status,
        latency_ms: f.latency.as_millis() as u64,
        time_to_first_token_ms: f.ttft.map(|t| t.as_millis() as u64),
        estimated_cost_usd: cost,
        price_known: f.unpriced().then_some(false),
        service_tier: tier.map(meridian_catalog::ServiceTier::name),
        decision: f.decision,
        tenant: l.tenant.as_deref(),
        guard: &l.guard,
        cache: l.cache,
    };
    let mut rec = Record::new(
        &state.account_id,
        called,
        &l.request_id,
        l.operation,
        model_id,
        routing,
    );
    rec.input.input_token_count = f.usage.input;
    rec.input.cache_read_input_token_count = f.usage.cache_read;
    rec.input.cache_write_input_token_count = f.usage.cache_write;
    rec.output.output_token_count = f.usage.output;
    rec.inference_region = region.as_deref();
    rec.error_code = f.error_code;
    if state.log.include_bodies {
        rec.input.input_body_json = l
            .request_body
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok());
        rec.output.output_body_json = f.response_body.and_then(|b| serde_json::from_slice(b).ok());
    }
    if watched {
        state.stats.tail(crate::traffic::TailEntry {
            seq: 0,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request_id: l.request_id.clone(),
            api: l.api,
            operation: l.operation,
            model: model.clone(),
            tenant: l.tenant.clone().unwrap_or_default(),
            region: rec.inference_region.unwrap_or_default().to_string(),
            route: f.decision.map(Decision::summary).unwrap_or_default(),
            status: f.status,
            outcome: outcome.to_string(),
            latency_ms: f.latency.as_millis() as u64,
            input_tokens: f.usage.input,
            output_tokens: f.usage.output,
            cost_usd: cost,
            cache: l.cache,
            guard: l.guard.iter().map(|g| g.count).sum(),
            record: {
                // The tail never shows bodies.
                let mut v = serde_json::to_value(&rec).unwrap_or_default();
                if let Some(i) = v["input"].as_object_mut() {
                    i.remove("inputBodyJson");
                }
                if let Some(o) = v["output"].as_object_mut() {
                    o.remove("outputBodyJson");
                }
                v
            },
        });
    }
    if state.log.enabled() {
        state.log.write(&rec);
    }
    cost
}

/// `gen_ai.system` / `gen_ai.provider.name` of every span (the value the
/// GenAI semantic conventions give Amazon Bedrock).
const GEN_AI_SYSTEM: &str = "aws.bedrock";

/// The GenAI `gen_ai.operation.name` of a call to `model_id`: Bedrock's
/// embedding models all say so in their IDs (`amazon.titan-embed-text-v2:0`,
/// `cohere.embed-v4:0`, `amazon.nova-2-multimodal-embeddings-v1:0`); the
/// rest are chat models on Converse, InvokeModel, Messages or Mantle.
fn gen_ai_operation(model_id: &str) -> &'static str {
    if model_id.contains("embed") {
        "embeddings"
    } else {
        "chat"
    }
}

/// A SERVER span for the request and a CLIENT span per attempt.
fn trace(
    t: &crate::traces::Tracer,
    state: &AppState,
    f: &Finished<'_>,
    model: &str,
    outcome: &str,
    region: Option<&str>,
) {
    use crate::traces::{Attr, Span, TraceContext};
    let end = std::time::SystemTime::now();
    let start = end.checked_sub(f.latency).unwrap_or(end);
    let l = f.ledger;
    // Made when the request arrived (the attempts' headers carry it); a
    // request refused before that gets a trace of its own.
    let ctx = match &l.trace {
        Some(c) if c.exported => c.clone(),
        _ => TraceContext::root(t),
    };
    let s = |v: &str| Attr::Str(v.to_string());
    let mut attrs = vec![
        ("meridian.model", s(model)),
        ("meridian.operation", s(l.operation)),
        ("meridian.outcome", s(outcome)),
        ("meridian.api", s(l.api)),
        ("meridian.request_id", s(&l.request_id)),
        ("meridian.region.source", s(&state.region)),
        ("http.response.status_code", Attr::Int(i64::from(f.status))),
        // GenAI semantic conventions: the system under both its names
        // (`gen_ai.system` before semconv 1.37, `gen_ai.provider.name` since).
        ("gen_ai.system", s(GEN_AI_SYSTEM)),
        ("gen_ai.provider.name", s(GEN_AI_SYSTEM)),
        (
            "gen_ai.operation.name",
            s(gen_ai_operation(f.served.map_or(model, |sv| {
                sv.candidate.target.model_id.as_str()
            }))),
        ),
        ("gen_ai.request.model", s(model)),
        ("gen_ai.usage.input_tokens", Attr::Int(f.usage.input as i64)),
        (
            "gen_ai.usage.output_tokens",
            Attr::Int(f.usage.output as i64),
        ),
    ];
    if let Some(r) = region {
        attrs.push(("cloud.region", s(r)));
    }
    if let Some(sv) = f.served {
        attrs.push(("meridian.account", s(&sv.candidate.account)));
        attrs.push(("meridian.surface", s(sv.candidate.surface.name())));
        attrs.push(("gen_ai.response.model", s(&sv.candidate.target.model_id)));
    }
    if let Some(p) = f.placement {
        attrs.push(("meridian.policy", s(p.policy)));
    }
    if let Some(d) = f.decision {
        attrs.push(("meridian.strategy", s(d.strategy)));
        attrs.push(("meridian.attempts", Attr::Int(d.attempts.len() as i64)));
        attrs.push(("meridian.hedged", Attr::Int(i64::from(d.hedged))));
        if let Some(why) = &d.gave_up {
            attrs.push(("meridian.gave_up", s(why)));
        }
    }
    if let Some(tenant) = &l.tenant {
        attrs.push(("meridian.tenant", s(tenant)));
    }
    t.record(Span {
        trace_id: ctx.trace_id.clone(),
        span_id: ctx.span_id.clone(),
        parent_span_id: ctx.parent_span_id.clone(),
        name: format!("{} {}", l.operation, model),
        kind: 2,
        start,
        end,
        error: f.error_code.is_some(),
        attributes: attrs,
    });
    for (n, a) in f
        .decision
        .map(|d| d.attempts.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let a_start = start + std::time::Duration::from_millis(a.start_ms);
        t.record(Span {
            trace_id: ctx.trace_id.clone(),
            span_id: ctx.attempt_span_id(n),
            parent_span_id: Some(ctx.span_id.clone()),
            name: format!("attempt {}", a.region),
            kind: 3,
            start: a_start,
            end: a_start + std::time::Duration::from_millis(a.elapsed_ms),
            error: a.outcome.is_error(),
            attributes: vec![
                ("gen_ai.system", s(GEN_AI_SYSTEM)),
                ("gen_ai.provider.name", s(GEN_AI_SYSTEM)),
                ("gen_ai.operation.name", s(gen_ai_operation(&a.model_id))),
                ("gen_ai.request.model", s(&a.model_id)),
                ("cloud.region", s(&a.region)),
                ("meridian.account", s(&a.account)),
                ("meridian.model", s(model)),
                ("meridian.model_id", s(&a.model_id)),
                ("meridian.reason", s(a.reason.label())),
                ("meridian.outcome", s(a.outcome.label())),
            ],
        });
    }
}
