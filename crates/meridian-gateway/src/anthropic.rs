//! The Anthropic Messages API on `/v1/messages` and
//! `/v1/messages/count_tokens` (also under `/anthropic`), for the
//! `anthropic` SDKs and Claude Code's gateway mode (`ANTHROPIC_BASE_URL`).
//! An adapter only: the stages are the pipeline's.
//!
//! Anthropic models get the Messages body natively, as Bedrock's InvokeModel:
//! `model` and `stream` leave the body, `anthropic_version` becomes
//! `bedrock-2023-05-31`, the `anthropic-beta` header becomes `anthropic_beta`
//! (flags not on the allow-list are dropped and named in
//! `x-meridian-dropped-betas`). Bedrock's stream chunks are re-emitted as
//! Anthropic's SSE events; count_tokens is Bedrock's CountTokens.
//!
//! Other models get the request translated to Converse and the answer back
//! (`meridian_wire::messages`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;
use meridian_wire::Action;
use meridian_wire::{BedrockError, ErrorKind};
use serde_json::{Value, json};

use crate::canonical::{Call, Head};
use crate::execute::{Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::respond;
use crate::state::AppState;
use meridian_wire::event::{Event, Vocabulary};

/// Beta flags passed on to Bedrock as `anthropic_beta`; others are dropped.
/// AWS's request reference shows `computer-use-2024-10-22`; the rest are
/// Anthropic's beta names for features Claude on Bedrock offers. Which of
/// them every Bedrock region accepts is unconfirmed.
pub const BEDROCK_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "fine-grained-tool-streaming-2025-05-14",
];

/// Response header naming the beta flags that were not sent on.
pub const DROPPED_BETAS_HEADER: &str = "x-meridian-dropped-betas";

/// Response header naming the request fields left out for the model
/// (`thinking`, `output_config` for a model that does not reason).
pub const DROPPED_FIELDS_HEADER: &str = "x-meridian-dropped-fields";

/// The Messages wire format.
#[derive(Debug)]
pub struct Anthropic;

/// What encoding needs from the request.
#[derive(Debug)]
pub struct Ctx {
    request_id: String,
    model: String,
    count: bool,
    dropped: Vec<String>,
    /// Request fields left out for the model (named in `x-meridian-dropped-fields`).
    dropped_fields: Vec<String>,
    /// Translated to Converse (a model without the native Messages format).
    converse: bool,
}

/// An error in Anthropic's shape.
#[derive(Debug, Clone)]
pub struct AnthropicError {
    pub(crate) status: u16,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl AnthropicError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        AnthropicError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    fn body(&self, request_id: &str) -> Value {
        json!({"type": "error", "error": {"type": self.kind, "message": self.message}, "request_id": request_id})
    }
}

/// `/v1/messages` and `/v1/messages/count_tokens`, with or without the
/// `/anthropic` prefix.
pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    pipeline::handle::<Anthropic>(live.get(), req).await
}

fn is_count(parts: &Parts) -> bool {
    parts.uri.path().ends_with("/v1/messages/count_tokens")
}

