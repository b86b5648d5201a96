//! OpenAI's files and batches: `POST /v1/files` (purpose `batch`),
//! `GET /v1/files/{id}` and `/content`; `POST /v1/batches`,
//! `GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`. Lines of
//! `/v1/chat/completions` become Converse records, lines of
//! `/v1/embeddings` InvokeModel records; output and error files are made
//! from the job's results when they are read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use meridian_wire::BedrockError;
use meridian_wire::openai::{OpenAiError, from_converse, to_converse};
use serde_json::{Value, json};

use super::{Api, FileRec, Job, Line, Record, Status, Submission};
use crate::canonical::Head;
use crate::execute::{Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::respond;
use crate::state::AppState;

/// The OpenAI files and batches endpoints.
#[derive(Debug)]
pub struct OpenAiBatches;

pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    pipeline::handle::<OpenAiBatches>(live.get(), req).await
}

fn not_found(what: &str, id: &str) -> OpenAiError {
    OpenAiError {
        status: 404,
        kind: "invalid_request_error",
        message: format!("No {what} with ID '{id}'."),
        param: None,
        code: Some("not_found"),
    }
}

fn oe(e: &BedrockError) -> OpenAiError {
    OpenAiError::from(e)
}

impl FrontDoor for OpenAiBatches {
    const API: &'static str = "openai";
    type Ctx = ();
    type Error = OpenAiError;

