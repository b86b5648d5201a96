//! Anthropic's Message Batches: `POST /v1/messages/batches`,
//! `GET /v1/messages/batches[/{id}]`, `GET …/{id}/results` (JSONL),
//! `POST …/{id}/cancel`. Each request's `params` becomes an InvokeModel
//! record (the Messages body as Bedrock takes it); results are made from the
//! job's output when they are read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use meridian_wire::BedrockError;
use serde_json::{Value, json};

use super::{Api, Job, Line, Record, Status, Submission};
use crate::anthropic::{Anthropic, AnthropicError};
use crate::canonical::Head;
use crate::execute::{Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::respond;
use crate::state::AppState;

/// The Message Batches endpoints.
#[derive(Debug)]
pub struct AnthropicBatches;

pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    pipeline::handle::<AnthropicBatches>(live.get(), req).await
}

fn ae(e: &BedrockError) -> AnthropicError {
    Anthropic::from_bedrock(e)
}

fn not_found(id: &str) -> AnthropicError {
    AnthropicError {
        status: 404,
        kind: "not_found_error",
        message: format!("No message batch with ID '{id}'."),
    }
}

impl FrontDoor for AnthropicBatches {
    const API: &'static str = "anthropic";
    const SIGNING_SERVICES: &'static [&'static str] = Anthropic::SIGNING_SERVICES;
    type Ctx = ();
    type Error = AnthropicError;

    fn head(parts: &Parts) -> Head {
        Head {
            operation: if parts.method == http::Method::POST {
                "CreateMessageBatch"
            } else {
                "GetMessageBatch"
            },
            requested: String::new(),
            invocation: false,
        }
    }

    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        _request_id: &str,
        tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<(), AnthropicError>, AnthropicError> {
        let state = state.clone();
        let tenant = super::shared_tenant(&state, tenant);
        let method = parts.method.clone();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let headers = parts.headers.clone();
        Ok(Decoded::Pending(Box::pin(async move {
            let rest = path
                .trim_start_matches("/anthropic")
                .trim_start_matches("/v1/messages/batches");
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            let resp = match (method.as_str(), segs.as_slice()) {
                ("POST", []) => create(&state, &tenant, &headers, &body).await,
                ("GET", []) => list(&state, &tenant.name, &query).await,
                ("GET", [id]) => get(&state, &tenant.name, id).await,
                ("GET", [id, "results"]) => results(&state, &tenant.name, id).await,
                ("POST", [id, "cancel"]) => cancel(&state, &tenant.name, id).await,
                _ => Err(AnthropicError {
                    status: 404,
                    kind: "not_found_error",
                    message: format!("no route {method} {path}"),
                }),
            }?;
            Ok(Decoded::Local(resp))
        })))
    }

    fn unary(
        _: (),
        _: &Served,
        _: Bytes,
        _: &crate::usage::Usage,
    ) -> Result<Response, AnthropicError> {
        Err(not_found(""))
    }

    fn stream(_: (), _: &Served, _: Events) -> Response {
        respond::with(500, None, Body::empty())
    }

    fn from_bedrock(e: &BedrockError) -> AnthropicError {
        Anthropic::from_bedrock(e)
    }

    fn code(e: &AnthropicError) -> (u16, &'static str) {
        Anthropic::code(e)
    }

    fn error(request_id: &str, e: &AnthropicError) -> Response {
        Anthropic::error(request_id, e)
    }
}