impl FrontDoor for Anthropic {
    const API: &'static str = "anthropic";
    /// Bedrock's runtime (`bedrock`) and Mantle (`bedrock-mantle`, as
    /// `AnthropicBedrockMantle` signs) both serve Messages.
    const SIGNING_SERVICES: &'static [&'static str] = &["bedrock", "bedrock-mantle"];
    type Ctx = Ctx;
    type Error = AnthropicError;

    fn head(parts: &Parts) -> Head {
        if parts.method != http::Method::POST {
            return Head::unknown();
        }
        Head {
            operation: if is_count(parts) {
                "CountTokens"
            } else {
                "InvokeModel"
            },
            requested: String::new(),
            invocation: true,
        }
    }

    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        request_id: &str,
        _tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<Ctx, AnthropicError>, AnthropicError> {
        if parts.method != http::Method::POST {
            return Err(AnthropicError {
                status: 405,
                kind: "invalid_request_error",
                message: format!("{} is not allowed here; use POST", parts.method),
            });
        }
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| {
            AnthropicError::invalid(format!("the request body is not valid JSON: {e}"))
        })?;
        let Some(obj) = v.as_object_mut() else {
            return Err(AnthropicError::invalid(
                "the request body must be a JSON object",
            ));
        };
        let model = match obj.remove("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => return Err(AnthropicError::invalid("model: field required")),
        };
        let stream = matches!(obj.remove("stream"), Some(Value::Bool(true)));
        if !obj.get("messages").is_some_and(Value::is_array) {
            return Err(AnthropicError::invalid("messages: field required"));
        }
        let count = is_count(parts);
        if !count && !obj.get("max_tokens").is_some_and(Value::is_u64) {
            return Err(AnthropicError::invalid("max_tokens: field required"));
        }
        if !anthropic_model(state, &model) {
            // A model the catalog says does not reason is not sent Claude's
            // thinking settings (Claude Code sends them whatever the model);
            // what was left out is named in the answer.
            let mut dropped = Vec::new();
            if state.catalog_model(&model).is_some_and(|m| !m.reasoning) {
                for field in ["thinking", "output_config"] {
                    if obj.remove(field).is_some() {
                        dropped.push(field.to_string());
                    }
                }
            }
            return converse_call(v, model, stream, count, request_id, dropped);
        }
        obj.insert(
            "anthropic_version".into(),
            json!(meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION),
        );
        let (betas, dropped) = betas(parts);
        if !betas.is_empty() {
            obj.insert("anthropic_beta".into(), json!(betas));
        }
        let ctx = Ctx {
            request_id: request_id.to_string(),
            model: model.clone(),
            count,
            dropped,
            dropped_fields: Vec::new(),
            converse: false,
        };
        let forward = vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            ),
        ];
        let call = if count {
            // CountTokens takes the native body, base64, and needs max_tokens in it.
            obj.entry("max_tokens").or_insert(json!(1));
            let native = serde_json::to_vec(&v).unwrap_or_default();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&native);
            let body = json!({"input": {"invokeModel": {"body": b64}}});
            Call {
                operation: Action::CountTokens.operation(),
                action: Action::CountTokens,
                requested: model,
                body: meridian_wire::json_bytes(&body),
                json: Some(v),
                streaming: false,
                forward,
                more: Vec::new(),
                envelope: Some(crate::canonical::COUNT_TOKENS_INVOKE_BODY),
                messages: false,
                openai: None,
            }
        } else {
            Call {
                operation: if stream {
                    "InvokeModelWithResponseStream"
                } else {
                    "InvokeModel"
                },
                action: if stream {
                    Action::InvokeStream
                } else {
                    Action::Invoke
                },
                requested: model,
                body: meridian_wire::json_bytes(&v),
                json: Some(v),
                streaming: stream,
                forward,
                more: Vec::new(),
                envelope: None,
                messages: true,
                openai: None,
            }
        };
        Ok(Decoded::Invoke(call, ctx))
    }

    fn unary(
        c: Ctx,
        served: &Served,
        body: Bytes,
        _: &crate::usage::Usage,
    ) -> Result<Response, AnthropicError> {
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| AnthropicError {
            status: 500,
            kind: "api_error",
            message: format!("upstream answered invalid JSON: {e}"),
        })?;
        let out = if c.count {
            json!({"input_tokens": v["inputTokens"].as_u64().unwrap_or(0)})
        } else if c.converse {
            meridian_wire::messages::from_converse(&v, &message_id(&c.request_id), &c.model)
        } else {
            if let Some(o) = v.as_object_mut() {
                o.insert("model".into(), json!(c.model));
                o.remove("amazon-bedrock-invocationMetrics");
            }
            v
        };
        let mut r = respond::with(
            served.status.as_u16(),
            Some("application/json"),
            Body::from(meridian_wire::json_bytes(&out)),
        );
        headers(&mut r, &c);
        Ok(r)
    }

    fn stream(c: Ctx, served: &Served, events: Events) -> Response {
        let translate = ToSse {
            model: c.model.clone(),
            converse: c.converse.then(|| {
                meridian_wire::messages::StreamTranslator::new(&message_id(&c.request_id), &c.model)
            }),
        };
        let body = crate::sse::body(events, translate);
        let mut r = respond::sse(served.status.as_u16(), body);
        headers(&mut r, &c);
        r
    }

    fn from_bedrock(e: &BedrockError) -> AnthropicError {
        let (status, kind) = match e.kind {
            ErrorKind::Validation | ErrorKind::IncompleteSignature => {
                (400, "invalid_request_error")
            }
            ErrorKind::InvalidSignature
            | ErrorKind::UnrecognizedClient
            | ErrorKind::MissingAuthenticationToken => (401, "authentication_error"),
            // A wrong API key is Bedrock's AccessDenied; Anthropic calls it 401.
            ErrorKind::AccessDenied if e.unauthenticated => (401, "authentication_error"),
            ErrorKind::AccessDenied => (403, "permission_error"),
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => (404, "not_found_error"),
            ErrorKind::Throttling | ErrorKind::ServiceQuotaExceeded => (429, "rate_limit_error"),
            ErrorKind::ModelTimeout => (504, "timeout_error"),
            ErrorKind::ServiceUnavailable | ErrorKind::ModelNotReady => (529, "overloaded_error"),
            ErrorKind::ModelError | ErrorKind::ModelStreamError | ErrorKind::InternalServer => {
                (500, "api_error")
            }
        };
        AnthropicError {
            status,
            kind,
            message: e.message.clone(),
        }
    }

    fn code(e: &AnthropicError) -> (u16, &'static str) {
        (e.status, e.kind)
    }

    fn error(request_id: &str, e: &AnthropicError) -> Response {
        let mut r = respond::with(
            e.status,
            Some("application/json"),
            Body::from(meridian_wire::json_bytes(&e.body(request_id))),
        );
        respond::set_header(&mut r, "request-id", request_id);
        r
    }
}

