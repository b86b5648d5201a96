//! Bedrock's OpenAI-compatible endpoints as the fleet serves them:
//! bedrock-runtime's `/openai/v1/{chat/completions,responses}` (SigV4
//! `bedrock` or a key; synchronous only: `background` is refused; model IDs
//! and profile IDs of models that have the OpenAI APIs there — OpenAI's
//! open-weight models, not Claude) and Mantle's `/v1/…` and `/openai/v1/…`
//! (here under `/mantle` on the region's listener: SigV4 `bedrock-mantle` or
//! a key; base IDs of the models Mantle serves in this region, among them
//! models only Mantle serves; processed in the region called). A model on
//! the wrong surface is refused as Bedrock refuses it.
//!
//! Inside the fleet a request becomes a Converse call of the region (the
//! wire crate's translation, so replies are the fleet's generated text);
//! answers are OpenAI's chat completions, response objects and their
//! server-sent events. `background` on Mantle is answered at once.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use meridian_catalog::arn::ModelRef;
use meridian_wire::event::{Event, Kind};
use meridian_wire::eventstream::FrameSplitter;
use meridian_wire::openai::{OpenAiError, StreamTranslator, responses};
use meridian_wire::{BedrockError, ErrorKind};
use serde_json::{Value, json};

use crate::frontier::mantle_only_in;
use crate::region::{Ctx, Log};

/// Which endpoint, and which API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Runtime(Api),
    Mantle(Api),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        let api = |rest: &str| match rest {
            "chat/completions" => Some(Api::Chat),
            "responses" => Some(Api::Responses),
            _ => None,
        };
        if let Some(rest) = path.strip_prefix("/openai/v1/") {
            return api(rest).map(Endpoint::Runtime);
        }
        let rest = path.strip_prefix("/mantle/")?;
        let rest = rest.strip_prefix("openai/").unwrap_or(rest);
        api(rest.strip_prefix("v1/")?).map(Endpoint::Mantle)
    }

    fn api(self) -> Api {
        match self {
            Endpoint::Runtime(a) | Endpoint::Mantle(a) => a,
        }
    }

    fn mantle(self) -> bool {
        matches!(self, Endpoint::Mantle(_))
    }

    /// Its name in faults and records.
    fn surface(self) -> &'static str {
        if self.mantle() {
            "mantle-openai"
        } else {
            "runtime-openai"
        }
    }

    fn service(self) -> &'static str {
        if self.mantle() {
            "bedrock-mantle"
        } else {
            "bedrock"
        }
    }
}

