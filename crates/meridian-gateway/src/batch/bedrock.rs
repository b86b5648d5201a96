//! Bedrock's own batch calls, for boto3's `bedrock` client:
//! `CreateModelInvocationJob`, `GetModelInvocationJob`,
//! `ListModelInvocationJobs`, `StopModelInvocationJob`, passed through with
//! Meridian's checks. The caller's S3 input and output must be in one
//! `[batch]` bucket's region (so Meridian knows where the data is), that
//! region must be one the model's and the tenant's residency allow, and the
//! model ID sent is the one Meridian's plan gives there. A tenant with a
//! guard cannot pass a job through: Meridian cannot scan an input it did not
//! write. Each job is kept under its tenant; another tenant finds nothing.

use std::sync::Arc;

use bytes::Bytes;
use meridian_config::Tenant;
use meridian_wire::{BedrockError, ErrorKind, Operation};
use serde_json::{Value, json};

use super::{Api, Job, Status};
use crate::pipeline::Decoded;
use crate::respond;
use crate::state::AppState;

type Answer = Result<Decoded<(), BedrockError>, BedrockError>;

/// The rest of a job call, run by the decode stage.
pub fn answer(
    state: &Arc<AppState>,
    tenant: &Tenant,
    op: Operation,
    body: Bytes,
    headers: &http::HeaderMap,
) -> futures_util::future::BoxFuture<'static, Answer> {
    let state = state.clone();
    let tenant = super::shared_tenant(&state, tenant);
    let headers = headers.clone();
    Box::pin(async move {
        let v = match op {
            Operation::CreateModelInvocationJob => create(&state, &tenant, &headers, &body).await?,
            Operation::GetModelInvocationJob { id } => {
                let job = find(&state, &tenant.name, &id).await?;
                let v = call(&state, &job, http::Method::GET, "").await?;
                let _ = super::refresh(&state, job).await;
                v
            }
            Operation::StopModelInvocationJob { id } => {
                let job = find(&state, &tenant.name, &id).await?;
                call(&state, &job, http::Method::POST, "/stop").await?
            }
            _ => list(&state, &tenant.name).await?,
        };
        Ok(Decoded::Local(respond::json(&v)))
    })
}

fn bucket_of(uri: &str) -> Option<&str> {
    uri.strip_prefix("s3://")?.split('/').next()
}

