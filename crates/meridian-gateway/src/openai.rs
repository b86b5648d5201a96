//! The OpenAI chat API on `/v1`, translated to and from Converse.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use meridian_wire::eventstream::{FrameKind, decode_one};
use meridian_wire::openai::{OpenAiError, StreamTranslator, from_converse, to_converse};
use meridian_wire::{BedrockError, converse};
use serde_json::{Value, json};

use crate::execute::{self, Frames};
use crate::state::AppState;
use crate::{account, auth, bedrock, plan, respond};

fn error(request_id: &str, e: &OpenAiError) -> Response {
    Response::builder()
        .status(e.status)
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(e.body().to_string()))
        .unwrap_or_default()
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = respond::request_id();
    match chat_inner(&state, req, &request_id).await {
        Ok(r) => r,
        Err(e) => error(&request_id, &e),
    }
}

async fn chat_inner(
    state: &Arc<AppState>,
    req: Request,
    request_id: &str,
) -> Result<Response, OpenAiError> {
    let started = tokio::time::Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| {
            OpenAiError::invalid(
                "body",
                format!("the request body is larger than {} bytes", state.max_body),
            )
        })?;
    auth::authenticate(state, &parts, &body).map_err(|e| OpenAiError::from(&e))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        OpenAiError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    let t = to_converse(&value)?;
    converse::validate_request(&t.converse).map_err(|e| OpenAiError::from(&e))?;
    let plan = plan::build(
        state,
        plan::Ask {
            requested: &t.model,
            narrow: None,
            headers: &parts.headers,
            body: Bytes::from(t.converse.to_string()),
            json: Some(&t.converse),
            action: if t.stream {
                "converse-stream"
            } else {
                "converse"
            },
            streaming: t.stream,
            forward: Vec::new(),
            started,
        },
    )
    .map_err(|e| OpenAiError::from(&e))?;
    let operation = if t.stream {
        "ConverseStream"
    } else {
        "Converse"
    };
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let id = format!("chatcmpl-{}", request_id.replace('-', ""));
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let who = account::Request {
        api: "openai",
        operation,
        requested: &t.model,
        request_id,
        started,
        traceparent,
        request_body: None,
    };
    let fail = |ex: execute::Exhausted| {
        let e = &ex.failure.error;
        account::finish(
            state,
            &account::Finished::failed(who, Some(&plan), Some(&ex.decision), e),
        );
        OpenAiError::from(e)
    };
    let mut resp = if t.stream {
        let on_end = bedrock::stream_end(
            state,
            "openai",
            operation,
            &t.model,
            request_id,
            &plan,
            traceparent,
        );
        let (served, frames) = execute::streaming(state, &plan, on_end)
            .await
            .map_err(fail)?;
        let translator = StreamTranslator::new(&id, &t.model, created, t.include_usage);
        let mut r = bedrock::encode(request_id, &served, sse_body(frames, translator));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-cache"));
        r
    } else {
        let (served, body) = execute::unary(state, &plan).await.map_err(fail)?;
        let usage = account::unary_usage(&served.headers, &body);
        account::finish(
            state,
            &account::Finished::served(who, &plan, &served, usage, None),
        );
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            OpenAiError::from(&BedrockError::new(
                meridian_wire::ErrorKind::InternalServer,
                format!("upstream answered invalid JSON: {e}"),
            ))
        })?;
        let out = from_converse(&v, &id, &t.model, created);
        let mut r = bedrock::encode(request_id, &served, Body::from(out.to_string()));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    resp.headers_mut().insert(
        "x-request-id",
        http::HeaderValue::from_str(request_id).unwrap_or(http::HeaderValue::from_static("-")),
    );
    Ok(resp)
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Event-stream frames → SSE chunks; a failure is one `error` event, and a
/// clean end is `data: [DONE]`.
fn sse_body(mut frames: Frames, mut t: StreamTranslator) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        while let Some(item) = frames.recv().await {
            let out: Vec<Bytes> = match item.and_then(|f| {
                decode_one(&f).map_err(|e| {
                    BedrockError::new(meridian_wire::ErrorKind::ModelStreamError, e.to_string())
                })
            }) {
                Ok(frame) => match frame.kind {
                    FrameKind::Event(ev) => {
                        let payload: Value =
                            serde_json::from_slice(&frame.payload).unwrap_or_default();
                        t.event(&ev, &payload).iter().map(sse).collect()
                    }
                    FrameKind::Exception(kind) => {
                        let msg: Value = serde_json::from_slice(&frame.payload).unwrap_or_default();
                        let e = OpenAiError {
                            status: 500,
                            kind: "server_error",
                            message: format!(
                                "{kind}: {}",
                                msg["message"].as_str().unwrap_or("stream failed")
                            ),
                            param: None,
                            code: None,
                        };
                        let _ = tx.send(Ok(sse(&e.body()))).await;
                        return;
                    }
                    FrameKind::Other(_) => Vec::new(),
                },
                Err(e) => {
                    let _ = tx.send(Ok(sse(&OpenAiError::from(&e).body()))).await;
                    return;
                }
            };
            for b in out {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = state
        .config
        .models
        .iter()
        .map(|m| {
            let owner = state
                .catalog
                .model(&m.model)
                .map_or("bedrock".to_string(), |c| c.provider.clone());
            json!({"id": m.name, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    let body = json!({"object": "list", "data": data});
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// Anything else under `/v1`.
pub async fn not_found(req: Request) -> Response {
    let e = OpenAiError {
        status: 404,
        kind: "invalid_request_error",
        message: format!("no route {} {}", req.method(), req.uri().path()),
        param: None,
        code: Some("unknown_url"),
    };
    error(&respond::request_id(), &e)
}
