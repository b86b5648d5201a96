//! Bedrock's native Anthropic Messages endpoints as the fleet serves them:
//! bedrock-runtime's `POST /anthropic/v1/messages` (SigV4 `bedrock` or a
//! Bedrock API key; `anthropic_version` in the body; the model ID or
//! profile in `model`) and Mantle's (`bedrock-mantle.{region}.api.aws`,
//! here `/mantle/anthropic/v1/messages` on the region's listener: SigV4
//! `bedrock-mantle` or a key; the `anthropic-version` header; base model IDs
//! only, processed in the region called). Answers are Anthropic's: a
//! message, or with `"stream": true` server-sent events; errors are
//! Anthropic's error objects with Bedrock's status codes.
//!
//! Only Claude models of the Messages generation (no ARN-versioned ID:
//! Opus 4.7 and later, or a model the world added) are on these endpoints;
//! the legacy ones answer on InvokeModel and Converse only.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use meridian_catalog::arn::ModelRef;
use meridian_wire::event::{Event, Kind};
use meridian_wire::eventstream::FrameSplitter;
use meridian_wire::{BedrockError, ErrorKind};
use serde_json::{Value, json};

use crate::region::{Ctx, Log};

/// Path of the runtime endpoint.
pub const RUNTIME_PATH: &str = "/anthropic/v1/messages";
/// Path of the Mantle endpoint on a region's listener (the fleet's stand-in
/// for `https://bedrock-mantle.{region}.api.aws/anthropic/v1/messages`).
pub const MANTLE_PATH: &str = "/mantle/anthropic/v1/messages";

/// Path of Mantle's model list on a region's listener (the fleet's stand-in
/// for `https://bedrock-mantle.{region}.api.aws/v1/models`).
pub const MANTLE_MODELS_PATH: &str = "/mantle/v1/models";

/// Which native Messages endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// bedrock-runtime's `/anthropic/v1/messages`.
    Runtime,
    /// Mantle's `/anthropic/v1/messages`.
    Mantle,
}

impl Surface {
    /// The surface a POST to `path` is for.
    pub fn of(method: &http::Method, path: &str) -> Option<Surface> {
        match (method, path) {
            (&http::Method::POST, RUNTIME_PATH) => Some(Surface::Runtime),
            (&http::Method::POST, MANTLE_PATH) => Some(Surface::Mantle),
            _ => None,
        }
    }

    /// Its name in faults and records (`runtime-messages`, `mantle-messages`).
    pub fn name(self) -> &'static str {
        match self {
            Surface::Runtime => "runtime-messages",
            Surface::Mantle => "mantle-messages",
        }
    }

    /// The SigV4 service its signatures are scoped to.
    fn service(self) -> &'static str {
        match self {
            Surface::Runtime => "bedrock",
            Surface::Mantle => "bedrock-mantle",
        }
    }
}

fn invalid(msg: impl Into<String>) -> BedrockError {
    BedrockError::validation(msg)
}

