//! Batch inference: OpenAI's files and batches, Anthropic's Message
//! Batches and Bedrock's own model-invocation-job calls, run as Bedrock
//! batch inference jobs (`CreateModelInvocationJob`) inside the request's
//! residency policy.
//!
//! A batch is planned like a request (model ∩ tenant ∩ `x-meridian-residency`)
//! and runs in one region of that plan that has a bucket in `[batch]
//! buckets` (Bedrock reads and writes a job's S3 objects in the job's own
//! region); regions that refuse the job (quota) are tried in plan order,
//! and when none takes it the batch fails naming each region's reason.
//! Every line passes the tenant's and the model's guards before it is
//! uploaded (a blocked line fails with its reason; masks apply). The
//! estimated cost at the batch price is checked against the tenant's
//! budgets before anything is uploaded and charged when the job is created;
//! the job's own results settle it. A batch with fewer records than
//! Bedrock's minimum is padded with one-token records that never reach the
//! results (their cost is charged: a few tokens each).
//!
//! Batches live in the `[state]` backend: any replica answers for any
//! batch, and each replica's poller asks Bedrock how running jobs stand,
//! so a batch whose replica died is finished by another.

mod anthropic;
mod bedrock;
mod openai;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use meridian_catalog::TargetKind;
use meridian_config::Tenant;
use meridian_router::Surface;
use meridian_upstream::s3::S3Client;
use meridian_wire::{BedrockError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::anthropic::{AnthropicBatches, handle as anthropic_handle};
pub use self::bedrock::answer as bedrock_job;
pub use self::openai::{OpenAiBatches, handle as openai_handle};
pub use crate::batch_store::Batches;
use crate::batch_store::{ACTIVE, Unavailable, object_key, tenant_set};
use crate::state::AppState;

/// Bedrock's fewest records per job.
pub const MIN_RECORDS: usize = 100;

/// Which API a batch was made through (it answers in that API's shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    OpenAi,
    Anthropic,
    Bedrock,
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Validating,
    InProgress,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
    Expired,
}

impl Status {
    pub fn ended(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Cancelled | Status::Expired
        )
    }
}

/// One input line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Line {
    pub custom_id: Option<String>,
    /// Refused before upload: a code and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<(String, String)>,
    /// Values an `anonymize` guard replaced, put back in the line's result:
    /// (placeholder, original).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<(String, String)>,
}

impl Line {
    /// Puts this line's anonymized values back into a result.
    pub fn restore_into(&self, v: &mut Value) {
        if self.restore.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                for (p, original) in &self.restore {
                    if s.contains(p.as_str()) {
                        *s = s.replace(p.as_str(), original);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.restore_into(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.restore_into(x)),
            _ => {}
        }
    }
}

/// What the results settled.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Settled {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub succeeded: u64,
    pub errored: u64,
}

/// A batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub api: Api,
    pub endpoint: String,
    pub model: String,
    pub model_id: String,
    pub account: String,
    pub region: Option<String>,
    pub job_arn: Option<String>,
    pub bucket: Option<String>,
    pub output_prefix: Option<String>,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub status: Status,
    pub created_at: u64,
    pub ended_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub expires_at: u64,
    pub lines: Vec<Line>,
    pub padded: usize,
    /// USD per million input and output tokens at the batch price; `None`:
    /// unpriced.
    pub price: Option<(f64, f64)>,
    pub estimate_usd: f64,
    pub settled: Option<Settled>,
    pub errors: Vec<String>,
    pub metadata: Value,
    /// Base URL the client called (for Anthropic's `results_url`).
    pub base_url: String,
    /// The residency policy it was planned under, by name.
    #[serde(default)]
    pub policy: String,
}

impl Job {
    /// Lines refused before upload.
    pub fn refused(&self) -> usize {
        self.lines.iter().filter(|l| l.refused.is_some()).count()
    }
}

/// The record ID of line `i` (Bedrock takes 11 characters).
pub fn record_id(i: usize) -> String {
    format!("{i:011}")
}

