//! The OpenAI chat API on `/v1`, translated to and from Converse. An
//! adapter only: the stages are the pipeline's.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::HeaderValue;
use http::request::Parts;
use meridian_wire::Action;
use meridian_wire::openai::embeddings::{self, EmbeddingRequest};
use meridian_wire::openai::{OpenAiError, StreamTranslator, from_converse, to_converse};
use meridian_wire::{BedrockError, converse};
use serde_json::{Value, json};

use crate::canonical::{Call, Head};
use crate::execute::{Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::respond;
use crate::state::AppState;
use meridian_wire::event::{Event, Vocabulary};

/// OpenAI's chat-completions wire format.
#[derive(Debug)]
pub struct OpenAi;

/// What encoding an answer needs from the request.
#[derive(Debug)]
pub struct Chat {
    request_id: String,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// An embeddings request (`/v1/embeddings`), not a chat.
    embeddings: Option<EmbeddingRequest>,
}

/// Everything under `/v1`.
pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    let state = live.get();
    pipeline::handle::<OpenAi>(state, req).await
}

impl FrontDoor for OpenAi {
    const API: &'static str = "openai";
    type Ctx = Chat;
    type Error = OpenAiError;

    fn head(parts: &Parts) -> Head {
        // The model and whether it streams are in the body.
        match (parts.method.as_str(), parts.uri.path()) {
            ("POST", "/v1/chat/completions") => Head {
                operation: "Converse",
                requested: String::new(),
                invocation: true,
            },
            ("POST", "/v1/embeddings") => Head {
                operation: "InvokeModel",
                requested: String::new(),
                invocation: true,
            },
            ("GET", "/v1/models") => Head {
                operation: "ListModels",
                requested: String::new(),
                invocation: false,
            },
            _ => Head::unknown(),
        }
    }

    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        request_id: &str,
        tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<Chat, OpenAiError>, OpenAiError> {
        match (parts.method.as_str(), parts.uri.path()) {
            ("POST", "/v1/chat/completions") => {}
            ("POST", "/v1/embeddings") => return embeddings_call(state, &body, request_id),
            ("GET", "/v1/models") => return Ok(Decoded::Local(models(state, tenant))),
            (method, path) => {
                return Err(OpenAiError {
                    status: 404,
                    kind: "invalid_request_error",
                    message: format!("no route {method} {path}"),
                    param: None,
                    code: Some("unknown_url"),
                });
            }
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            OpenAiError::invalid("body", format!("the request body is not valid JSON: {e}"))
        })?;
        let t = to_converse(&value)?;
        converse::validate_request(&t.converse).map_err(|e| OpenAiError::from(&e))?;
        capable(
            state,
            &t.model,
            t.reasoning.then_some("reasoning_effort"),
            t.structured.then_some("response_format"),
        )?;
        let ctx = Chat {
            request_id: request_id.to_string(),
            id: format!("chatcmpl-{}", request_id.replace('-', "")),
            model: t.model.clone(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            include_usage: t.include_usage,
            embeddings: None,
        };
        let call = Call {
            operation: if t.stream {
                "ConverseStream"
            } else {
                "Converse"
            },
            action: if t.stream {
                Action::ConverseStream
            } else {
                Action::Converse
            },
            requested: t.model,
            body: meridian_wire::json_bytes(&t.converse),
            json: Some(t.converse),
            streaming: t.stream,
            forward: Vec::new(),
            more: Vec::new(),
            envelope: None,
            messages: false,
            openai: Some(crate::canonical::OpenAiBody {
                path: "/v1/chat/completions",
                body: body.clone(),
            }),
        };
        Ok(Decoded::Invoke(call, ctx))
    }

    fn unary(
        c: Chat,
        served: &Served,
        body: Bytes,
        usage: &crate::usage::Usage,
    ) -> Result<Response, OpenAiError> {
        // The usual case, a Converse answer to a chat, without `Value` trees.
        let typed = (c.embeddings.is_none() && !served.candidate.surface.is_openai())
            .then(|| meridian_wire::openai::completion_json(&body, &c.id, &c.model, c.created))
            .flatten();
        let bytes = match typed {
            Some(b) => Bytes::from(b),
            None => meridian_wire::json_bytes(&answer_value(&c, served, &body, usage)?),
        };
        let mut r = respond::with(
            served.status.as_u16(),
            Some("application/json"),
            Body::from(bytes),
        );
        respond::set_header(&mut r, "x-request-id", &c.request_id);
        Ok(r)
    }

    fn stream(c: Chat, served: &Served, events: Events) -> Response {
        let translator = StreamTranslator::new(&c.id, &c.model, c.created, c.include_usage);
        let mut r = respond::sse(
            served.status.as_u16(),
            crate::sse::body(events, Chunks(translator)),
        );
        respond::set_header(&mut r, "x-request-id", &c.request_id);
        r
    }

    fn from_bedrock(e: &BedrockError) -> OpenAiError {
        OpenAiError::from(e)
    }

    fn code(e: &OpenAiError) -> (u16, &'static str) {
        (e.status, e.code.unwrap_or(e.kind))
    }

    fn error(request_id: &str, e: &OpenAiError) -> Response {
        error(request_id, e)
    }
}