/// OpenAI's error object for a Bedrock error, with its status.
fn error(request_id: &str, e: &BedrockError) -> Response {
    let mut body = OpenAiError::from(e).body();
    body["error"]["message"] = json!(e.message);
    let mut r = (
        http::StatusCode::from_u16(e.kind.status()).unwrap_or(http::StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response();
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn invalid(msg: impl Into<String>) -> BedrockError {
    BedrockError::validation(msg)
}

/// Handles a request to an OpenAI-compatible endpoint (routed here by path).
pub async fn handle(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    req: axum::extract::Request,
) -> Response {
    let request_id = ctx.request_id();
    let (parts, body) = req.into_parts();
    let endpoint = match (parts.method.clone(), Endpoint::of(parts.uri.path())) {
        (http::Method::POST, Some(e)) => e,
        _ => {
            return error(
                &request_id,
                &invalid("POST /chat/completions or /responses only"),
            );
        }
    };
    let mut log = Log::new(&ctx, &request_id);
    let answer = match axum::body::to_bytes(body, crate::region::MAX_BODY).await {
        Ok(body) => serve(&ctx, endpoint, &parts, body, &request_id, &mut log).await,
        Err(_) => Err(invalid("the request body is too large")),
    };
    match answer {
        Ok(resp) => resp,
        Err(e) => {
            log.finish(&ctx, e.kind.name());
            error(&request_id, &e)
        }
    }
}

/// Whether `base` has the OpenAI APIs on this endpoint in this region.
fn served(ctx: &Ctx, endpoint: Endpoint, base: &str) -> bool {
    let catalog = &ctx.shared.catalog;
    let provider = catalog
        .model_by_id(base)
        .map(|m| m.provider.to_ascii_lowercase());
    if endpoint.mantle() {
        if mantle_only_in(base, &ctx.region) {
            return true;
        }
        let world = ctx.shared.world.read();
        return world.model(base).is_some_and(|m| {
            !base.starts_with("anthropic.")
                && m.mantle.as_ref().is_some_and(|r| r.contains(&*ctx.region))
        });
    }
    // bedrock-runtime: OpenAI's own open-weight models.
    provider.as_deref() == Some("openai")
}

async fn serve(
    ctx: &Ctx,
    endpoint: Endpoint,
    parts: &http::request::Parts,
    body: Bytes,
    request_id: &str,
    log: &mut Log,
) -> Result<Response, BedrockError> {
    ctx.take(parts, &body, endpoint.service(), endpoint.surface())?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
    let model = v["model"]
        .as_str()
        .ok_or_else(|| invalid("model: field required"))?
        .to_string();
    log.set(|r| {
        r.model_id = model.clone();
        r.operation = format!("{endpoint:?}");
    });
    let base = match ModelRef::parse(&model) {
        ModelRef::SystemProfile { base, .. } if !endpoint.mantle() => base.to_string(),
        ModelRef::Name(base) => base.to_string(),
        _ => {
            return Err(invalid(format!(
                "The provided model identifier is invalid on this endpoint: {model}"
            )));
        }
    };
    if !served(ctx, endpoint, &base) {
        return Err(BedrockError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "The model {model} is not available on this endpoint in {}.",
                ctx.region
            ),
        ));
    }
    let background = v["background"].as_bool() == Some(true);
    if background && !endpoint.mantle() {
        return Err(invalid(
            "background: bedrock-runtime serves synchronous requests only; use Mantle for background responses.",
        ));
    }
    let stream = v["stream"].as_bool() == Some(true);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = request_id.replace('-', "");
    let (converse, shape) = match endpoint.api() {
        Api::Chat => {
            let t = meridian_wire::openai::to_converse(&v).map_err(|e| invalid(e.message))?;
            let shape = Shape::Chat(StreamTranslator::new(
                &format!("chatcmpl-{id}"),
                &model,
                created,
                t.include_usage,
            ));
            (t.converse, shape)
        }
        Api::Responses => {
            let req: responses::Request = serde_json::from_value(v.clone())
                .map_err(|e| invalid(format!("not a Responses request: {e}")))?;
            let items = req
                .input
                .clone()
                .map(responses::Input::into_items)
                .unwrap_or_default();
            let t = responses::to_converse(&req, &items).map_err(|e| invalid(e.message))?;
            let meta = responses::Meta::new(format!("resp_{id}"), created, &req, t.tools, false);
            (
                t.converse,
                Shape::Responses(Box::new(responses::Stream::new(meta))),
            )
        }
    };
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    let mut inner = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("/model/{model}/{action}"))
        .body(())
        .map_err(|e| invalid(format!("model: {e}")))?
        .into_parts()
        .0;
    inner.headers = parts.headers.clone();
    let body = Bytes::from(serde_json::to_vec(&converse).unwrap_or_default());
    let answer = ctx
        .serve_op(&inner, body, request_id, log, endpoint.mantle())
        .await?;
    if stream {
        return Ok(to_sse(answer, shape));
    }
    let (mut parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| BedrockError::new(ErrorKind::InternalServer, e.to_string()))?;
    let answer: Value = serde_json::from_slice(&bytes)
        .map_err(|e| BedrockError::new(ErrorKind::InternalServer, e.to_string()))?;
    let out = match shape {
        Shape::Chat(_) => meridian_wire::openai::from_converse(
            &answer,
            &format!("chatcmpl-{id}"),
            &model,
            created,
        ),
        Shape::Responses(s) => {
            let mut s = *s;
            let mut done = Value::Null;
            // The whole answer through the stream translator's state: one
            // response object, as a stream would end.
            for e in replay(&answer, &mut s) {
                if e["type"] == "response.completed" || e["type"] == "response.incomplete" {
                    done = e["response"].clone();
                }
            }
            done
        }
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(
        parts,
        Body::from(meridian_wire::json_bytes(&out)),
    ))
}

/// How the answer is written.
enum Shape {
    Chat(StreamTranslator),
    Responses(Box<responses::Stream>),
}