/// A file kept for a tenant: an upload, or a batch's output or error file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRec {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// (batch ID, `output` | `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of_batch: Option<(String, String)>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new unguessable ID.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn unavailable() -> BedrockError {
    BedrockError::new(
        ErrorKind::ServiceUnavailable,
        "Batch state cannot be read: the shared state backend is unreachable.",
    )
}

fn not_configured() -> BedrockError {
    BedrockError::validation(
        "Batch inference is not configured on this Meridian: [batch] buckets (one S3 bucket per region jobs may run in) and role_arn.",
    )
}

fn shared(state: &AppState) -> Option<&crate::limits::Shared> {
    state.limiter.shared()
}

/// Reads a tenant's batch.
pub async fn load(state: &AppState, tenant: &str, id: &str) -> Result<Option<Job>, BedrockError> {
    state
        .batches
        .store
        .get(shared(state), &object_key("batch", tenant, id))
        .await
        .map_err(|Unavailable| unavailable())
}

/// Writes a batch (and its index entries).
pub async fn save(state: &AppState, job: &Job) -> Result<(), BedrockError> {
    let ttl = state.config.batch.retention;
    let s = &state.batches.store;
    let sh = shared(state);
    let member = format!("{}\0{}", job.tenant, job.id);
    let r = async {
        s.put(sh, &object_key("batch", &job.tenant, &job.id), job, ttl)
            .await?;
        s.add(sh, &tenant_set(&job.tenant), &job.id, ttl).await?;
        if job.status.ended() {
            s.remove(sh, ACTIVE, &member).await
        } else {
            s.add(sh, ACTIVE, &member, ttl).await
        }
    };
    r.await.map_err(|Unavailable| unavailable())
}