async fn create(
    state: &AppState,
    tenant: &Arc<Tenant>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Value, BedrockError> {
    if state.config.batch.buckets.is_empty() {
        return Err(super::not_configured());
    }
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        BedrockError::validation(format!("The request body is not valid JSON: {e}"))
    })?;
    let model = v["modelId"]
        .as_str()
        .ok_or_else(|| BedrockError::validation("modelId is required."))?
        .to_string();
    let model_guard = state.config.model(&model).and_then(|m| m.guard.as_ref());
    if tenant.guard.is_some() || model_guard.is_some() {
        return Err(BedrockError::new(
            ErrorKind::AccessDenied,
            format!(
                "Tenant '{}' has guards, and Meridian cannot scan a job input it did not write; submit the batch through /v1/batches or /v1/messages/batches, which guard every line.",
                tenant.name
            ),
        ));
    }
    if !tenant.may_call(&model) {
        return Err(BedrockError::new(
            ErrorKind::AccessDenied,
            format!("Tenant '{}' may not call '{model}'.", tenant.name),
        ));
    }
    let region_of = |pointer: &str| -> Result<(String, String), BedrockError> {
        let uri = v
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bucket = bucket_of(uri).unwrap_or_default();
        state
            .config
            .batch
            .buckets
            .iter()
            .find(|(_, b)| *b == bucket)
            .map(|(r, _)| (r.clone(), uri.to_string()))
            .ok_or_else(|| {
                BedrockError::validation(format!(
                    "Meridian passes a batch job through only with its S3 data in a [batch] bucket, whose region it knows; '{uri}' is not in one."
                ))
            })
    };
    let (input_region, _) = region_of("/inputDataConfig/s3InputDataConfig/s3Uri")?;
    let (output_region, output_uri) = region_of("/outputDataConfig/s3OutputDataConfig/s3Uri")?;
    if input_region != output_region {
        return Err(BedrockError::validation(format!(
            "The job's input is in {input_region} and its output in {output_region}; a batch job reads and writes in one region."
        )));
    }
    let places = super::places(state, tenant, headers, &model)?;
    let place = places.iter().find(|p| p.region == input_region).ok_or_else(|| {
        BedrockError::validation(format!(
            "The job's S3 data is in {input_region}, which the residency policy for '{model}' does not allow (or where it has no batch target); allowed here: {}.",
            places.iter().map(|p| p.region.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let acct = super::account(state, &place.account).ok_or_else(|| {
        BedrockError::new(ErrorKind::InternalServer, "the planned account is gone")
    })?;
    v["modelId"] = json!(place.model_id);
    let out = super::control(
        acct,
        &place.region,
        http::Method::POST,
        "/model-invocation-job",
        Some(&v),
    )
    .await?;
    let arn = out["jobArn"].as_str().unwrap_or_default().to_string();
    let input_uri = v
        .pointer("/inputDataConfig/s3InputDataConfig/s3Uri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let input_name = input_uri.rsplit('/').next().unwrap_or_default();
    let now = super::now_secs();
    let job = Job {
        id: arn.rsplit('/').next().unwrap_or_default().to_string(),
        tenant: tenant.name.clone(),
        api: Api::Bedrock,
        endpoint: "CreateModelInvocationJob".into(),
        model,
        model_id: place.model_id.clone(),
        account: place.account.clone(),
        region: Some(place.region.clone()),
        job_arn: Some(arn),
        bucket: Some(place.bucket.clone()),
        output_prefix: Some(
            output_uri
                .trim_start_matches("s3://")
                .split_once('/')
                .map(|(_, k)| {
                    if k.is_empty() || k.ends_with('/') {
                        k.to_string()
                    } else {
                        format!("{k}/")
                    }
                })
                .unwrap_or_default(),
        ),
        input_file_id: Some(input_name.to_string()),
        output_file_id: None,
        error_file_id: None,
        status: Status::Validating,
        created_at: now,
        ended_at: None,
        cancelling_at: None,
        expires_at: now + 7 * 86_400,
        lines: Vec::new(),
        padded: 0,
        price: place.price,
        estimate_usd: 0.0,
        settled: None,
        errors: Vec::new(),
        metadata: Value::Null,
        base_url: String::new(),
        policy: place.policy.clone(),
    };
    super::save(state, &job).await?;
    Ok(out)
}

async fn find(state: &AppState, tenant: &str, ident: &str) -> Result<Job, BedrockError> {
    let id = ident.rsplit('/').next().unwrap_or(ident);
    super::find(state, tenant, id, Api::Bedrock)
        .await?
        .ok_or_else(|| {
            BedrockError::new(
                ErrorKind::ResourceNotFound,
                format!("Model invocation job {ident} not found."),
            )
        })
}

async fn call(
    state: &AppState,
    job: &Job,
    method: http::Method,
    suffix: &str,
) -> Result<Value, BedrockError> {
    let (Some(arn), Some(region)) = (&job.job_arn, &job.region) else {
        return Err(BedrockError::new(
            ErrorKind::ResourceNotFound,
            "The job has no ARN.",
        ));
    };
    let acct = super::account(state, &job.account)
        .ok_or_else(|| BedrockError::new(ErrorKind::InternalServer, "the job's account is gone"))?;
    let path = format!("{}{suffix}", super::job_path(arn));
    super::control(acct, region, method, &path, Some(&json!({}))).await
}

async fn list(state: &AppState, tenant: &str) -> Result<Value, BedrockError> {
    let mut summaries = Vec::new();
    for job in super::list(state, tenant).await? {
        if job.api != Api::Bedrock {
            continue;
        }
        if let Ok(v) = call(state, &job, http::Method::GET, "").await {
            summaries.push(v);
        }
    }
    Ok(json!({ "invocationJobSummaries": summaries }))
}
