//! A client for OpenAI-compatible servers (vLLM, Ollama, llama.cpp, OpenAI),
//! spoken in Converse terms so such a server can be a fallback target, with
//! the same outcome classification as Bedrock.

use std::collections::VecDeque;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method};
use meridian_wire::openai::{converse_to_openai, openai_to_converse_response, stop_reason};
use meridian_wire::{Action, ErrorKind, eventstream};
use serde_json::{Value, json};

use crate::bedrock::{Failure, HttpsClient, Response, Timeouts, https_client, send_raw};
use crate::outcome::{Outcome, retry_after};

/// Whether an OpenAI-compatible server can take a Bedrock call: Converse
/// and ConverseStream, and InvokeModel (with or without a stream) with an
/// Anthropic Messages body, translated through Converse.
pub fn serves(action: Action, body: &Value) -> bool {
    if action.is_converse() {
        return true;
    }
    action.is_invoke()
        && body.get("anthropic_version").is_some()
        && meridian_wire::messages::to_converse(body).is_ok()
}

/// An OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: HttpsClient,
    base_url: String,
    api_key: Option<String>,
    timeouts: Timeouts,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8000/v1`).
    pub fn new(base_url: &str, api_key: Option<String>, timeouts: Timeouts) -> OpenAiClient {
        OpenAiClient {
            http: https_client(&timeouts),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            timeouts,
        }
    }

    async fn post(&self, body: &Value) -> Result<Response, Failure> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("content-type", "application/json")
            .body(meridian_wire::json_bytes(body))
            .map_err(|e| {
                Failure::new(
                    Outcome::Validation,
                    ErrorKind::InternalServer,
                    format!("bad URL {url}: {e}"),
                )
            })?;
        if let Some(k) = &self.api_key
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {k}"))
        {
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        let resp = send_raw(&self.http, req, &self.timeouts, &self.base_url).await?;
        if resp.status.is_success() {
            return Ok(resp);
        }
        let status = resp.status.as_u16();
        let retry = retry_after(&resp.headers);
        let body = resp.collect().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or("OpenAI-compatible upstream error")
            .to_string();
        let (outcome, kind) = match status {
            429 => (
                Outcome::Throttled { retry_after: retry },
                ErrorKind::Throttling,
            ),
            500..=599 => (
                Outcome::Unavailable { status },
                if status == 503 {
                    ErrorKind::ServiceUnavailable
                } else {
                    ErrorKind::InternalServer
                },
            ),
            401 | 403 => (Outcome::AccessDenied, ErrorKind::AccessDenied),
            404 => (Outcome::NotFound, ErrorKind::ResourceNotFound),
            408 => (Outcome::ModelTimeout, ErrorKind::ModelTimeout),
            _ => (Outcome::Validation, ErrorKind::Validation),
        };
        Err(Failure::new(outcome, kind, message))
    }

    /// A Bedrock call (see [`serves`]) answered as Bedrock would: Converse
    /// JSON, a ConverseStream event stream, or for an Anthropic Messages
    /// body the native Messages JSON or `chunk` events.
    pub async fn call(
        &self,
        model: &str,
        action: Action,
        body: &[u8],
    ) -> Result<Response, Failure> {
        let caller = |m: String| Failure::new(Outcome::Validation, ErrorKind::Validation, m);
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| caller(format!("the request body is not valid JSON: {e}")))?;
        let native = action.is_invoke();
        let converse = match action {
            _ if action.is_converse() => v,
            _ if native && v.get("anthropic_version").is_some() => {
                meridian_wire::messages::to_converse(&v).map_err(|e| caller(e.0))?
            }
            _ => {
                return Err(caller(format!(
                    "an OpenAI-compatible provider cannot serve '{}' with this body",
                    action.path()
                )));
            }
        };
        let id = format!(
            "msg_{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let mut headers = http::HeaderMap::new();
        if !action.streams() {
            let answer = self.converse(model, &converse).await?;
            let out = if native {
                meridian_wire::messages::from_converse(&answer, &id, model)
            } else {
                answer
            };
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.try_send(Ok(meridian_wire::json_bytes(&out)));
            return Ok(Response::local(
                headers,
                rx,
                self.timeouts.idle,
                &self.base_url,
            ));
        }
        let mut events = self.converse_stream(model, &converse).await?;
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut native = native.then(|| meridian_wire::messages::StreamTranslator::new(&id, model));
        tokio::spawn(async move {
            loop {
                let (kind, payload) = match events.next_event().await {
                    Ok(Some(e)) => e,
                    Ok(None) => return,
                    Err(f) => {
                        let _ = tx.send(Err(f)).await;
                        return;
                    }
                };
                let frames: Vec<Bytes> = match &mut native {
                    None => vec![eventstream::event(kind, payload.to_string().as_bytes())],
                    Some(t) => t
                        .event(kind, &payload)
                        .iter()
                        .map(|e| {
                            let b64 =
                                base64::engine::general_purpose::STANDARD.encode(e.to_string());
                            eventstream::event(
                                "chunk",
                                json!({"bytes": b64}).to_string().as_bytes(),
                            )
                        })
                        .collect(),
                };
                for f in frames {
                    // The receiver is gone when the attempt was cancelled.
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::local(
            headers,
            rx,
            self.timeouts.idle,
            &self.base_url,
        ))
    }

    /// A Converse call; the answer in Converse shape.
    pub async fn converse(&self, model: &str, converse: &Value) -> Result<Value, Failure> {
        let started = tokio::time::Instant::now();
        let resp = self
            .post(&converse_to_openai(converse, model, false))
            .await?;
        let body = resp.collect().await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                Outcome::ModelError,
                ErrorKind::ModelError,
                format!("upstream answered invalid JSON: {e}"),
            )
        })?;
        Ok(openai_to_converse_response(
            &v,
            started.elapsed().as_millis() as u64,
        ))
    }

    /// A ConverseStream call; events in Converse's order.
    pub async fn converse_stream(
        &self,
        model: &str,
        converse: &Value,
    ) -> Result<ConverseEvents, Failure> {
        let resp = self
            .post(&converse_to_openai(converse, model, true))
            .await?;
        Ok(ConverseEvents {
            resp,
            buf: String::new(),
            queue: VecDeque::new(),
            started: false,
            text_open: false,
            tools: Vec::new(),
            usage: None,
            done: false,
            began: tokio::time::Instant::now(),
        })
    }
}

/// ConverseStream events read from an OpenAI SSE stream.
#[derive(Debug)]
pub struct ConverseEvents {
    resp: Response,
    buf: String,
    queue: VecDeque<(&'static str, Value)>,
    started: bool,
    text_open: bool,
    /// Open tool blocks: OpenAI tool index → Converse block index.
    tools: Vec<(u64, u64)>,
    usage: Option<Value>,
    done: bool,
    began: tokio::time::Instant,
}

impl ConverseEvents {
    /// The next event; `None` after `metadata`.
    pub async fn next_event(&mut self) -> Result<Option<(&'static str, Value)>, Failure> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            if let Some(pos) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..pos + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data:").map(str::trim) {
                        self.on_data(data)?;
                    }
                }
                continue;
            }
            match self.resp.next_chunk().await? {
                Some(chunk) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                None => {
                    return Err(Failure::new(
                        Outcome::ConnectionReset,
                        ErrorKind::ModelStreamError,
                        "the stream ended without [DONE]".into(),
                    ));
                }
            }
        }
    }

    fn on_data(&mut self, data: &str) -> Result<(), Failure> {
        if data == "[DONE]" {
            self.finish();
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Failure::new(
                Outcome::ModelError,
                ErrorKind::ModelStreamError,
                format!("bad SSE data: {e}"),
            )
        })?;
        if let Some(err) = v.get("error") {
            return Err(Failure::new(
                Outcome::ModelError,
                ErrorKind::ModelStreamError,
                err["message"]
                    .as_str()
                    .unwrap_or("stream error")
                    .to_string(),
            ));
        }
        if !self.started {
            self.started = true;
            self.queue
                .push_back(("messageStart", json!({"role": "assistant"})));
        }
        if v["usage"].is_object() {
            self.usage = Some(v["usage"].clone());
        }
        let Some(choice) = v["choices"].get(0) else {
            return Ok(());
        };
        let delta = &choice["delta"];
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text_open = true;
            self.queue.push_back((
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": t}}),
            ));
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let idx = tc["index"].as_u64().unwrap_or(0);
            let block = match self.tools.iter().find(|(i, _)| *i == idx) {
                Some((_, b)) => *b,
                None => {
                    let b = 1 + self.tools.len() as u64;
                    self.tools.push((idx, b));
                    self.queue.push_back(("contentBlockStart", json!({"contentBlockIndex": b, "start": {"toolUse": {"toolUseId": tc["id"], "name": tc["function"]["name"]}}})));
                    b
                }
            };
            if let Some(args) = tc["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                self.queue.push_back((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": block, "delta": {"toolUse": {"input": args}}}),
                ));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.stop(f);
        }
        Ok(())
    }

    fn stop(&mut self, finish: &str) {
        if self.text_open {
            self.queue
                .push_back(("contentBlockStop", json!({"contentBlockIndex": 0})));
            self.text_open = false;
        }
        for (_, b) in self.tools.drain(..) {
            self.queue
                .push_back(("contentBlockStop", json!({"contentBlockIndex": b})));
        }
        self.queue
            .push_back(("messageStop", json!({"stopReason": stop_reason(finish)})));
    }

    fn finish(&mut self) {
        let u = self.usage.take().unwrap_or_default();
        let (i, o) = (
            u["prompt_tokens"].as_u64().unwrap_or(0),
            u["completion_tokens"].as_u64().unwrap_or(0),
        );
        let ms = self.began.elapsed().as_millis() as u64;
        self.queue.push_back(("metadata", json!({"usage": {"inputTokens": i, "outputTokens": o, "totalTokens": i + o}, "metrics": {"latencyMs": ms}})));
        self.done = true;
    }
}
