//! Batch inference jobs, as Bedrock's control plane runs them:
//! `CreateModelInvocationJob`, `GetModelInvocationJob`,
//! `ListModelInvocationJobs`, `StopModelInvocationJob` on each region's
//! endpoint. A job reads JSONL records from S3 (a bucket in its own region),
//! processes each one as the region's runtime would (the same checks,
//! placement and records), and writes `{output}/{job id}/{file}.out` and
//! `manifest.json.out` back. What Bedrock refuses is refused: a bucket in
//! another region, fewer than [`MIN_RECORDS`] records, `toolConfig` in a
//! Converse record, a region at its job quota (`surfaces_down: ["batch"]`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt as _;
use meridian_wire::{BedrockError, ErrorKind};

use serde_json::{Value, json};

pub use crate::job::Job;
use crate::region::{ACCOUNT, Ctx, Log};
use crate::s3::{S3, S3Uri};

/// Fewest records a batch inference job takes.
pub const MIN_RECORDS: usize = 100;
/// Records processed at once by one job.
const PARALLEL: usize = 8;

fn now() -> String {
    meridian_wire::civil::rfc3339(SystemTime::now())
}

fn error(e: &BedrockError) -> Response {
    let mut r = axum::response::IntoResponse::into_response((
        http::StatusCode::from_u16(e.kind.status()).unwrap_or(http::StatusCode::BAD_REQUEST),
        axum::Json(json!({"message": e.message})),
    ));
    if let Ok(v) = http::HeaderValue::from_str(e.kind.name()) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn ok(v: &Value) -> Response {
    axum::response::IntoResponse::into_response(axum::Json(v.clone()))
}

/// Reads and authenticates a control-plane request.
async fn take(ctx: &Ctx, req: Request) -> Result<(http::request::Parts, Bytes), BedrockError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, crate::region::MAX_BODY)
        .await
        .map_err(|_| BedrockError::validation("the request body is too large"))?;
    ctx.take(&parts, &body, "bedrock", "batch-control")?;
    Ok((parts, body))
}

/// `POST /model-invocation-job`.
pub async fn create(State(ctx): State<Ctx>, req: Request) -> Response {
    match create_job(&ctx, req).await {
        Ok(arn) => ok(&json!({ "jobArn": arn })),
        Err(e) => error(&e),
    }
}

fn required<'v>(v: &'v Value, pointer: &str, name: &str) -> Result<&'v str, BedrockError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| BedrockError::validation(format!("{name} is required.")))
}

