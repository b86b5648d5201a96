//! The Bedrock front door: Runtime operations (byte for byte) and the
//! control-plane reads LangChain makes on the runtime host. An adapter only:
//! the stages are the pipeline's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use meridian_wire::Action;
use meridian_wire::{BedrockError, Operation, converse};
use serde_json::Value;

use crate::canonical::{Call, Head};
use crate::control_plane;
use crate::execute::{self, Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::respond;
use crate::state::AppState;

/// The Bedrock Runtime and control-plane wire format.
#[derive(Debug)]
pub struct Bedrock;

/// Handles every request that is not one of Meridian's own endpoints.
pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    let state = live.get();
    pipeline::handle::<Bedrock>(state, req).await
}

impl FrontDoor for Bedrock {
    const API: &'static str = "bedrock";
    type Ctx = ();
    type Error = BedrockError;

    fn head(parts: &Parts) -> Head {
        match Operation::from_request(parts.method.as_str(), parts.uri.path()) {
            Ok(Operation::ApplyGuardrail { guardrail_id, .. }) => Head {
                operation: "ApplyGuardrail",
                requested: guardrail_id,
                invocation: true,
            },
            Ok(op) => Head {
                operation: op.name(),
                requested: op.model_id().unwrap_or_default().to_string(),
                invocation: op.model_id().is_some(),
            },
            Err(_) => Head::unknown(),
        }
    }

    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        _request_id: &str,
        tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<(), BedrockError>, BedrockError> {
        let op = Operation::from_request(parts.method.as_str(), parts.uri.path())?;
        if let Operation::ApplyGuardrail { guardrail_id, .. } = &op {
            return apply_guardrail(state, parts, body, guardrail_id);
        }
        if matches!(
            op,
            Operation::CreateModelInvocationJob
                | Operation::GetModelInvocationJob { .. }
                | Operation::ListModelInvocationJobs
                | Operation::StopModelInvocationJob { .. }
        ) {
            return Ok(Decoded::Pending(crate::batch::bedrock_job(
                state,
                tenant,
                op,
                body,
                &parts.headers,
            )));
        }
        let Some(model) = op.model_id() else {
            let query = parts.uri.query().unwrap_or("");
            return control_plane::answer(state, &op, query).map(Decoded::Local);
        };
        // Check what Meridian can before spending an upstream call.
        let json = match op {
            Operation::Converse { .. }
            | Operation::ConverseStream { .. }
            | Operation::CountTokens { .. } => {
                let v: Value = serde_json::from_slice(&body).map_err(|e| {
                    BedrockError::validation(format!("The request body is not valid JSON: {e}"))
                })?;
                if !matches!(op, Operation::CountTokens { .. }) {
                    converse::validate_request(&v)?;
                }
                Some(v)
            }
            _ => serde_json::from_slice::<Value>(&body).ok(),
        };
        let call = Call {
            operation: op.name(),
            action: op.action().unwrap_or(Action::Converse),
            requested: model.to_string(),
            body,
            json,
            streaming: op.is_streaming(),
            forward: passthrough_request_headers(&parts.headers),
            more: Vec::new(),
            // CountTokens carries an InvokeModel body as base64.
            envelope: matches!(op, Operation::CountTokens { .. })
                .then_some(crate::canonical::COUNT_TOKENS_INVOKE_BODY),
            messages: false,
            openai: None,
        };
        Ok(Decoded::Invoke(call, ()))
    }

    fn unary(
        _: (),
        served: &Served,
        body: Bytes,
        _: &crate::usage::Usage,
    ) -> Result<Response, BedrockError> {
        Ok(respond::with(
            served.status.as_u16(),
            None,
            Body::from(body),
        ))
    }

    fn stream(_: (), served: &Served, events: Events) -> Response {
        respond::with(
            served.status.as_u16(),
            None,
            execute::eventstream_body(events),
        )
    }

    fn from_bedrock(e: &BedrockError) -> BedrockError {
        e.clone()
    }

    fn code(e: &BedrockError) -> (u16, &'static str) {
        (e.kind.status(), e.kind.name())
    }

    fn error(_request_id: &str, e: &BedrockError) -> Response {
        respond::error(e)
    }
}

/// ApplyGuardrail, routed like a model call: `{id}` names an exposed model
/// with `guardrail` mapped, or a guardrail ID mapped to one. The plan keeps
/// the regions that have the model's guardrail (and that its policy
/// allows); each attempt calls the guardrail mapped in its region.
fn apply_guardrail(
    state: &AppState,
    parts: &Parts,
    body: Bytes,
    id: &str,
) -> Result<Decoded<(), BedrockError>, BedrockError> {
    let models = &state.config.models;
    let model = models
        .iter()
        .find(|m| m.name == id && !m.guardrails.is_empty())
        .or_else(|| {
            models
                .iter()
                .find(|m| m.guardrails.values().any(|g| g.id == id))
        })
        .ok_or_else(|| {
            BedrockError::new(
                meridian_wire::ErrorKind::ResourceNotFound,
                format!(
                    "'{id}' is neither an exposed model with a guardrail mapped nor a guardrail ID \
                     mapped to one; Meridian routes ApplyGuardrail by those."
                ),
            )
        })?;
    let json: Value = serde_json::from_slice(&body).map_err(|e| {
        BedrockError::validation(format!("The request body is not valid JSON: {e}"))
    })?;
    if !json["content"].is_array() || !json["source"].is_string() {
        return Err(BedrockError::validation(
            "ApplyGuardrail takes {\"source\": \"INPUT\"|\"OUTPUT\", \"content\": [...]}.",
        ));
    }
    Ok(Decoded::Invoke(
        Call {
            operation: Action::ApplyGuardrail.operation(),
            action: Action::ApplyGuardrail,
            requested: model.name.clone(),
            body,
            json: Some(json),
            streaming: false,
            forward: passthrough_request_headers(&parts.headers),
            more: Vec::new(),
            envelope: None,
            messages: false,
            openai: None,
        },
        (),
    ))
}

/// Request headers forwarded upstream: content negotiation and every
/// `x-amzn-bedrock-*` member header (trace, guardrail, latency, tier, metadata).
fn passthrough_request_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(k, _)| {
            let n = k.as_str();
            n == "content-type" || n == "accept" || n.starts_with("x-amzn-bedrock-")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
#[path = "bedrock_tests.rs"]
mod tests;