/// A whole Converse answer as the stream events it would have been.
fn replay(answer: &Value, s: &mut responses::Stream) -> Vec<Value> {
    let mut out = s.event("messageStart", &json!({"role": "assistant"}));
    let blocks = answer["output"]["message"]["content"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for (i, b) in blocks.iter().enumerate() {
        if let Some(u) = b.get("toolUse") {
            out.extend(s.event(
                "contentBlockStart",
                &json!({"contentBlockIndex": i,
                "start": {"toolUse": {"toolUseId": u["toolUseId"], "name": u["name"]}}}),
            ));
            out.extend(s.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": i,
                "delta": {"toolUse": {"input": u["input"].to_string()}}}),
            ));
        } else if let Some(t) = b["text"].as_str() {
            out.extend(s.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": i, "delta": {"text": t}}),
            ));
        } else if let Some(r) = b["reasoningContent"]["reasoningText"].as_object() {
            out.extend(s.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": i,
                "delta": {"reasoningContent": {"text": r.get("text")}}}),
            ));
            out.extend(s.event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": i,
                "delta": {"reasoningContent": {"signature": r.get("signature")}}}),
            ));
        }
        out.extend(s.event("contentBlockStop", &json!({"contentBlockIndex": i})));
    }
    out.extend(s.event("messageStop", &json!({"stopReason": answer["stopReason"]})));
    out.extend(s.event("metadata", &json!({"usage": answer["usage"]})));
    out
}

/// A ConverseStream answer as OpenAI server-sent events.
fn to_sse(answer: Response, mut shape: Shape) -> Response {
    let (mut parts, body) = answer.into_parts();
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove("x-amzn-bedrock-content-type");
    let mut frames = FrameSplitter::new();
    let mut ended = false;
    let events = body.into_data_stream().flat_map(move |chunk| {
        let mut out: Vec<Result<Bytes, std::io::Error>> = Vec::new();
        match chunk {
            Ok(bytes) => {
                frames.push(&bytes);
                while let Ok(Some(frame)) = frames.next_frame() {
                    let Ok(ev) = Event::from_frame(frame) else {
                        continue;
                    };
                    out.extend(sse(&mut shape, &ev).into_iter().map(Ok));
                    if ev.is_last() && !ended {
                        ended = true;
                        if matches!(shape, Shape::Chat(_)) {
                            out.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
                        }
                    }
                }
            }
            Err(e) => out.push(Err(std::io::Error::other(e))),
        }
        futures_util::stream::iter(out)
    });
    Response::from_parts(parts, Body::from_stream(events))
}

fn sse(shape: &mut Shape, ev: &Event) -> Vec<Bytes> {
    let payload = ev
        .json()
        .map(std::borrow::Cow::into_owned)
        .unwrap_or(Value::Null);
    if ev.kind() == Kind::Exception {
        let message = ev.exception_message().unwrap_or_default();
        let body = json!({"type": "error", "error": {"type": "server_error", "code": ev.name(), "message": message}});
        return vec![Bytes::from(format!("event: error\ndata: {body}\n\n"))];
    }
    match shape {
        Shape::Chat(t) => t
            .event(ev.name(), &payload)
            .iter()
            .map(|c| Bytes::from(format!("data: {c}\n\n")))
            .collect(),
        Shape::Responses(s) => s
            .event(ev.name(), &payload)
            .iter()
            .map(|e| {
                let kind = e["type"].as_str().unwrap_or("message");
                Bytes::from(format!("event: {kind}\ndata: {e}\n\n"))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_endpoint_and_api() {
        use Api::{Chat, Responses};
        for (path, want) in [
            ("/openai/v1/chat/completions", Some(Endpoint::Runtime(Chat))),
            ("/openai/v1/responses", Some(Endpoint::Runtime(Responses))),
            ("/mantle/v1/chat/completions", Some(Endpoint::Mantle(Chat))),
            (
                "/mantle/openai/v1/responses",
                Some(Endpoint::Mantle(Responses)),
            ),
            ("/mantle/v1/embeddings", None),
            ("/openai/v2/responses", None),
        ] {
            assert_eq!(Endpoint::of(path), want, "{path}");
        }
        assert!(mantle_only_in("openai.gpt-5.5", "us-east-1"));
        assert!(!mantle_only_in("openai.gpt-5.5", "us-west-1"));
    }
}