async fn create_job(ctx: &Ctx, req: Request) -> Result<String, BedrockError> {
    let (_, body) = take(ctx, req).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        BedrockError::validation(format!("the request body is not valid JSON: {e}"))
    })?;
    let name = required(&v, "/jobName", "jobName")?;
    let valid_name = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+.".contains(c));
    if !valid_name {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{name}' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,63}}(-*[a-zA-Z0-9\\+\\-\\.]){{0,63}}"
        )));
    }
    let role = required(&v, "/roleArn", "roleArn")?;
    if !(role.starts_with("arn:aws") && role.contains(":iam::") && role.contains(":role/")) {
        return Err(BedrockError::validation(format!(
            "roleArn '{role}' is not an IAM role ARN."
        )));
    }
    let model = required(&v, "/modelId", "modelId")?;
    let input = required(
        &v,
        "/inputDataConfig/s3InputDataConfig/s3Uri",
        "inputDataConfig.s3InputDataConfig.s3Uri",
    )?;
    let output = required(
        &v,
        "/outputDataConfig/s3OutputDataConfig/s3Uri",
        "outputDataConfig.s3OutputDataConfig.s3Uri",
    )?;
    let kind = v["modelInvocationType"].as_str().unwrap_or("InvokeModel");
    if !matches!(kind, "InvokeModel" | "Converse") {
        return Err(BedrockError::validation(format!(
            "modelInvocationType must be InvokeModel or Converse, not '{kind}'."
        )));
    }
    let token = v["clientRequestToken"].as_str().map(str::to_string);
    if let Some(t) = &token
        && let Some(j) = ctx.shared.batch.lock().iter().find(|j| {
            j.region == *ctx.region && j.client_request_token.as_deref() == Some(t.as_str())
        })
    {
        return Ok(j.job_arn.clone());
    }
    if ctx
        .shared
        .faults(&ctx.region)
        .surfaces_down
        .iter()
        .any(|s| s == "batch")
    {
        return Err(BedrockError::new(
            ErrorKind::ServiceQuotaExceeded,
            format!(
                "The number of in-progress and submitted batch inference jobs for this account in {} has reached its quota; wait for a job to finish and try again.",
                ctx.region
            ),
        ));
    }
    // The model must be one this region serves on demand (or a profile it routes).
    ctx.place(model)?;
    let s3 = fleet_s3(ctx)?;
    for (what, uri) in [("input", input), ("output", output)] {
        let u = S3Uri::parse(uri).ok_or_else(|| {
            BedrockError::validation(format!("The {what} S3 URI '{uri}' is not an s3:// URI."))
        })?;
        let region = s3
            .bucket_region(&u.bucket)
            .await
            .map_err(BedrockError::validation)?;
        if region != *ctx.region {
            return Err(BedrockError::validation(format!(
                "The {what} S3 bucket '{}' is in {region}; a batch inference job in {} reads and writes S3 buckets in its own region.",
                u.bucket, ctx.region
            )));
        }
    }
    let n = ctx
        .shared
        .batch_seq
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let id = format!(
        "{:012x}",
        crate::rng::hash(format!("{}/{n}", ctx.region).as_bytes()) & 0xffff_ffff_ffff
    );
    let t = now();
    let job = Job {
        job_arn: format!(
            "arn:aws:bedrock:{}:{ACCOUNT}:model-invocation-job/{id}",
            ctx.region
        ),
        job_name: name.to_string(),
        model_id: model.to_string(),
        client_request_token: token,
        role_arn: role.to_string(),
        status: "Submitted".into(),
        message: None,
        submit_time: t.clone(),
        last_modified_time: t,
        end_time: None,
        input_data_config: v["inputDataConfig"].clone(),
        output_data_config: v["outputDataConfig"].clone(),
        model_invocation_type: kind.to_string(),
        timeout_duration_in_hours: v["timeoutDurationInHours"].as_u64().unwrap_or(24),
        total_record_count: 0,
        processed_record_count: 0,
        success_record_count: 0,
        error_record_count: 0,
        region: ctx.region.to_string(),
        stop: false,
    };
    let arn = job.job_arn.clone();
    ctx.shared.batch.lock().push(job);
    tokio::spawn(run(ctx.clone(), arn.clone(), s3));
    Ok(arn)
}

fn fleet_s3(ctx: &Ctx) -> Result<S3, BedrockError> {
    let (endpoint, credential) = {
        let c = ctx.shared.config.read();
        (
            c.s3_endpoint.clone(),
            c.credentials.first().cloned().unwrap_or_default(),
        )
    };
    endpoint.map(|e| S3::new(&e, &ctx.region, credential)).ok_or_else(|| {
        BedrockError::validation(
            "This simulated fleet has no S3 endpoint (FleetConfig::s3_endpoint, `meridian sim --s3-endpoint`), so it cannot run batch inference jobs.",
        )
    })
}

/// The job an identifier (its ARN or ID) names in this region.
fn find<'j>(jobs: &'j mut [Job], ctx: &Ctx, ident: &str) -> Result<&'j mut Job, BedrockError> {
    jobs.iter_mut()
        .find(|j| j.region == *ctx.region && (j.job_arn == ident || j.id() == ident))
        .ok_or_else(|| {
            BedrockError::new(
                ErrorKind::ResourceNotFound,
                format!("Model invocation job {ident} not found."),
            )
        })
}

