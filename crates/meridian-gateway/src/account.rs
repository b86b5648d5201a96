//! The account and log stages: when a request ends (a stream ends when its
//! last event is about to be sent), its usage, cost, latency and routing go
//! to the metrics and one invocation record goes to the log sinks.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::execute::{Decision, Plan, Served};
use crate::invocation::{Record, Routing};
use crate::metrics::labels;
use crate::state::AppState;

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// Everything known about a finished request.
#[derive(Debug)]
pub struct Finished<'a> {
    pub api: &'static str,
    pub operation: &'a str,
    pub requested: &'a str,
    pub request_id: &'a str,
    pub plan: Option<&'a Plan>,
    pub served: Option<&'a Served>,
    pub decision: Option<&'a Decision>,
    pub status: u16,
    pub error_code: Option<&'a str>,
    pub usage: Usage,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub request_body: Option<&'a Bytes>,
    pub response_body: Option<&'a Bytes>,
    /// The request's W3C `traceparent`, if it had one.
    pub traceparent: Option<&'a str>,
}

/// What every record of one request shares.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub api: &'static str,
    pub operation: &'a str,
    pub requested: &'a str,
    pub request_id: &'a str,
    pub started: tokio::time::Instant,
    pub traceparent: Option<&'a str>,
    pub request_body: Option<&'a Bytes>,
}

impl<'a> Finished<'a> {
    /// A request that ended without an answer.
    pub fn failed(
        r: Request<'a>,
        plan: Option<&'a Plan>,
        decision: Option<&'a Decision>,
        e: &'a meridian_wire::BedrockError,
    ) -> Finished<'a> {
        Finished {
            api: r.api,
            operation: r.operation,
            requested: r.requested,
            request_id: r.request_id,
            plan,
            served: None,
            decision,
            status: e.kind.status(),
            error_code: Some(e.kind.name()),
            usage: Usage::default(),
            latency: r.started.elapsed(),
            ttft: None,
            request_body: r.request_body,
            response_body: None,
            traceparent: r.traceparent,
        }
    }

    /// A request an attempt answered; `error_code` when a stream broke after
    /// its first event.
    pub fn served(
        r: Request<'a>,
        plan: &'a Plan,
        served: &'a Served,
        usage: Usage,
        error_code: Option<&'a str>,
    ) -> Finished<'a> {
        Finished {
            api: r.api,
            operation: r.operation,
            requested: r.requested,
            request_id: r.request_id,
            plan: Some(plan),
            served: Some(served),
            decision: Some(&served.decision),
            status: served.status.as_u16(),
            error_code,
            usage,
            latency: r.started.elapsed(),
            ttft: None,
            request_body: r.request_body,
            response_body: None,
            traceparent: r.traceparent,
        }
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

/// Region that served a response: the simulated fleet says where it
/// processed; real Bedrock does not, so the called region stands in.
pub fn served_region(served: &Served) -> String {
    served
        .headers
        .get("x-meridian-sim-inference-region")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&served.candidate.target.endpoint_region)
        .to_string()
}

/// Accounts for a finished request and writes its invocation record.
pub fn finish(state: &AppState, f: &Finished<'_>) {
    let model = model_label(state, f.requested);
    let outcome = f.error_code.unwrap_or("success");
    let m = &state.metrics;
    m.add(
        "meridian_requests_total",
        labels([
            ("model", &model),
            ("operation", f.operation),
            ("outcome", outcome),
        ]),
        1.0,
    );
    m.observe(
        "meridian_request_duration_seconds",
        labels([("model", &model), ("operation", f.operation)]),
        f.latency.as_secs_f64(),
    );
    if let Some(t) = f.ttft {
        m.observe(
            "meridian_time_to_first_token_seconds",
            labels([("model", &model)]),
            t.as_secs_f64(),
        );
    }
    let region = f.served.map(served_region);
    let mut cost = None;
    if let (Some(s), Some(r)) = (f.served, &region) {
        m.add(
            "meridian_input_tokens_total",
            labels([("model", &model), ("region", r)]),
            f.usage.input as f64,
        );
        m.add(
            "meridian_output_tokens_total",
            labels([("model", &model), ("region", r)]),
            f.usage.output as f64,
        );
        if let Some(p) = &s.candidate.target.price {
            let usd = (f.usage.input as f64 * p.input_per_mtok
                + f.usage.output as f64 * p.output_per_mtok)
                / 1e6;
            cost = Some(usd);
            m.add(
                "meridian_estimated_cost_usd_total",
                labels([("model", &model), ("region", r)]),
                usd,
            );
        }
        let first = f.plan.and_then(|p| p.candidates.first());
        if first.is_some_and(|c| c.target.endpoint_region != s.candidate.target.endpoint_region) {
            m.add(
                "meridian_reroutes_total",
                labels([("model", &model), ("region", r)]),
                1.0,
            );
        }
    }
    if let Some(d) = f.decision {
        if d.hedged {
            m.add("meridian_hedges_total", labels([("model", &model)]), 1.0);
        }
        for a in &d.attempts {
            m.add(
                "meridian_upstream_attempts_total",
                labels([
                    ("region", &a.region),
                    ("account", &a.account),
                    ("model", &model),
                    ("outcome", a.outcome),
                    ("reason", a.reason),
                ]),
                1.0,
            );
            if !matches!(a.outcome, "success" | "cancelled" | "running") {
                m.add(
                    "meridian_upstream_errors_total",
                    labels([
                        ("region", &a.region),
                        ("account", &a.account),
                        ("outcome", a.outcome),
                    ]),
                    1.0,
                );
            }
        }
    }
    if let Some(t) = &state.tracer {
        trace(t, state, f, &model, outcome, region.as_deref());
    }
    if !state.log.enabled() {
        return;
    }
    let model_id = f
        .served
        .map(|s| s.candidate.target.model_id.clone())
        .unwrap_or_else(|| f.requested.to_string());
    let called = f
        .served
        .map(|s| s.candidate.target.endpoint_region.clone())
        .unwrap_or_else(|| state.region.clone());
    let routing = Routing {
        requested_model: f.requested.to_string(),
        api: f.api,
        account: f.served.map(|s| s.candidate.account.clone()),
        policy: f.plan.map(|p| p.policy.clone()).unwrap_or_default(),
        status: f.status,
        latency_ms: f.latency.as_millis() as u64,
        time_to_first_token_ms: f.ttft.map(|t| t.as_millis() as u64),
        estimated_cost_usd: cost,
        decision: f.decision.cloned(),
    };
    let mut rec = Record::new(
        &state.account_id,
        &called,
        f.request_id,
        f.operation,
        &model_id,
        routing,
    );
    rec.input.input_token_count = f.usage.input;
    rec.output.output_token_count = f.usage.output;
    rec.inference_region = region;
    rec.error_code = f.error_code.map(str::to_string);
    if state.log.include_bodies {
        rec.input.input_body_json = f.request_body.and_then(|b| serde_json::from_slice(b).ok());
        rec.output.output_body_json = f.response_body.and_then(|b| serde_json::from_slice(b).ok());
    }
    state.log.write(&rec);
}