fn headers(r: &mut Response, c: &Ctx) {
    if let Ok(v) = HeaderValue::from_str(&c.request_id) {
        r.headers_mut().insert("request-id", v);
    }
    for (name, dropped) in [
        (DROPPED_BETAS_HEADER, &c.dropped),
        (DROPPED_FIELDS_HEADER, &c.dropped_fields),
    ] {
        if !dropped.is_empty()
            && let Ok(v) = HeaderValue::from_str(&dropped.join(","))
        {
            r.headers_mut().insert(name, v);
        }
    }
}

/// A Messages ID for a request ID.
fn message_id(request_id: &str) -> String {
    format!("msg_{}", request_id.replace('-', ""))
}

/// The call for a model without the native Messages format: the request
/// translated to Converse (or CountTokens' Converse input).
fn converse_call(
    v: Value,
    model: String,
    stream: bool,
    count: bool,
    request_id: &str,
    dropped_fields: Vec<String>,
) -> Result<Decoded<Ctx, AnthropicError>, AnthropicError> {
    let converse = meridian_wire::messages::to_converse(&v)
        .map_err(|e| AnthropicError::invalid(format!("{model}: {}", e.0)))?;
    meridian_wire::converse::validate_request(&converse)
        .map_err(|e| AnthropicError::invalid(e.message))?;
    let (action, body) = match (count, stream) {
        (true, _) => {
            let mut input = json!({"messages": converse["messages"]});
            for key in ["system", "toolConfig"] {
                if let Some(x) = converse.get(key) {
                    input[key] = x.clone();
                }
            }
            (Action::CountTokens, json!({"input": {"converse": input}}))
        }
        (false, true) => (Action::ConverseStream, converse.clone()),
        (false, false) => (Action::Converse, converse.clone()),
    };
    let ctx = Ctx {
        request_id: request_id.to_string(),
        model: model.clone(),
        count,
        dropped: Vec::new(),
        dropped_fields,
        converse: true,
    };
    let call = Call {
        operation: action.operation(),
        action,
        requested: model,
        body: meridian_wire::json_bytes(&body),
        json: Some(converse),
        streaming: stream && !count,
        forward: Vec::new(),
        more: Vec::new(),
        envelope: None,
        messages: false,
        openai: None,
    };
    Ok(Decoded::Invoke(call, ctx))
}

/// Whether `model` (an exposed name, alias, ID or ARN) is an Anthropic model.
pub(crate) fn anthropic_model(state: &AppState, model: &str) -> bool {
    match state.catalog_model(model) {
        Some(m) => m.provider.eq_ignore_ascii_case("anthropic"),
        // Raw IDs and ARNs the catalog does not name: go by the ID.
        None => {
            let reference = state
                .config
                .model(model)
                .map_or(model, |m| m.model.as_str());
            reference.contains("anthropic.") || state.config.model(model).is_none()
        }
    }
}

/// The `anthropic-beta` flags to send on, and those dropped.
fn betas(parts: &Parts) -> (Vec<String>, Vec<String>) {
    let mut keep = Vec::new();
    let mut dropped = Vec::new();
    for v in parts.headers.get_all("anthropic-beta") {
        for flag in v
            .to_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            if BEDROCK_BETAS.contains(&flag) {
                keep.push(flag.to_string());
            } else {
                dropped.push(flag.to_string());
            }
        }
    }
    (keep, dropped)
}

fn sse_event(v: &Value) -> Bytes {
    let kind = v["type"].as_str().unwrap_or("completion");
    Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
}

/// Anthropic Messages events (Claude's InvokeModel chunks) or, for a model
/// translated to Converse, ConverseStream events → Anthropic SSE; a failure
/// after the first event is one `error` event.
struct ToSse {
    model: String,
    /// Set when the upstream speaks Converse.
    converse: Option<meridian_wire::messages::StreamTranslator>,
}

impl crate::sse::Translate for ToSse {
    fn event(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError> {
        match (&mut self.converse, ev.vocabulary()) {
            (Some(t), Vocabulary::Converse) => {
                let payload = crate::sse::payload(ev)?;
                Ok(t.event(ev.name(), &payload).iter().map(sse_event).collect())
            }
            (None, Vocabulary::Messages) => {
                let mut event = crate::sse::payload(ev)?.into_owned();
                if let Some(o) = event.as_object_mut() {
                    o.remove(meridian_wire::event::INVOCATION_METRICS);
                }
                if event["type"] == "message_start" {
                    event["message"]["model"] = json!(self.model);
                }
                Ok(vec![sse_event(&event)])
            }
            _ => Ok(Vec::new()),
        }
    }

    fn exception(&mut self, member: &str, message: &str) -> Bytes {
        let kind = ErrorKind::from_stream_member(member).unwrap_or(ErrorKind::ModelStreamError);
        error_event(&BedrockError::new(kind, message))
    }

    fn broken(&mut self, e: &BedrockError) -> Bytes {
        error_event(e)
    }
}

fn error_event(e: &BedrockError) -> Bytes {
    let a = Anthropic::from_bedrock(e);
    sse_event(&json!({"type": "error", "error": {"type": a.kind, "message": a.message}}))
}