/// `GET /model-invocation-job/{jobIdentifier}`.
pub async fn get(State(ctx): State<Ctx>, Path(ident): Path<String>, req: Request) -> Response {
    if let Err(e) = take(&ctx, req).await {
        return error(&e);
    }
    let mut jobs = ctx.shared.batch.lock();
    match find(&mut jobs, &ctx, &ident) {
        Ok(j) => ok(&json!(j)),
        Err(e) => error(&e),
    }
}

/// `POST /model-invocation-job/{jobIdentifier}/stop`.
pub async fn stop(State(ctx): State<Ctx>, Path(ident): Path<String>, req: Request) -> Response {
    if let Err(e) = take(&ctx, req).await {
        return error(&e);
    }
    let mut jobs = ctx.shared.batch.lock();
    match find(&mut jobs, &ctx, &ident) {
        Ok(j) if j.terminal() || j.status == "Stopping" => error(&BedrockError::validation(
            format!("The job is {} and cannot be stopped.", j.status),
        )),
        Ok(j) => {
            j.stop = true;
            j.status = "Stopping".into();
            j.last_modified_time = now();
            ok(&json!({}))
        }
        Err(e) => error(&e),
    }
}

/// `GET /model-invocation-jobs`: this region's jobs, newest first.
pub async fn list(
    State(ctx): State<Ctx>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    req: Request,
) -> Response {
    if let Err(e) = take(&ctx, req).await {
        return error(&e);
    }
    let jobs = ctx.shared.batch.lock();
    let mut out: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.region == *ctx.region)
        .filter(|j| q.get("statusEquals").is_none_or(|s| *s == j.status))
        .filter(|j| {
            q.get("nameContains")
                .is_none_or(|s| j.job_name.contains(s.as_str()))
        })
        .collect();
    out.reverse();
    let start: usize = q.get("nextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let max: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let page: Vec<&&Job> = out.iter().skip(start).take(max).collect();
    let mut v = json!({ "invocationJobSummaries": page });
    if start + max < out.len() {
        v["nextToken"] = json!((start + max).to_string());
    }
    ok(&v)
}

fn update(ctx: &Ctx, arn: &str, f: impl FnOnce(&mut Job)) -> Option<Job> {
    let mut jobs = ctx.shared.batch.lock();
    let j = jobs.iter_mut().find(|j| j.job_arn == arn)?;
    f(j);
    j.last_modified_time = now();
    Some(j.clone())
}

fn stopped(ctx: &Ctx, arn: &str) -> bool {
    ctx.shared
        .batch
        .lock()
        .iter()
        .any(|j| j.job_arn == arn && j.stop)
}

fn end(ctx: &Ctx, arn: &str, status: &str, message: Option<String>) {
    update(ctx, arn, |j| {
        j.status = status.to_string();
        j.message = message;
        j.end_time = Some(now());
    });
}

/// One input file's records, as read.
struct File {
    name: String,
    lines: Vec<Result<Value, String>>,
}

async fn read_inputs(s3: &S3, input: &S3Uri) -> Result<Vec<File>, String> {
    let keys = if input.key.is_empty() || input.key.ends_with('/') {
        s3.list(&input.bucket, &input.key)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".jsonl"))
            .collect()
    } else {
        vec![input.key.clone()]
    };
    let mut files = Vec::new();
    for key in keys {
        let body = s3
            .get(&S3Uri {
                bucket: input.bucket.clone(),
                key: key.clone(),
            })
            .await?;
        let text = String::from_utf8_lossy(&body);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).map_err(|e| e.to_string()))
            .collect();
        files.push(File {
            name: key.rsplit('/').next().unwrap_or_default().to_string(),
            lines,
        });
    }
    Ok(files)
}