/// A chat's answer as a `Value`: embeddings, an answer in OpenAI's shape
/// already, and Converse answers the typed translation declines.
fn answer_value(
    c: &Chat,
    served: &Served,
    body: &[u8],
    usage: &crate::usage::Usage,
) -> Result<Value, OpenAiError> {
    let v = upstream_json(body)?;
    Ok(match &c.embeddings {
        Some(req) => {
            let answers = match v {
                Value::Array(a) => a,
                one => vec![one],
            };
            // Summed over the calls when there were several.
            let counted = (usage.input > 0).then_some(usage.input);
            embeddings::response(req, &answers, &c.model, counted)
        }
        // Bedrock's OpenAI-compatible endpoint answered in OpenAI's shape.
        None if served.candidate.surface.is_openai() => v,
        None => from_converse(&v, &c.id, &c.model, c.created),
    })
}

/// An upstream's JSON answer (a 500 when it is not JSON).
pub(crate) fn upstream_json(body: &[u8]) -> Result<Value, OpenAiError> {
    serde_json::from_slice(body).map_err(|e| {
        OpenAiError::from(&BedrockError::new(
            meridian_wire::ErrorKind::InternalServer,
            format!("upstream answered invalid JSON: {e}"),
        ))
    })
}

/// Refuses what the catalog says `model` cannot do: thinking (asked for by
/// the parameter `reasoning` names) or structured output (`structured`).
pub(crate) fn capable(
    state: &AppState,
    model: &str,
    reasoning: Option<&str>,
    structured: Option<&str>,
) -> Result<(), OpenAiError> {
    let Some(m) = state.catalog_model(model) else {
        return Ok(());
    };
    if let Some(param) = reasoning.filter(|_| !m.reasoning) {
        return Err(OpenAiError::invalid(
            param,
            format!("{model} does not support {param} (no extended thinking on Bedrock)"),
        ));
    }
    if let Some(param) = structured.filter(|_| !m.structured_output) {
        return Err(OpenAiError::invalid(
            param,
            format!(
                "{model} does not support structured output ({param} json_schema or json_object)"
            ),
        ));
    }
    Ok(())
}

fn error(request_id: &str, e: &OpenAiError) -> Response {
    let mut r = respond::with(
        e.status,
        Some("application/json"),
        Body::from(meridian_wire::json_bytes(&e.body())),
    );
    respond::set_header(&mut r, "x-request-id", request_id);
    r
}

/// `/v1/embeddings`: one InvokeModel body per input for the model's rule.
fn embeddings_call(
    state: &AppState,
    body: &[u8],
    request_id: &str,
) -> Result<Decoded<Chat, OpenAiError>, OpenAiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        OpenAiError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    let req = embeddings::parse(&value)?;
    let base = state.catalog_model(&req.model).map(|m| m.id.as_str());
    if !base.is_some_and(embeddings::supported) {
        return Err(OpenAiError::invalid(
            "model",
            format!(
                "'{}' is not an embedding model Meridian can call through /v1/embeddings (Amazon Titan Text Embeddings, Cohere Embed)",
                req.model
            ),
        ));
    }
    let mut bodies = embeddings::bodies(&req, base.unwrap_or_default())?
        .into_iter()
        .map(|b| meridian_wire::json_bytes(&b));
    let first = bodies.next().unwrap_or_default();
    let ctx = Chat {
        request_id: request_id.to_string(),
        id: String::new(),
        model: req.model.clone(),
        created: 0,
        include_usage: false,
        embeddings: Some(req.clone()),
    };
    let json = serde_json::from_slice(&first).ok();
    let call = Call {
        operation: Action::Invoke.operation(),
        action: Action::Invoke,
        requested: req.model,
        body: first,
        json,
        streaming: false,
        forward: vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            ),
        ],
        more: bodies.collect(),
        envelope: None,
        messages: false,
        openai: None,
    };
    Ok(Decoded::Invoke(call, ctx))
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Converse stream events → OpenAI chunks; a failure is one `error` event,
/// and a clean end is `data: [DONE]`.
struct Chunks(StreamTranslator);

impl crate::sse::Translate for Chunks {
    fn event(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError> {
        match ev.vocabulary() {
            // Bedrock's OpenAI-compatible endpoint: its chunks as they came.
            Vocabulary::OpenAi => return Ok(vec![crate::sse::data_line(ev)?]),
            Vocabulary::Converse => {}
            _ => return Ok(Vec::new()),
        }
        let payload = crate::sse::payload(ev)?;
        Ok(self.0.event(ev.name(), &payload).iter().map(sse).collect())
    }

    fn exception(&mut self, member: &str, message: &str) -> Bytes {
        let e = OpenAiError {
            status: 500,
            kind: "server_error",
            message: format!("{member}: {message}"),
            param: None,
            code: None,
        };
        sse(&e.body())
    }

    fn broken(&mut self, e: &BedrockError) -> Bytes {
        sse(&OpenAiError::from(e).body())
    }

    fn done(&mut self) -> Option<Bytes> {
        Some(Bytes::from_static(b"data: [DONE]\n\n"))
    }
}

/// `GET /v1/models`: the exposed models the caller's tenant may call.
fn models(state: &AppState, tenant: &meridian_config::Tenant) -> Response {
    let mut data: Vec<Value> = state
        .config
        .models
        .iter()
        .filter(|m| tenant.may_call(&m.name))
        .map(|m| {
            let owner = state
                .catalog
                .model(&m.model)
                .map_or("bedrock".to_string(), |c| c.provider.clone());
            json!({"id": m.name, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    if state.config.exposes_catalog && tenant.models.is_none() {
        // Models a catalog refresh found since the config was read.
        for m in state.catalog.models() {
            if state.config.model(&m.alias).is_none() {
                data.push(
                    json!({"id": m.alias, "object": "model", "created": 0, "owned_by": m.provider}),
                );
            }
        }
    }
    respond::json(&json!({"object": "list", "data": data}))
}