    fn head(parts: &Parts) -> Head {
        let op = match (parts.method.as_str(), parts.uri.path()) {
            ("POST", "/v1/files") => "UploadFile",
            ("POST", "/v1/batches") => "CreateBatch",
            ("POST", _) => "CancelBatch",
            (_, p) if p.starts_with("/v1/files") => "GetFile",
            _ => "GetBatch",
        };
        Head {
            operation: op,
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
    ) -> Result<Decoded<(), OpenAiError>, OpenAiError> {
        let state = state.clone();
        let tenant = super::shared_tenant(&state, tenant);
        let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
        let query = parts.uri.query().unwrap_or("").to_string();
        let headers = parts.headers.clone();
        Ok(Decoded::Pending(Box::pin(async move {
            let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
            let resp = match (method.as_str(), segs.as_slice()) {
                ("POST", ["files"]) => upload(&state, &tenant.name, &headers, &body).await,
                ("GET", ["files", id]) => file(&state, &tenant.name, id).await,
                ("GET", ["files", id, "content"]) => content(&state, &tenant.name, id).await,
                ("POST", ["batches"]) => create(&state, &tenant, &headers, &body).await,
                ("GET", ["batches"]) => list(&state, &tenant.name, &query).await,
                ("GET", ["batches", id]) => get(&state, &tenant.name, id).await,
                ("POST", ["batches", id, "cancel"]) => cancel(&state, &tenant.name, id).await,
                _ => Err(OpenAiError {
                    status: 404,
                    kind: "invalid_request_error",
                    message: format!("no route {method} {path}"),
                    param: None,
                    code: Some("unknown_url"),
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
    ) -> Result<Response, OpenAiError> {
        Err(not_found("answer", ""))
    }

    fn stream(_: (), _: &Served, _: Events) -> Response {
        respond::with(500, None, Body::empty())
    }

    fn from_bedrock(e: &BedrockError) -> OpenAiError {
        OpenAiError::from(e)
    }

    fn code(e: &OpenAiError) -> (u16, &'static str) {
        (e.status, e.code.unwrap_or(e.kind))
    }

    fn error(_request_id: &str, e: &OpenAiError) -> Response {
        respond::with(
            e.status,
            Some("application/json"),
            Body::from(meridian_wire::json_bytes(&e.body())),
        )
    }
}

/// One part of a form: its name, file name and bytes.
type Part<'b> = (String, Option<String>, &'b [u8]);

/// The parts of a `multipart/form-data` body.
fn multipart<'b>(headers: &http::HeaderMap, body: &'b [u8]) -> Result<Vec<Part<'b>>, OpenAiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .ok_or_else(|| OpenAiError::invalid("file", "expected a multipart/form-data upload"))?;
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, delim.as_bytes()) {
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content = &rest[head_end + 4..];
        let end = find(content, format!("\r\n{delim}").as_bytes()).unwrap_or(content.len());
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default();
        let param = |name: &str| {
            disp.split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        if let Some(name) = param("name") {
            out.push((name, param("filename"), &content[..end]));
        }
        rest = &content[end..];
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn file_json(f: &FileRec) -> Value {
    json!({"id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at,
        "expires_at": f.expires_at, "filename": f.filename, "purpose": f.purpose, "status": "processed"})
}

async fn upload(
    state: &AppState,
    tenant: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, OpenAiError> {
    let parts = multipart(headers, body)?;
    let purpose = parts
        .iter()
        .find(|(n, ..)| n == "purpose")
        .map(|(_, _, v)| String::from_utf8_lossy(v).trim().to_string())
        .unwrap_or_default();
    if purpose != "batch" {
        return Err(OpenAiError::invalid(
            "purpose",
            format!(
                "Meridian keeps files for batches only: purpose must be 'batch', not '{purpose}'."
            ),
        ));
    }
    let (_, filename, content) = parts
        .iter()
        .find(|(n, ..)| n == "file")
        .ok_or_else(|| OpenAiError::invalid("file", "the upload has no 'file' part"))?;
    let text = std::str::from_utf8(content)
        .map_err(|_| OpenAiError::invalid("file", "a batch file is UTF-8 JSONL"))?;
    let now = super::now_secs();
    let f = FileRec {
        id: super::new_id("file-"),
        filename: filename.clone().unwrap_or_else(|| "batch.jsonl".into()),
        purpose,
        bytes: content.len() as u64,
        created_at: now,
        expires_at: now + state.config.batch.retention.as_secs(),
        content: Some(text.to_string()),
        of_batch: None,
    };
    super::save_file(state, tenant, &f)
        .await
        .map_err(|e| oe(&e))?;
    Ok(respond::json(&file_json(&f)))
}

/// A file: an upload, or a batch's output or error file.
async fn find_file(state: &AppState, tenant: &str, id: &str) -> Result<FileRec, OpenAiError> {
    if let Some(f) = super::load_file(state, tenant, id)
        .await
        .map_err(|e| oe(&e))?
    {
        return Ok(f);
    }
    // A batch's output and error files are named after it.
    for (kind, suffix) in [("output", "-output"), ("error", "-errors")] {
        if let Some(batch) = id
            .strip_prefix("file-")
            .and_then(|r| r.strip_suffix(suffix))
            && let Some(job) = super::load(state, tenant, batch)
                .await
                .map_err(|e| oe(&e))?
            && job.status.ended()
        {
            return Ok(FileRec {
                id: id.to_string(),
                filename: format!("{}_{kind}.jsonl", job.id),
                purpose: "batch_output".into(),
                bytes: 0,
                created_at: job.ended_at.unwrap_or(job.created_at),
                expires_at: job.created_at + state.config.batch.retention.as_secs(),
                content: None,
                of_batch: Some((job.id.clone(), kind.to_string())),
            });
        }
    }
    Err(not_found("file", id))
}

async fn file(state: &AppState, tenant: &str, id: &str) -> Result<Response, OpenAiError> {
    let f = find_file(state, tenant, id).await?;
    Ok(respond::json(&file_json(&f)))
}

async fn content(state: &AppState, tenant: &str, id: &str) -> Result<Response, OpenAiError> {
    let f = find_file(state, tenant, id).await?;
    let text = match (&f.content, &f.of_batch) {
        (Some(c), _) => c.clone(),
        (None, Some((batch, kind))) => {
            let job = super::load(state, tenant, batch)
                .await
                .map_err(|e| oe(&e))?
                .ok_or_else(|| not_found("file", id))?;
            let (out, errors) = results(state, &job).await?;
            if kind == "output" { out } else { errors }
        }
        (None, None) => String::new(),
    };
    Ok(respond::with(
        200,
        Some("application/jsonl"),
        Body::from(text),
    ))
}

/// The output and error files of an ended batch, in line order.
async fn results(state: &AppState, job: &Job) -> Result<(String, String), OpenAiError> {
    let records = super::outputs(state, job).await.map_err(|e| oe(&e))?;
    let (mut out, mut errors) = (String::new(), String::new());
    for (i, line) in job.lines.iter().enumerate() {
        let id = format!("batch_req_{}_{i}", job.id.trim_start_matches("batch_"));
        if let Some((code, message)) = &line.refused {
            let v = json!({"id": id, "custom_id": line.custom_id, "response": null,
                "error": {"code": code, "message": message}});
            errors.push_str(&v.to_string());
            errors.push('\n');
            continue;
        }
        let rec = records.get(&super::record_id(i));
        let entry = match rec {
            Some(r) if r.get("modelOutput").is_some() && r.get("error").is_none() => {
                let mut body = answer(job, i, &r["modelOutput"]);
                line.restore_into(&mut body);
                out.push_str(&json!({"id": id, "custom_id": line.custom_id,
                    "response": {"status_code": 200, "request_id": id, "body": body}, "error": null}).to_string());
                out.push('\n');
                continue;
            }
            Some(r) => json!({"id": id, "custom_id": line.custom_id,
                "response": {"status_code": r["error"]["errorCode"].as_u64().unwrap_or(500), "request_id": id,
                    "body": {"error": {"message": r["error"]["errorMessage"], "type": "invalid_request_error"}}},
                "error": null}),
            None => {
                let (code, message) = match job.status {
                    Status::Cancelled => (
                        "batch_cancelled",
                        "The batch was cancelled before this request ran.",
                    ),
                    Status::Expired => (
                        "batch_expired",
                        "The batch expired before this request ran.",
                    ),
                    _ => (
                        "not_processed",
                        "Bedrock's job returned no result for this request.",
                    ),
                };
                json!({"id": id, "custom_id": line.custom_id, "response": null,
                    "error": {"code": code, "message": message}})
            }
        };
        errors.push_str(&entry.to_string());
        errors.push('\n');
    }
    Ok((out, errors))
}

/// One result in the shape the endpoint answers.
fn answer(job: &Job, i: usize, output: &Value) -> Value {
    if job.endpoint == "/v1/embeddings" {
        let tokens = output["inputTextTokenCount"].as_u64().unwrap_or(0);
        return json!({"object": "list", "model": job.model,
            "data": [{"object": "embedding", "index": 0, "embedding": output["embedding"]}],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    }
    let created = job.ended_at.unwrap_or(job.created_at);
    from_converse(
        output,
        &format!("chatcmpl-{}{i}", job.id.trim_start_matches("batch_")),
        &job.model,
        created,
    )
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Validating => "validating",
        Status::InProgress => "in_progress",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Cancelling => "cancelling",
        Status::Cancelled => "cancelled",
        Status::Expired => "expired",
    }
}

fn batch_json(job: &Job) -> Value {
    let settled = job.settled.unwrap_or_default();
    let at = |s: Status| (job.status == s).then_some(job.ended_at).flatten();
    let errors = (!job.errors.is_empty()).then(|| {
        json!({"object": "list", "data": job.errors.iter().map(|m| json!({"code": "batch_failed", "message": m, "param": null, "line": null})).collect::<Vec<_>>()})
    });
    json!({
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "model": job.model,
        "errors": errors,
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": status_name(job.status),
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": job.created_at,
        "in_progress_at": (job.status != Status::Validating && job.job_arn.is_some()).then_some(job.created_at),
        "expires_at": job.expires_at,
        "finalizing_at": at(Status::Completed),
        "completed_at": at(Status::Completed),
        "failed_at": at(Status::Failed),
        "expired_at": at(Status::Expired),
        "cancelling_at": job.cancelling_at,
        "cancelled_at": at(Status::Cancelled),
        "request_counts": {
            "total": job.lines.len(),
            "completed": settled.succeeded,
            "failed": job.refused() as u64 + settled.errored,
        },
        "usage": job.settled.map(|s| json!({"input_tokens": s.input_tokens, "output_tokens": s.output_tokens, "total_tokens": s.input_tokens + s.output_tokens})),
        "metadata": job.metadata,
        "x_meridian": {"region": job.region, "model_id": job.model_id, "estimated_cost_usd": job.estimate_usd,
            "cost_usd": job.settled.map(|s| s.cost_usd), "padded_records": job.padded},
    })
}

/// Splits a batch file into lines refused with their reasons and records.
fn prepare(
    state: &AppState,
    tenant: &meridian_config::Tenant,
    endpoint: &str,
    text: &str,
) -> Result<(String, Vec<Line>, Vec<Record>), OpenAiError> {
    let mut model: Option<String> = None;
    let mut seen = HashSet::new();
    let (mut lines, mut records) = (Vec::new(), Vec::new());
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let i = lines.len();
        let refuse = |custom_id: Option<String>, code: &str, message: String| Line {
            custom_id,
            refused: Some((code.to_string(), message)),
            restore: Vec::new(),
        };
        let v: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                lines.push(refuse(
                    None,
                    "invalid_json",
                    format!("Line {} is not valid JSON: {e}", i + 1),
                ));
                continue;
            }
        };
        let custom_id = v["custom_id"].as_str().map(str::to_string);
        let Some(cid) = custom_id.clone() else {
            lines.push(refuse(
                None,
                "missing_custom_id",
                format!("Line {} has no custom_id.", i + 1),
            ));
            continue;
        };
        if !seen.insert(cid.clone()) {
            lines.push(refuse(
                custom_id,
                "duplicate_custom_id",
                format!("custom_id '{cid}' is used twice."),
            ));
            continue;
        }
        if v["url"].as_str() != Some(endpoint) || v["method"].as_str().is_some_and(|m| m != "POST")
        {
            lines.push(refuse(
                custom_id,
                "invalid_url",
                format!(
                    "Line {} must be a POST to {endpoint}, the batch's endpoint.",
                    i + 1
                ),
            ));
            continue;
        }
        let body = &v["body"];
        let Some(m) = body["model"].as_str() else {
            lines.push(refuse(
                custom_id,
                "invalid_request",
                format!("Line {} has no body.model.", i + 1),
            ));
            continue;
        };
        match &model {
            None => model = Some(m.to_string()),
            Some(first) if first != m => {
                lines.push(refuse(custom_id, "model_mismatch", format!(
                    "Line {} asks for '{m}'; a batch runs as one Bedrock job, on one model ('{first}').", i + 1)));
                continue;
            }
            Some(_) => {}
        }
        let input = if endpoint == "/v1/embeddings" {
            embedding_input(state, body)
        } else {
            chat_input(body)
        };
        let mut input = match input {
            Ok(x) => x,
            Err(e) => {
                lines.push(refuse(custom_id, "invalid_request", e));
                continue;
            }
        };
        let restore = match super::guard(state, tenant, m, &mut input) {
            Ok(r) => r,
            Err(why) => {
                lines.push(refuse(custom_id, "guard_blocked", why));
                continue;
            }
        };
        lines.push(Line {
            custom_id,
            refused: None,
            restore,
        });
        records.push(Record { index: i, input });
    }
    let model = model.ok_or_else(|| {
        OpenAiError::invalid("input_file_id", "the file has no valid request line")
    })?;
    Ok((model, lines, records))
}

fn chat_input(body: &Value) -> Result<Value, String> {
    let t = to_converse(body).map_err(|e| e.message)?;
    let mut c = t.converse;
    if c.get("toolConfig").is_some() {
        return Err("Bedrock batch inference in the Converse format takes no tools.".into());
    }
    meridian_wire::converse::validate_request(&c).map_err(|e| e.message)?;
    if let Some(o) = c.as_object_mut() {
        o.remove("modelId");
    }
    Ok(c)
}

fn embedding_input(state: &AppState, body: &Value) -> Result<Value, String> {
    let req = meridian_wire::openai::embeddings::parse(body).map_err(|e| e.message)?;
    let base = state
        .catalog_model(&req.model)
        .map(|m| m.id.clone())
        .filter(|b| meridian_wire::openai::embeddings::supported(b))
        .ok_or_else(|| {
            format!(
                "'{}' is not an embedding model Meridian can call",
                req.model
            )
        })?;
    let mut bodies =
        meridian_wire::openai::embeddings::bodies(&req, &base).map_err(|e| e.message)?;
    if bodies.len() != 1 {
        return Err("A batch embeddings line takes one input.".into());
    }
    Ok(bodies.remove(0))
}

async fn create(
    state: &AppState,
    tenant: &Arc<meridian_config::Tenant>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, OpenAiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        OpenAiError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    let endpoint = v["endpoint"].as_str().unwrap_or_default().to_string();
    if !matches!(endpoint.as_str(), "/v1/chat/completions" | "/v1/embeddings") {
        return Err(OpenAiError::invalid(
            "endpoint",
            format!(
                "Meridian runs batches of /v1/chat/completions or /v1/embeddings, not '{endpoint}'."
            ),
        ));
    }
    if v["completion_window"].as_str().is_some_and(|w| w != "24h") {
        return Err(OpenAiError::invalid(
            "completion_window",
            "completion_window must be '24h'",
        ));
    }
    let file_id = v["input_file_id"]
        .as_str()
        .ok_or_else(|| OpenAiError::invalid("input_file_id", "'input_file_id' is required"))?;
    let f = super::load_file(state, &tenant.name, file_id)
        .await
        .map_err(|e| oe(&e))?
        .ok_or_else(|| not_found("file", file_id))?;
    let text = f.content.unwrap_or_default();
    let (model, lines, records) = prepare(state, tenant, &endpoint, &text)?;
    let sub = Submission {
        api: Api::OpenAi,
        id: super::new_id("batch_"),
        invocation_type: if endpoint == "/v1/embeddings" {
            "InvokeModel"
        } else {
            "Converse"
        },
        endpoint,
        model,
        lines,
        records,
        input_file_id: Some(file_id.to_string()),
        metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
        expires_in: Duration::from_secs(24 * 3600),
        base_url: super::base_url(state, headers),
    };
    let job = super::submit(state, tenant, headers, sub)
        .await
        .map_err(|e| oe(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn find_batch(state: &AppState, tenant: &str, id: &str) -> Result<Job, OpenAiError> {
    super::find(state, tenant, id, Api::OpenAi)
        .await
        .map_err(|e| oe(&e))?
        .ok_or_else(|| not_found("batch", id))
}

async fn get(state: &AppState, tenant: &str, id: &str) -> Result<Response, OpenAiError> {
    let job = find_batch(state, tenant, id).await?;
    let job = super::refresh(state, job).await.map_err(|e| oe(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn cancel(state: &AppState, tenant: &str, id: &str) -> Result<Response, OpenAiError> {
    let job = find_batch(state, tenant, id).await?;
    let job = super::cancel(state, job).await.map_err(|e| oe(&e))?;
    Ok(respond::json(&batch_json(&job)))
}

async fn list(state: &AppState, tenant: &str, query: &str) -> Result<Response, OpenAiError> {
    let (jobs, more) = super::page(state, tenant, Api::OpenAi, query, "after", 100)
        .await
        .map_err(|e| oe(&e))?;
    let page: Vec<Value> = jobs.iter().map(batch_json).collect();
    Ok(respond::json(&json!({
        "object": "list",
        "first_id": page.first().map(|b| b["id"].clone()),
        "last_id": page.last().map(|b| b["id"].clone()),
        "has_more": more,
        "data": page,
    })))
}

/// `k=v&…` pairs, percent-decoded.
pub(super) fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(x) => {
                    out.push(x);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_are_read() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--XyZ--\r\n";
        let parts = multipart(&h, body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "purpose");
        assert_eq!(parts[0].2, b"batch");
        assert_eq!(parts[1].1.as_deref(), Some("in.jsonl"));
        assert_eq!(parts[1].2, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn query_pairs_are_decoded() {
        assert_eq!(
            url_pairs("limit=2&after=batch_%41b+c"),
            vec![
                ("limit".into(), "2".into()),
                ("after".into(), "batch_Ab c".into())
            ]
        );
    }
}