/// Runs a job to its end: validate, process, write, report.
async fn run(ctx: Ctx, arn: String, s3: S3) {
    let Some(job) = update(&ctx, &arn, |j| j.status = "Validating".into()) else {
        return;
    };
    let total_ms = ctx.shared.config.read().batch_job_ms;
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(total_ms / 4)).await;
    let input = job
        .input_data_config
        .pointer("/s3InputDataConfig/s3Uri")
        .and_then(Value::as_str)
        .and_then(S3Uri::parse);
    let output = job
        .output_data_config
        .pointer("/s3OutputDataConfig/s3Uri")
        .and_then(Value::as_str)
        .and_then(S3Uri::parse);
    let (Some(input), Some(output)) = (input, output) else {
        return end(&ctx, &arn, "Failed", Some("bad S3 URIs".into()));
    };
    let files = match read_inputs(&s3, &input).await {
        Ok(f) => f,
        Err(e) => return end(&ctx, &arn, "Failed", Some(e)),
    };
    let count: usize = files.iter().map(|f| f.lines.len()).sum();
    if count < MIN_RECORDS {
        return end(
            &ctx,
            &arn,
            "Failed",
            Some(format!(
                "The job's input has {count} records; a batch inference job needs at least {MIN_RECORDS}."
            )),
        );
    }
    update(&ctx, &arn, |j| {
        j.status = "InProgress".into();
        j.total_record_count = count as u64;
    });
    let converse = job.model_invocation_type == "Converse";
    let prefix = output.key.trim_end_matches('/');
    let dir = if prefix.is_empty() {
        job.id().to_string()
    } else {
        format!("{prefix}/{}", job.id())
    };
    let (mut input_tokens, mut output_tokens) = (0u64, 0u64);
    for file in files {
        let mut out = Vec::new();
        let records = futures_util::stream::iter(file.lines.into_iter().enumerate())
            .map(|(i, line)| {
                let ctx = ctx.clone();
                let (arn, model) = (arn.clone(), job.model_id.clone());
                async move {
                    if stopped(&ctx, &arn) {
                        return None;
                    }
                    Some(record(&ctx, &model, converse, i, line).await)
                }
            })
            .buffered(PARALLEL)
            .collect::<Vec<_>>()
            .await;
        for (line, used) in records.into_iter().flatten() {
            let failed = line.get("error").is_some();
            input_tokens += used.0;
            output_tokens += used.1;
            update(&ctx, &arn, |j| {
                j.processed_record_count += 1;
                if failed {
                    j.error_record_count += 1;
                } else {
                    j.success_record_count += 1;
                }
            });
            out.extend_from_slice(line.to_string().as_bytes());
            out.push(b'\n');
        }
        let key = format!("{dir}/{}.out", file.name);
        let put = s3
            .put(
                &S3Uri {
                    bucket: output.bucket.clone(),
                    key,
                },
                Bytes::from(out),
            )
            .await;
        if let Err(e) = put {
            return end(&ctx, &arn, "Failed", Some(e));
        }
    }
    let Some(job) = update(&ctx, &arn, |_| {}) else {
        return;
    };
    let manifest = json!({
        "totalRecordCount": job.total_record_count,
        "processedRecordCount": job.processed_record_count,
        "successRecordCount": job.success_record_count,
        "errorRecordCount": job.error_record_count,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    });
    let put = s3
        .put(
            &S3Uri {
                bucket: output.bucket.clone(),
                key: format!("{dir}/manifest.json.out"),
            },
            Bytes::from(manifest.to_string()),
        )
        .await;
    if let Err(e) = put {
        return end(&ctx, &arn, "Failed", Some(e));
    }
    if job.stop {
        return end(&ctx, &arn, "Stopped", None);
    }
    tokio::time::sleep_until(started + Duration::from_millis(total_ms)).await;
    let status = match (job.success_record_count, job.error_record_count) {
        (0, _) => "Failed",
        (_, 0) => "Completed",
        _ => "PartiallyCompleted",
    };
    end(&ctx, &arn, status, None);
}