/// Reads a tenant's file.
pub async fn load_file(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<Option<FileRec>, BedrockError> {
    state
        .batches
        .store
        .get(shared(state), &object_key("file", tenant, id))
        .await
        .map_err(|Unavailable| unavailable())
}

/// Writes a tenant's file.
pub async fn save_file(state: &AppState, tenant: &str, f: &FileRec) -> Result<(), BedrockError> {
    state
        .batches
        .store
        .put(
            shared(state),
            &object_key("file", tenant, &f.id),
            f,
            state.config.batch.retention,
        )
        .await
        .map_err(|Unavailable| unavailable())
}

/// A tenant's batches, newest first.
pub async fn list(state: &AppState, tenant: &str) -> Result<Vec<Job>, BedrockError> {
    let ids = state
        .batches
        .store
        .members(shared(state), &tenant_set(tenant))
        .await
        .map_err(|Unavailable| unavailable())?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(j) = load(state, tenant, &id).await? {
            out.push(j);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(out)
}

/// One page of a tenant's batches made through `api`: `limit` (default 20,
/// at most `max`) after the batch whose ID the query's `after_key` names;
/// and whether more follow.
pub async fn page(
    state: &AppState,
    tenant: &str,
    api: Api,
    query: &str,
    after_key: &str,
    max: usize,
) -> Result<(Vec<Job>, bool), BedrockError> {
    let q = openai::url_pairs(query);
    let limit = q
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, max);
    let after = q
        .iter()
        .find(|(k, _)| k == after_key)
        .map(|(_, v)| v.as_str());
    let jobs: Vec<Job> = list(state, tenant)
        .await?
        .into_iter()
        .filter(|j| j.api == api)
        .collect();
    let start = after
        .and_then(|a| jobs.iter().position(|j| j.id == a).map(|p| p + 1))
        .unwrap_or(0);
    let more = start + limit < jobs.len();
    Ok((jobs.into_iter().skip(start).take(limit).collect(), more))
}

/// A record ready to upload: its line's index and Bedrock's `modelInput`.
#[derive(Debug)]
pub struct Record {
    pub index: usize,
    pub input: Value,
}

/// What a front door hands over to submit.
#[derive(Debug)]
pub struct Submission {
    pub api: Api,
    pub id: String,
    pub endpoint: String,
    pub model: String,
    /// `Converse` or `InvokeModel`.
    pub invocation_type: &'static str,
    pub lines: Vec<Line>,
    pub records: Vec<Record>,
    pub input_file_id: Option<String>,
    pub metadata: Value,
    pub expires_in: Duration,
    pub base_url: String,
}

/// The tenant's and the model's guards on one record's input, as on an
/// online request: the values anonymized (to put back in its result), or
/// `Err` naming what a block rule found.
pub fn guard(
    state: &AppState,
    tenant: &Tenant,
    model: &str,
    input: &mut Value,
) -> Result<Vec<(String, String)>, String> {
    let model_guard = state.config.model(model).and_then(|m| m.guard.as_deref());
    let Some(mut g) = state.guards.session([tenant.guard.as_deref(), model_guard]) else {
        return Ok(Vec::new());
    };
    let guarded = g.json(input, crate::guard::Direction::Input);
    g.count(&state.metrics, &crate::account::model_label(state, model));
    guarded
        .map(|_| g.placeholders().to_vec())
        .map_err(|b| b.error().message)
}

/// A planned place for a job.
struct Place {
    /// The residency policy it was planned under, by name.
    policy: String,
    account: String,
    region: String,
    model_id: String,
    bucket: String,
    price: Option<(f64, f64)>,
}

/// The places a batch may run, in plan order: the runtime surface (batch
/// jobs are not served by provisioned throughput, providers or Mantle),
/// in-region IDs before profiles (processing stays where the bucket is),
/// only regions with a batch bucket.
fn places(
    state: &AppState,
    tenant: &Tenant,
    headers: &http::HeaderMap,
    model: &str,
) -> Result<Vec<Place>, BedrockError> {
    let call = crate::canonical::Call {
        operation: "CreateModelInvocationJob",
        action: meridian_wire::Action::Converse,
        requested: model.to_string(),
        body: Bytes::new(),
        json: None,
        streaming: false,
        forward: Vec::new(),
        more: Vec::new(),
        envelope: None,
        messages: false,
        openai: None,
    };
    let plan = crate::plan::build(
        state,
        &call,
        headers,
        tenant.residency.as_ref(),
        crate::plan::Reserve {
            input: 0,
            max_output: 0,
        },
        tokio::time::Instant::now(),
    )?;
    let factor = state.config.batch.price_factor;
    let mut runtime: Vec<_> = plan
        .candidates
        .iter()
        .filter(|c| c.surface == Surface::Runtime && c.model == plan.requested)
        .filter(|c| {
            !matches!(
                c.target.kind,
                TargetKind::Provisioned | TargetKind::Provider | TargetKind::Mantle
            )
        })
        .collect();
    runtime.sort_by_key(|c| c.target.kind != TargetKind::OnDemand);
    let mut out: Vec<Place> = Vec::new();
    for c in runtime {
        let region = &c.target.endpoint_region;
        let Some(bucket) = state.config.batch.buckets.get(region) else {
            continue;
        };
        if out.iter().any(|p| p.region == *region) {
            continue;
        }
        out.push(Place {
            policy: plan.policy.clone(),
            account: c.account.clone(),
            region: region.clone(),
            model_id: c.target.model_id.clone(),
            bucket: bucket.clone(),
            price: c
                .target
                .price
                .map(|p| (p.input_per_mtok * factor, p.output_per_mtok * factor)),
        });
    }
    if out.is_empty() {
        let with: Vec<&String> = state.config.batch.buckets.keys().collect();
        return Err(BedrockError::validation(format!(
            "No region that residency policy '{}' allows for '{model}' ({}) has a batch bucket; [batch] buckets has one in: {}.",
            plan.policy,
            plan.policy_regions,
            if with.is_empty() {
                "no region".to_string()
            } else {
                with.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    Ok(out)
}

fn s3(state: &AppState, bucket: &str, region: &str) -> Result<S3Client, String> {
    let creds = state
        .batches
        .credentials()
        .ok_or_else(|| "no credentials for the batch buckets".to_string())?;
    Ok(S3Client::new(
        creds,
        state.config.batch.s3_endpoint.clone(),
        bucket,
        region,
    ))
}

fn account<'a>(state: &'a AppState, name: &str) -> Option<&'a crate::state::UpstreamAccount> {
    state.accounts.iter().find(|a| a.name == name)
}

/// The tenant's spend so far today and this month; refused when the
/// batch's estimate would take either past its budget.
async fn check_budget(
    state: &AppState,
    tenant: &Arc<Tenant>,
    estimate: f64,
) -> Result<(), BedrockError> {
    let l = &tenant.limits;
    if l.budget_usd_per_day.is_none() && l.budget_usd_per_month.is_none() {
        return Ok(());
    }
    let Some(usage) = state.limiter.usage(std::slice::from_ref(tenant)).await else {
        return Err(BedrockError::new(
            ErrorKind::ServiceUnavailable,
            "The tenant's budget cannot be checked: the shared state backend is unreachable.",
        ));
    };
    let Some((_, day, month)) = usage.first() else {
        return Ok(());
    };
    for (budget, spent, period) in [
        (l.budget_usd_per_day, day.cost_usd, "daily"),
        (l.budget_usd_per_month, month.cost_usd, "monthly"),
    ] {
        if let Some(b) = budget
            && spent + estimate > b
        {
            return Err(BedrockError::new(
                ErrorKind::ServiceQuotaExceeded,
                format!(
                    "This batch's estimated cost at the batch price, ${estimate:.4}, would take tenant '{}' past its {period} budget of ${b} (${spent:.4} spent so far); nothing was uploaded.",
                    tenant.name
                ),
            ));
        }
    }
    Ok(())
}

/// Charges (or, negative, refunds) a tenant's usage outside any request.
fn charge(state: &AppState, tenant: &Arc<Tenant>, id: &str, used: crate::limits::Usage) {
    let ticket = crate::limits::Ticket {
        tenant: tenant.clone(),
        request_id: format!("batch:{id}"),
        reserved: 0,
        requests: None,
        tokens: None,
        local: state.limiter.shared().is_none(),
    };
    state.limiter.settle(ticket, used);
}

/// The request's tenant as the limiter settles it (shared, from the
/// config; the tenant itself when the config has none by that name).
fn shared_tenant(state: &AppState, tenant: &Tenant) -> Arc<Tenant> {
    state
        .tenants
        .named(&tenant.name)
        .unwrap_or_else(|| Arc::new(tenant.clone()))
}

/// A tenant's batch `id` made through `api` (`None`: not this tenant's,
/// or not made there).
async fn find(
    state: &AppState,
    tenant: &str,
    id: &str,
    api: Api,
) -> Result<Option<Job>, BedrockError> {
    Ok(load(state, tenant, id).await?.filter(|j| j.api == api))
}

/// Plans, checks, uploads and creates the job: the batch as stored.
pub async fn submit(
    state: &AppState,
    tenant: &Arc<Tenant>,
    headers: &http::HeaderMap,
    sub: Submission,
) -> Result<Job, BedrockError> {
    if state.config.batch.buckets.is_empty() {
        return Err(not_configured());
    }
    if !tenant.may_call(&sub.model) {
        return Err(BedrockError::new(
            ErrorKind::AccessDenied,
            format!("Tenant '{}' may not call '{}'.", tenant.name, sub.model),
        ));
    }
    let running = list(state, &tenant.name)
        .await?
        .iter()
        .filter(|j| !j.status.ended())
        .count();
    let max = state.config.batch.max_active_per_tenant as usize;
    if running >= max {
        return Err(BedrockError::new(
            ErrorKind::ServiceQuotaExceeded,
            format!(
                "Tenant '{}' already has {running} batches running ([batch] max_active_per_tenant = {max}); wait for one to end.",
                tenant.name
            ),
        ));
    }
    let places = places(state, tenant, headers, &sub.model)?;
    let converse = sub.invocation_type == "Converse";
    // Pad to Bedrock's minimum with one-token records.
    let padded = MIN_RECORDS.saturating_sub(sub.records.len());
    let pad = |n: usize| {
        let input = if converse {
            json!({"messages": [{"role": "user", "content": [{"text": "."}]}], "inferenceConfig": {"maxTokens": 1}})
        } else {
            json!({"anthropic_version": meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION, "max_tokens": 1, "messages": [{"role": "user", "content": "."}]})
        };
        json!({"recordId": format!("P{n:010}"), "modelInput": input})
    };
    let mut tokens = (0u64, 0u64);
    let mut jsonl = Vec::new();
    for r in &sub.records {
        let t = estimate(&r.input, converse);
        tokens = (tokens.0 + t.0, tokens.1 + t.1);
        let line = json!({"recordId": record_id(r.index), "modelInput": r.input});
        jsonl.extend_from_slice(line.to_string().as_bytes());
        jsonl.push(b'\n');
    }
    for n in 0..padded {
        tokens = (tokens.0 + 2, tokens.1 + 1);
        jsonl.extend_from_slice(pad(n).to_string().as_bytes());
        jsonl.push(b'\n');
    }
    let price = places[0].price;
    let estimate_usd = price.map_or(0.0, |(i, o)| {
        (tokens.0 as f64 * i + tokens.1 as f64 * o) / 1e6
    });
    if price.is_none() && tenant.limits.refuses_unpriced() {
        return Err(BedrockError::validation(format!(
            "The price of {} is not known to Meridian, so tenant '{}''s budget cannot account for its batch.",
            sub.model, tenant.name
        )));
    }
    check_budget(state, tenant, estimate_usd).await?;
    let now = now_secs();
    let mut job = Job {
        id: sub.id,
        tenant: tenant.name.clone(),
        api: sub.api,
        endpoint: sub.endpoint,
        model: sub.model,
        model_id: String::new(),
        account: String::new(),
        region: None,
        job_arn: None,
        bucket: None,
        output_prefix: None,
        input_file_id: sub.input_file_id,
        output_file_id: None,
        error_file_id: None,
        status: Status::Validating,
        created_at: now,
        ended_at: None,
        cancelling_at: None,
        expires_at: now + sub.expires_in.as_secs(),
        lines: sub.lines,
        padded,
        price,
        estimate_usd,
        settled: None,
        errors: Vec::new(),
        metadata: sub.metadata,
        base_url: sub.base_url,
        policy: String::new(),
    };
    let body = Bytes::from(jsonl);
    let prefix = &state.config.batch.prefix;
    let role = state.config.batch.role_arn.clone().unwrap_or_default();
    let mut why = Vec::new();
    for p in &places {
        let Some(acct) = account(state, &p.account) else {
            continue;
        };
        let client = match s3(state, &p.bucket, &p.region) {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{}: {e}", p.region));
                continue;
            }
        };
        // The bucket must really be in the region (fail closed on a misconfiguration).
        match client.head_bucket().await {
            Ok(r) if r == p.region => {}
            Ok(r) => {
                why.push(format!("{}: bucket '{}' is in {r}", p.region, p.bucket));
                continue;
            }
            Err(e) => {
                why.push(format!("{}: {e}", p.region));
                continue;
            }
        }
        let key = format!("{prefix}/{}/input.jsonl", job.id);
        if let Err(e) = client
            .put_object(&key, body.clone(), "application/jsonl")
            .await
        {
            why.push(format!("{}: {e}", p.region));
            continue;
        }
        let out_prefix = format!("{prefix}/{}/output/", job.id);
        let name: String = format!("meridian-{}", job.id)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(63)
            .collect();
        let req = json!({
            "jobName": name,
            "roleArn": role,
            "modelId": p.model_id,
            "clientRequestToken": job.id,
            "modelInvocationType": sub.invocation_type,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": format!("s3://{}/{key}", p.bucket), "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": format!("s3://{}/{out_prefix}", p.bucket)}},
            "tags": [{"key": "meridian:tenant", "value": job.tenant}, {"key": "meridian:batch", "value": job.id}],
        });
        match control(
            acct,
            &p.region,
            http::Method::POST,
            "/model-invocation-job",
            Some(&req),
        )
        .await
        {
            Ok(v) => {
                job.job_arn = v["jobArn"].as_str().map(str::to_string);
                job.region = Some(p.region.clone());
                job.account.clone_from(&p.account);
                job.model_id.clone_from(&p.model_id);
                job.bucket = Some(p.bucket.clone());
                job.output_prefix = Some(out_prefix);
                job.price = p.price;
                job.policy.clone_from(&p.policy);
                break;
            }
            Err(e) => why.push(format!("{}: {}", p.region, e.message)),
        }
    }
    if job.job_arn.is_none() {
        job.status = Status::Failed;
        job.ended_at = Some(now_secs());
        job.errors.push(format!(
            "No region could take this batch job: {}.",
            why.join("; ")
        ));
    } else if estimate_usd != 0.0 {
        charge(
            state,
            tenant,
            &job.id,
            crate::limits::Usage {
                cost_usd: estimate_usd,
                ..Default::default()
            },
        );
    }
    save(state, &job).await?;
    Ok(job)
}

/// Input tokens estimated and the most output tokens of one record.
fn estimate(input: &Value, converse: bool) -> (u64, u64) {
    if converse {
        (
            meridian_wire::converse::estimate_input_tokens(input),
            meridian_wire::converse::max_tokens(input).unwrap_or(1024),
        )
    } else {
        (
            meridian_wire::converse::estimate_tokens(&input.to_string()),
            input["max_tokens"].as_u64().unwrap_or(0),
        )
    }
}

/// One signed control-plane call; its JSON answer or Bedrock's error.
async fn control(
    acct: &crate::state::UpstreamAccount,
    region: &str,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, BedrockError> {
    let resp = match method {
        http::Method::GET => acct.client.control_get(region, path).await,
        _ => {
            let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
            acct.client.control_post(region, path, b).await
        }
    }
    .map_err(|f| f.error)?;
    let bytes = resp.collect().await.map_err(|f| f.error)?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        BedrockError::new(
            ErrorKind::InternalServer,
            format!("Bedrock answered invalid JSON: {e}"),
        )
    })
}

fn job_path(arn: &str) -> String {
    format!(
        "/model-invocation-job/{}",
        meridian_wire::operation::encode_label(arn)
    )
}

/// Asks Bedrock how a running batch stands and, when it has ended,
/// settles it from its results. Returns the batch as it now stands.
pub async fn refresh(state: &AppState, mut job: Job) -> Result<Job, BedrockError> {
    if job.status.ended() {
        return Ok(job);
    }
    let (Some(arn), Some(region)) = (job.job_arn.clone(), job.region.clone()) else {
        return Ok(job);
    };
    let Some(acct) = account(state, &job.account) else {
        return Ok(job);
    };
    if job.api != Api::Bedrock && now_secs() >= job.expires_at {
        // Past its completion window: the job is stopped, and what it
        // finished is kept (OpenAI's and Anthropic's 24 hours).
        let stop = format!("{}/stop", job_path(&arn));
        let _ = control(acct, &region, http::Method::POST, &stop, Some(&json!({}))).await;
        finish(state, &mut job, Status::Expired).await?;
        save(state, &job).await?;
        return Ok(job);
    }
    let v = control(acct, &region, http::Method::GET, &job_path(&arn), None).await?;
    let before = job.status;
    match v["status"].as_str().unwrap_or_default() {
        "Submitted" | "Validating" | "Scheduled" => {}
        "InProgress" if job.status != Status::Cancelling => job.status = Status::InProgress,
        "Stopping" => job.status = Status::Cancelling,
        "Completed" | "PartiallyCompleted" => finish(state, &mut job, Status::Completed).await?,
        "Stopped" => finish(state, &mut job, Status::Cancelled).await?,
        "Expired" => finish(state, &mut job, Status::Expired).await?,
        "Failed" => {
            job.errors.push(format!(
                "Bedrock's job failed: {}",
                v["message"].as_str().unwrap_or("no reason given")
            ));
            finish(state, &mut job, Status::Failed).await?;
        }
        _ => {}
    }
    if job.status != before {
        save(state, &job).await?;
    }
    Ok(job)
}

/// The job's output records by record ID (an absent output is empty).
pub async fn outputs(
    state: &AppState,
    job: &Job,
) -> Result<std::collections::HashMap<String, Value>, BedrockError> {
    let mut out = std::collections::HashMap::new();
    let (Some(bucket), Some(region), Some(prefix), Some(arn)) =
        (&job.bucket, &job.region, &job.output_prefix, &job.job_arn)
    else {
        return Ok(out);
    };
    let job_id = arn.rsplit('/').next().unwrap_or_default();
    let unreadable = |e: String| {
        BedrockError::new(
            ErrorKind::ServiceUnavailable,
            format!("The batch's results cannot be read from S3: {e}"),
        )
    };
    let client = s3(state, bucket, region).map_err(unreadable)?;
    let input = match job.api {
        Api::Bedrock => job.input_file_id.as_deref().unwrap_or("input.jsonl"),
        _ => "input.jsonl",
    };
    let key = format!("{prefix}{job_id}/{input}.out");
    let body = client.get_object(&key).await.map_err(unreadable)?;
    for line in body
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .lines()
    {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(id) = v["recordId"].as_str()
        {
            out.insert(id.to_string(), v);
        }
    }
    Ok(out)
}

/// Input and output tokens of one output record.
pub fn record_usage(v: &Value) -> (u64, u64) {
    let u = &v["modelOutput"]["usage"];
    let n = |keys: &[&str]| keys.iter().find_map(|k| u[*k].as_u64()).unwrap_or(0);
    (
        n(&["inputTokens", "input_tokens"]).max(
            v["modelOutput"]["inputTextTokenCount"]
                .as_u64()
                .unwrap_or(0),
        ),
        n(&["outputTokens", "output_tokens"]),
    )
}

/// Ends a batch: counts and settles its results once (whichever replica
/// gets here first), and names its output files.
async fn finish(state: &AppState, job: &mut Job, status: Status) -> Result<(), BedrockError> {
    let records = outputs(state, job).await?;
    let mut s = Settled::default();
    for (id, r) in &records {
        let (i, o) = record_usage(r);
        s.input_tokens += i;
        s.output_tokens += o;
        if job.padded > 0 && id.starts_with('P') {
            continue;
        }
        if r.get("error").is_some() || r.get("modelOutput").is_none() {
            s.errored += 1;
        } else {
            s.succeeded += 1;
        }
    }
    s.cost_usd = job.price.map_or(0.0, |(i, o)| {
        (s.input_tokens as f64 * i + s.output_tokens as f64 * o) / 1e6
    });
    job.status = status;
    job.ended_at = Some(now_secs());
    job.settled = Some(s);
    if job.api == Api::OpenAi {
        job.output_file_id = Some(format!("file-{}-output", job.id));
        job.error_file_id = Some(format!("file-{}-errors", job.id));
    }
    let claimed = state
        .batches
        .store
        .claim(
            shared(state),
            &format!(
                "meridian:batch:settled:{}",
                object_key("batch", &job.tenant, &job.id)
            ),
            state.config.batch.retention,
        )
        .await
        .map_err(|Unavailable| unavailable())?;
    if claimed {
        log_records(state, job, &records);
    }
    if claimed && let Some(tenant) = state.tenants.named(&job.tenant) {
        charge(
            state,
            &tenant,
            &job.id,
            crate::limits::Usage {
                requests: s.succeeded + s.errored,
                input_tokens: s.input_tokens,
                output_tokens: s.output_tokens,
                cost_usd: s.cost_usd - job.estimate_usd,
                unpriced_requests: if job.price.is_none() { s.succeeded } else { 0 },
            },
        );
    }
    Ok(())
}

/// One invocation record per record the job processed (padding left out),
/// written once, by the replica that settles the batch: operation
/// `ModelInvocationJob`, the region that ran it, its tokens and cost at the
/// batch price, the tenant, and the line's `custom_id` in the request ID.
fn log_records(state: &AppState, job: &Job, records: &std::collections::HashMap<String, Value>) {
    if !state.log.enabled() {
        return;
    }
    let region = job.region.clone().unwrap_or_default();
    let api = match job.api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
        Api::Bedrock => "bedrock",
    };
    let mut ids: Vec<&String> = records.keys().collect();
    ids.sort();
    for id in ids {
        if job.padded > 0 && id.starts_with('P') {
            continue;
        }
        let r = &records[id];
        let (input, output) = record_usage(r);
        let name = id
            .parse::<usize>()
            .ok()
            .and_then(|i| job.lines.get(i))
            .and_then(|l| l.custom_id.clone())
            .unwrap_or_else(|| id.clone());
        let error = r["error"]["errorCode"].as_u64();
        let request_id = format!("{}/{name}", job.id);
        let routing = crate::invocation::Routing {
            requested_model: &job.model,
            api,
            account: Some(&job.account),
            surface: Some("batch"),
            policy: &job.policy,
            status: error.map_or(200, |c| u16::try_from(c).unwrap_or(500)),
            latency_ms: 0,
            time_to_first_token_ms: None,
            estimated_cost_usd: job
                .price
                .map(|(i, o)| (input as f64 * i + output as f64 * o) / 1e6),
            price_known: job.price.is_none().then_some(false),
            service_tier: None,
            decision: None,
            tenant: Some(&job.tenant),
            guard: &[],
            cache: None,
        };
        let mut rec = crate::invocation::Record::new(
            &state.account_id,
            &region,
            &request_id,
            "ModelInvocationJob",
            &job.model_id,
            routing,
        );
        rec.input.input_token_count = input;
        rec.output.output_token_count = output;
        rec.inference_region = Some(&region);
        rec.error_code = error.map(|_| "ModelInvocationJobRecordError");
        state.log.write(&rec);
    }
}

/// Asks Bedrock to stop a running batch.
pub async fn cancel(state: &AppState, mut job: Job) -> Result<Job, BedrockError> {
    if job.status.ended() || job.status == Status::Cancelling {
        return Ok(job);
    }
    if let (Some(arn), Some(region), Some(acct)) = (
        job.job_arn.clone(),
        job.region.clone(),
        account(state, &job.account),
    ) {
        let path = format!("{}/stop", job_path(&arn));
        if let Err(e) = control(acct, &region, http::Method::POST, &path, Some(&json!({}))).await {
            // A job that ended meanwhile cannot be stopped: its status says so.
            if e.kind != ErrorKind::Validation {
                return Err(e);
            }
        }
    }
    job.status = Status::Cancelling;
    job.cancelling_at = Some(now_secs());
    save(state, &job).await?;
    refresh(state, job).await
}

/// Each replica's poller: asks Bedrock how every running batch stands,
/// every `[batch] poll_interval`.
pub async fn poll(live: Arc<crate::live::Live>) {
    loop {
        let state = live.get();
        let every = state.config.batch.poll_interval;
        if !state.config.batch.buckets.is_empty()
            && let Ok(members) = state.batches.store.members(shared(&state), ACTIVE).await
        {
            for m in members {
                let Some((tenant, id)) = m.split_once('\0') else {
                    continue;
                };
                match load(&state, tenant, id).await {
                    Ok(Some(job)) => {
                        if let Err(e) = refresh(&state, job).await {
                            tracing::warn!(batch = id, error = %e.message, "a batch's job could not be read");
                        }
                    }
                    Ok(None) => {
                        let _ = state.batches.store.remove(shared(&state), ACTIVE, &m).await;
                    }
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The base URL a client called (scheme and Host), for URLs in answers.
pub fn base_url(state: &AppState, headers: &http::HeaderMap) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}