/// Usage of a whole (non-streaming) answer: Converse's `usage`, Bedrock's
/// token-count headers, or an Anthropic body's `usage`.
pub fn unary_usage(headers: &http::HeaderMap, body: &[u8]) -> Usage {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    if let (Some(input), Some(output)) = (
        header("x-amzn-bedrock-input-token-count"),
        header("x-amzn-bedrock-output-token-count"),
    ) {
        return Usage { input, output };
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    usage_of(&v).unwrap_or_default()
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let get = |a: &str, b: &str| u.get(a).or_else(|| u.get(b)).and_then(Value::as_u64);
    Some(Usage {
        input: get("inputTokens", "input_tokens")?,
        output: get("outputTokens", "output_tokens").unwrap_or(0),
    })
}

/// Reads usage out of streamed events as they pass: Converse's `metadata`
/// event, or the `amazon-bedrock-invocationMetrics` InvokeModel puts in its
/// last chunk.
#[derive(Debug, Default)]
pub struct StreamUsage {
    pub usage: Usage,
}

impl StreamUsage {
    /// Looks at one event frame's payload.
    pub fn see(&mut self, event_type: &str, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        match event_type {
            "metadata" => {
                if let Some(u) = usage_of(&v) {
                    self.usage = u;
                }
            }
            "chunk" => {
                let inner = v
                    .get("bytes")
                    .and_then(Value::as_str)
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                if let Some(m) = inner
                    .as_ref()
                    .and_then(|i| i.get("amazon-bedrock-invocationMetrics"))
                {
                    let get = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
                    self.usage = Usage {
                        input: get("inputTokenCount"),
                        output: get("outputTokenCount"),
                    };
                }
            }
            _ => {}
        }
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
    use crate::traces::{Attr, Span, parse_traceparent};
    let end = std::time::SystemTime::now();
    let start = end.checked_sub(f.latency).unwrap_or(end);
    let (trace_id, parent) = match f.traceparent.and_then(parse_traceparent) {
        Some((trace, span)) => (trace, Some(span)),
        None => (t.trace_id(), None),
    };
    let span_id = t.span_id();
    let s = |v: &str| Attr::Str(v.to_string());
    let mut attrs = vec![
        ("meridian.model", s(model)),
        ("meridian.operation", s(f.operation)),
        ("meridian.outcome", s(outcome)),
        ("meridian.api", s(f.api)),
        ("meridian.request_id", s(f.request_id)),
        ("meridian.region.source", s(&state.region)),
        ("http.response.status_code", Attr::Int(i64::from(f.status))),
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
    }
    if let Some(p) = f.plan {
        attrs.push(("meridian.policy", s(&p.policy)));
    }
    t.record(Span {
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        parent_span_id: parent,
        name: format!("{} {}", f.operation, model),
        kind: 2,
        start,
        end,
        error: f.error_code.is_some(),
        attributes: attrs,
    });
    for a in f
        .decision
        .map(|d| d.attempts.as_slice())
        .unwrap_or_default()
    {
        let a_start = start + std::time::Duration::from_millis(a.start_ms);
        t.record(Span {
            trace_id: trace_id.clone(),
            span_id: t.span_id(),
            parent_span_id: Some(span_id.clone()),
            name: format!("attempt {}", a.region),
            kind: 3,
            start: a_start,
            end: a_start + std::time::Duration::from_millis(a.elapsed_ms),
            error: !matches!(a.outcome, "success" | "cancelled"),
            attributes: vec![
                ("cloud.region", s(&a.region)),
                ("meridian.account", s(&a.account)),
                ("meridian.model", s(model)),
                ("meridian.model_id", s(&a.model_id)),
                ("meridian.reason", s(a.reason)),
                ("meridian.outcome", s(a.outcome)),
            ],
        });
    }
}