/// One record processed as the runtime would: its output line and the
/// tokens it used.
async fn record(
    ctx: &Ctx,
    model: &str,
    converse: bool,
    i: usize,
    line: Result<Value, String>,
) -> (Value, (u64, u64)) {
    let failed = |id: Value, input: Value, code: u16, msg: String| {
        let mut v = json!({"recordId": id, "modelInput": input,
            "error": {"errorCode": code, "errorMessage": msg}});
        if v["recordId"].is_null() {
            v.as_object_mut().map(|o| o.remove("recordId"));
        }
        (v, (0, 0))
    };
    let line = match line {
        Ok(v) => v,
        Err(e) => {
            return failed(
                Value::Null,
                Value::Null,
                400,
                format!("Malformed JSON: {e}"),
            );
        }
    };
    let id = match line.get("recordId") {
        Some(v) => v.clone(),
        None => json!(format!("{:011}", i + 1)),
    };
    let input = line.get("modelInput").cloned().unwrap_or(Value::Null);
    if !input.is_object() {
        return failed(
            id,
            input,
            400,
            "The record has no modelInput object.".into(),
        );
    }
    if converse && input.get("toolConfig").is_some() {
        return failed(
            id,
            input,
            400,
            "toolConfig is not supported in batch inference with the Converse format.".into(),
        );
    }
    let action = if converse { "converse" } else { "invoke" };
    let path = format!(
        "/model/{}/{action}",
        meridian_wire::operation::encode_label(model)
    );
    let body = Bytes::from(input.to_string());
    let mut last = None;
    for attempt in 0..5u64 {
        let Ok((parts, ())) = http::Request::builder()
            .method("POST")
            .uri(&path)
            .header("content-type", "application/json")
            .body(())
            .map(http::Request::into_parts)
        else {
            break;
        };
        let request_id = ctx.request_id();
        let mut log = Log::new(ctx, &request_id);
        log.set(|r| r.operation = "ModelInvocationJob".into());
        match ctx
            .serve_op(&parts, body.clone(), &request_id, &mut log, false)
            .await
        {
            Ok(resp) => {
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                let out: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let used = usage(&out);
                return (
                    json!({"recordId": id, "modelInput": input, "modelOutput": out}),
                    used,
                );
            }
            Err(e) => {
                log.finish(ctx, e.kind.name());
                let retry = matches!(
                    e.kind,
                    ErrorKind::Throttling
                        | ErrorKind::ServiceUnavailable
                        | ErrorKind::ModelNotReady
                );
                last = Some(e);
                if !retry {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
        }
    }
    let e = last.unwrap_or_else(|| BedrockError::validation("the record could not be sent"));
    failed(id, input, e.kind.status(), e.message)
}

/// Input and output tokens from a Converse or native answer.
fn usage(v: &Value) -> (u64, u64) {
    let u = &v["usage"];
    let n = |keys: &[&str]| keys.iter().find_map(|k| u[*k].as_u64()).unwrap_or(0);
    let input =
        n(&["inputTokens", "input_tokens"]).max(v["inputTextTokenCount"].as_u64().unwrap_or(0));
    (input, n(&["outputTokens", "output_tokens"]))
}

/// The routes a region's listener adds for batch jobs.
pub fn routes(router: axum::Router<Ctx>) -> axum::Router<Ctx> {
    use axum::routing::{get as get_route, post};
    router
        .route("/model-invocation-job", post(create))
        .route("/model-invocation-jobs", get_route(list))
        .route("/model-invocation-job/{id}", get_route(get))
        .route("/model-invocation-job/{id}/stop", post(stop))
}

/// Every job the fleet has run, for tests.
pub fn jobs(shared: &Arc<crate::region::Shared>) -> Vec<Job> {
    shared.batch.lock().clone()
}