/// Anthropic's error object for a Bedrock error, with its status.
pub fn error(request_id: &str, e: &BedrockError) -> Response {
    let kind = match e.kind {
        ErrorKind::Validation => "invalid_request_error",
        ErrorKind::AccessDenied => "permission_error",
        ErrorKind::UnrecognizedClient
        | ErrorKind::InvalidSignature
        | ErrorKind::MissingAuthenticationToken
        | ErrorKind::IncompleteSignature => "authentication_error",
        ErrorKind::ResourceNotFound => "not_found_error",
        ErrorKind::Throttling | ErrorKind::ServiceQuotaExceeded => "rate_limit_error",
        ErrorKind::ServiceUnavailable | ErrorKind::ModelNotReady => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": e.message}, "request_id": request_id});
    let mut r = (
        http::StatusCode::from_u16(e.kind.status()).unwrap_or(http::StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response();
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("request-id", v);
    }
    r
}

/// Handles a request to either native Messages endpoint (routed here by
/// path; everything else goes to the region's runtime handler).
pub async fn handle(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    req: axum::extract::Request,
) -> Response {
    let request_id = ctx.request_id();
    let (parts, body) = req.into_parts();
    let Some(surface) = Surface::of(&parts.method, parts.uri.path()) else {
        return error(&request_id, &invalid("POST only"));
    };
    let mut log = Log::new(&ctx, &request_id);
    let answer = match axum::body::to_bytes(body, crate::region::MAX_BODY).await {
        Ok(body) => {
            ctx.messages(surface, &parts, body, &request_id, &mut log)
                .await
        }
        Err(_) => Err(invalid(format!(
            "the request body exceeds {} bytes",
            crate::region::MAX_BODY
        ))),
    };
    match answer {
        Ok(resp) => resp,
        Err(e) => {
            log.finish(&ctx, e.kind.name());
            error(&request_id, &e)
        }
    }
}

/// Whether `base` is served on `surface` in this region: Claude models of
/// the Messages generation; a model the world added, on Mantle only in its
/// Mantle regions when it names them.
fn on_messages(ctx: &Ctx, surface: Surface, base: &str) -> bool {
    match ctx.shared.catalog.model_by_id(base) {
        Some(m) => m.provider == "anthropic" && !m.arn_versioned,
        None => {
            let world = ctx.shared.world.read();
            let Some(m) = world.model(base).filter(|_| base.starts_with("anthropic.")) else {
                return false;
            };
            match (surface, &m.mantle) {
                (Surface::Mantle, Some(regions)) => regions.contains(&*ctx.region),
                _ => true,
            }
        }
    }
}

/// Whether a model the world added that is not Claude is on this region's
/// Mantle (its OpenAI-compatible APIs).
fn on_mantle_openai(ctx: &Ctx, id: &str) -> bool {
    !id.starts_with("anthropic.")
        && ctx
            .shared
            .world
            .read()
            .model(id)
            .and_then(|m| m.mantle.as_ref())
            .is_some_and(|r| r.contains(&*ctx.region))
}

/// `GET /v1/models` on Mantle: the models this region's Mantle serves, as
/// OpenAI's model list (SigV4 `bedrock-mantle` or a key).
pub async fn models(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    req: axum::extract::Request,
) -> Response {
    let request_id = ctx.request_id();
    let (parts, _) = req.into_parts();
    if parts.method != http::Method::GET {
        return error(&request_id, &invalid("GET only"));
    }
    if let Err(e) = ctx.take(
        &parts,
        &[],
        Surface::Mantle.service(),
        Surface::Mantle.name(),
    ) {
        return error(&request_id, &e);
    }
    let mut ids: Vec<String> = ctx
        .shared
        .catalog
        .models()
        .iter()
        .filter(|m| m.provider == "anthropic" && !m.arn_versioned)
        .map(|m| m.id.clone())
        .collect();
    let added: Vec<String> = ctx
        .shared
        .world
        .read()
        .models()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    ids.extend(
        added
            .into_iter()
            .filter(|id| on_messages(&ctx, Surface::Mantle, id) || on_mantle_openai(&ctx, id)),
    );
    ids.extend(
        crate::frontier::MANTLE_ONLY
            .iter()
            .filter(|(id, _)| crate::frontier::mantle_only_in(id, &ctx.region))
            .map(|(id, _)| (*id).to_string()),
    );
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "owned_by": id.split('.').next().unwrap_or("")}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

impl Ctx {
    /// A request to a native Messages endpoint.
    pub(crate) async fn messages(
        &self,
        surface: Surface,
        parts: &http::request::Parts,
        body: Bytes,
        request_id: &str,
        log: &mut Log,
    ) -> Result<Response, BedrockError> {
        self.take(parts, &body, surface.service(), surface.name())?;
        let mut v: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
        let model = v["model"]
            .as_str()
            .ok_or_else(|| invalid("model: Field required"))?
            .to_string();
        log.set(|r| {
            r.model_id = model.clone();
            r.operation = format!("{surface:?}Messages");
        });
        let model = model.as_str();
        if v["messages"].as_array().is_none_or(Vec::is_empty) {
            return Err(invalid("messages: at least one message is required"));
        }
        match surface {
            Surface::Runtime if v["anthropic_version"].as_str().is_none() => {
                return Err(invalid("anthropic_version: Field required"));
            }
            Surface::Mantle if parts.headers.get("anthropic-version").is_none() => {
                return Err(invalid("anthropic-version: header required"));
            }
            _ => {}
        }
        let base = match ModelRef::parse(model) {
            ModelRef::SystemProfile { base, .. } if surface == Surface::Runtime => base.to_string(),
            ModelRef::Name(base) => base.to_string(),
            _ => {
                return Err(invalid(format!(
                    "The provided model identifier is invalid on this endpoint: {model}{}",
                    if surface == Surface::Mantle {
                        " (Mantle takes base model IDs)"
                    } else {
                        ""
                    }
                )));
            }
        };
        if !on_messages(self, surface, &base) {
            return Err(invalid(format!(
                "{model} is not available on the Messages API endpoint; call it with InvokeModel or Converse."
            )));
        }
        let stream = v["stream"].as_bool() == Some(true);
        if let Some(o) = v.as_object_mut() {
            o.remove("model");
            o.remove("stream");
            // Inside the fleet both surfaces answer as Bedrock's Anthropic
            // InvokeModel does.
            o.insert(
                "anthropic_version".into(),
                json!(meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION),
            );
        }
        let action = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let mut inner = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("/model/{model}/{action}"))
            .body(())
            .map_err(|e| invalid(format!("model: {e}")))?
            .into_parts()
            .0;
        inner.headers = parts.headers.clone();
        let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        let answer = self
            .serve_op(&inner, body, request_id, log, surface == Surface::Mantle)
            .await;
        let answer = answer?;
        if !stream {
            return Ok(answer);
        }
        Ok(to_sse(answer))
    }
}

/// An InvokeModel stream's answer as server-sent events: each chunk's
/// Anthropic event as `event: TYPE` / `data: JSON`, an exception as an
/// `error` event.
fn to_sse(answer: Response) -> Response {
    let (mut parts, body) = answer.into_parts();
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    // The inner InvokeModel stream's own content type is not this answer's.
    parts.headers.remove("x-amzn-bedrock-content-type");
    let mut frames = FrameSplitter::new();
    let events = body.into_data_stream().flat_map(move |chunk| {
        let mut out: Vec<Result<Bytes, std::io::Error>> = Vec::new();
        match chunk {
            Ok(bytes) => {
                frames.push(&bytes);
                while let Ok(Some(frame)) = frames.next_frame() {
                    out.push(Ok(sse(Event::from_frame(frame).ok())));
                }
            }
            Err(e) => out.push(Err(std::io::Error::other(e))),
        }
        futures_util::stream::iter(out)
    });
    Response::from_parts(parts, Body::from_stream(events))
}

fn sse(event: Option<Event>) -> Bytes {
    let payload = event.as_ref().and_then(|e| {
        if e.kind() == Kind::Exception {
            None
        } else {
            e.json().ok().map(std::borrow::Cow::into_owned)
        }
    });
    match payload {
        Some(v) => {
            let kind = v["type"].as_str().unwrap_or("message").to_string();
            Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
        }
        None => {
            let message = event
                .as_ref()
                .and_then(Event::exception_message)
                .unwrap_or_else(|| "the stream broke".into());
            let v = json!({"type": "error", "error": {"type": "api_error", "message": message}});
            Bytes::from(format!("event: error\ndata: {v}\n\n"))
        }
    }
}