fn rfc3339(secs: u64) -> String {
    meridian_wire::civil::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

fn batch_json(job: &Job) -> Value {
    let s = job.settled.unwrap_or_default();
    let sent = (job.lines.len() - job.refused()) as u64;
    let (processing, canceled, expired) = match job.status {
        Status::Cancelled => (0, sent.saturating_sub(s.succeeded + s.errored), 0),
        Status::Expired => (0, 0, sent.saturating_sub(s.succeeded + s.errored)),
        st if st.ended() => (0, 0, 0),
        _ => (sent, 0, 0),
    };
    let ended = job.status.ended();
    json!({
        "id": job.id,
        "type": "message_batch",
        "processing_status": match job.status {
            Status::Cancelling => "canceling",
            st if st.ended() => "ended",
            _ => "in_progress",
        },
        "request_counts": {
            "processing": processing,
            "succeeded": s.succeeded,
            "errored": s.errored + job.refused() as u64 + if job.status == Status::Failed { sent.saturating_sub(s.succeeded + s.errored) } else { 0 },
            "canceled": canceled,
            "expired": expired,
        },
        "created_at": rfc3339(job.created_at),
        "expires_at": rfc3339(job.expires_at),
        "ended_at": job.ended_at.map(rfc3339),
        "cancel_initiated_at": job.cancelling_at.map(rfc3339),
        "archived_at": null,
        "results_url": ended.then(|| format!("{}/v1/messages/batches/{}/results", job.base_url, job.id)),
    })
}

async fn create(
    state: &AppState,
    tenant: &Arc<meridian_config::Tenant>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, AnthropicError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AnthropicError::invalid(format!("the request body is not valid JSON: {e}")))?;
    let requests = v["requests"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| AnthropicError::invalid("requests: a non-empty list is required"))?;
    let mut model: Option<String> = None;
    let mut seen = HashSet::new();
    let (mut lines, mut records) = (Vec::new(), Vec::new());
    for (i, r) in requests.iter().enumerate() {
        let custom_id = r["custom_id"].as_str().ok_or_else(|| {
            AnthropicError::invalid(format!("requests.{i}.custom_id: field required"))
        })?;
        if !seen.insert(custom_id.to_string()) {
            return Err(AnthropicError::invalid(format!(
                "requests.{i}.custom_id: '{custom_id}' is used twice"
            )));
        }
        let mut params = r["params"].clone();
        let Some(obj) = params.as_object_mut() else {
            return Err(AnthropicError::invalid(format!(
                "requests.{i}.params: field required"
            )));
        };
        let m = match obj.remove("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => {
                return Err(AnthropicError::invalid(format!(
                    "requests.{i}.params.model: field required"
                )));
            }
        };
        match &model {
            None => model = Some(m.clone()),
            Some(first) if *first != m => {
                return Err(AnthropicError::invalid(format!(
                    "requests.{i}.params.model: Meridian runs a message batch as one Bedrock job, on one model ('{first}'), not '{m}'"
                )));
            }
            Some(_) => {}
        }
        if obj.remove("stream").is_some_and(|s| s == json!(true)) {
            return Err(AnthropicError::invalid(format!(
                "requests.{i}.params.stream: batch requests do not stream"
            )));
        }
        if !obj.get("max_tokens").is_some_and(Value::is_u64)
            || !obj.get("messages").is_some_and(Value::is_array)
        {
            return Err(AnthropicError::invalid(format!(
                "requests.{i}.params: max_tokens and messages are required"
            )));
        }
        obj.insert(
            "anthropic_version".into(),
            json!(meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION),
        );
        let line = match super::guard(state, tenant, &m, &mut params) {
            Ok(restore) => {
                records.push(Record {
                    index: i,
                    input: params,
                });
                Line {
                    custom_id: Some(custom_id.to_string()),
                    refused: None,
                    restore,
                }
            }
            Err(why) => Line {
                custom_id: Some(custom_id.to_string()),
                refused: Some(("guard_blocked".into(), why)),
                restore: Vec::new(),
            },
        };
        lines.push(line);
    }
    let model = model.unwrap_or_default();
    if !crate::anthropic::anthropic_model(state, &model) {
        return Err(AnthropicError::invalid(format!(
            "'{model}' is not an Anthropic model; message batches run Claude models"
        )));
    }
    let sub = Submission {
        api: Api::Anthropic,
        id: super::new_id("msgbatch_"),
        endpoint: "/v1/messages".into(),
        model,
        invocation_type: "InvokeModel",
        lines,
        records,
        input_file_id: None,
        metadata: Value::Null,
        expires_in: Duration::from_secs(24 * 3600),
        base_url: super::base_url(state, headers),
    };
    let job = super::submit(state, tenant, headers, sub)
        .await
        .map_err(|e| ae(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn find(state: &AppState, tenant: &str, id: &str) -> Result<Job, AnthropicError> {
    super::find(state, tenant, id, Api::Anthropic)
        .await
        .map_err(|e| ae(&e))?
        .ok_or_else(|| not_found(id))
}

async fn get(state: &AppState, tenant: &str, id: &str) -> Result<Response, AnthropicError> {
    let job = find(state, tenant, id).await?;
    let job = super::refresh(state, job).await.map_err(|e| ae(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn cancel(state: &AppState, tenant: &str, id: &str) -> Result<Response, AnthropicError> {
    let job = find(state, tenant, id).await?;
    let job = super::cancel(state, job).await.map_err(|e| ae(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn list(state: &AppState, tenant: &str, query: &str) -> Result<Response, AnthropicError> {
    let (jobs, more) = super::page(state, tenant, Api::Anthropic, query, "after_id", 1000)
        .await
        .map_err(|e| ae(&e))?;
    let page: Vec<Value> = jobs.iter().map(batch_json).collect();
    Ok(respond::json(&json!({
        "data": page,
        "has_more": more,
        "first_id": page.first().map(|b| b["id"].clone()),
        "last_id": page.last().map(|b| b["id"].clone()),
    })))
}

async fn results(state: &AppState, tenant: &str, id: &str) -> Result<Response, AnthropicError> {
    let job = find(state, tenant, id).await?;
    let job = super::refresh(state, job).await.map_err(|e| ae(&e))?;
    if !job.status.ended() {
        return Err(AnthropicError {
            status: 400,
            kind: "invalid_request_error",
            message: format!(
                "Message batch {id} is still processing; its results are ready when it has ended."
            ),
        });
    }
    let records = super::outputs(state, &job).await.map_err(|e| ae(&e))?;
    let mut out = String::new();
    for (i, line) in job.lines.iter().enumerate() {
        let err = |kind: &str, message: &str| json!({"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message}}});
        let result = match (&line.refused, records.get(&super::record_id(i))) {
            (Some((_, why)), _) => err("invalid_request_error", why),
            (None, Some(r)) if r.get("modelOutput").is_some() && r.get("error").is_none() => {
                let mut m = r["modelOutput"].clone();
                line.restore_into(&mut m);
                m["model"] = json!(job.model);
                json!({"type": "succeeded", "message": m})
            }
            (None, Some(r)) => err(
                "invalid_request_error",
                r["error"]["errorMessage"]
                    .as_str()
                    .unwrap_or("the request failed"),
            ),
            (None, None) => match job.status {
                Status::Cancelled => json!({"type": "canceled"}),
                Status::Expired => json!({"type": "expired"}),
                _ => err(
                    "api_error",
                    "Bedrock's job returned no result for this request.",
                ),
            },
        };
        out.push_str(&json!({"custom_id": line.custom_id, "result": result}).to_string());
        out.push('\n');
    }
    Ok(respond::with(
        200,
        Some("application/binary"),
        Body::from(out),
    ))
}
