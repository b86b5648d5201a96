//! One simulated region's Bedrock endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;

use meridian_catalog::Catalog;
use meridian_wire::control::answer;
use meridian_wire::sigv4::{self, Rules, Secret};
use meridian_wire::{BedrockError, ErrorKind, Operation, converse};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::sleep;

use crate::capacity::{Admission, Capacity};
use crate::config::FleetConfig;
use crate::faults::FaultSet;
use crate::generate;
use crate::native::{self, Dialect};
use crate::record::Record;
use crate::rng::Rng;

/// Largest request body Bedrock accepts.
pub const MAX_BODY: usize = 25_000_000;
pub(crate) const ACCOUNT: &str = "000000000000";

/// Mutable state of one region (simulated endpoint or destination only).
#[derive(Debug)]
pub struct RegionState {
    pub faults: RwLock<FaultSet>,
    pub capacity: Mutex<Capacity>,
    pub rng: Mutex<Rng>,
    pub outage: watch::Sender<bool>,
}

/// State shared by every listener of a fleet.
#[derive(Debug)]
pub struct Shared {
    pub catalog: Catalog,
    pub config: RwLock<FleetConfig>,
    pub regions: HashMap<String, RegionState>,
    /// The most recent records, at most `config.max_records`.
    pub records: Mutex<std::collections::VecDeque<Record>>,
    pub seq: AtomicU64,
    /// Every region's prompt cache.
    pub prompt_cache: crate::prompt_cache::PromptCache,
    /// Profile changes made at run time (see `world`).
    pub world: RwLock<crate::world::World>,
    /// Batch inference jobs, every region's.
    pub batch: Mutex<Vec<crate::job::Job>>,
    /// Jobs created so far (their IDs).
    pub batch_seq: AtomicU64,
}

impl Shared {
    pub fn new(catalog: Catalog, config: FleetConfig) -> Shared {
        let regions = catalog
            .regions()
            .iter()
            .map(|r| {
                let state = RegionState {
                    faults: RwLock::new(FaultSet::default()),
                    capacity: Mutex::new(Capacity::default()),
                    rng: Mutex::new(Rng::new(config.seed, &r.code)),
                    outage: watch::Sender::new(false),
                };
                (r.code.clone(), state)
            })
            .collect();
        Shared {
            catalog,
            config: RwLock::new(config),
            regions,
            records: Mutex::new(std::collections::VecDeque::new()),
            seq: AtomicU64::new(0),
            prompt_cache: Default::default(),
            world: Default::default(),
            batch: Mutex::new(Vec::new()),
            batch_seq: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self, region: &str) -> Option<&RegionState> {
        self.regions.get(region)
    }

    pub(crate) fn faults(&self, region: &str) -> FaultSet {
        self.state(region)
            .map(|s| s.faults.read().clone())
            .unwrap_or_default()
    }
}

/// What a handler needs: the fleet and the region it serves.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub region: Arc<str>,
}

/// Handles every request to a region endpoint.
pub async fn handle(State(ctx): State<Ctx>, req: Request) -> Response {
    let request_id = ctx.request_id();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                &request_id,
                &BedrockError::validation(format!("the request body exceeds {MAX_BODY} bytes")),
            );
        }
    };
    let mut log = Log::new(&ctx, &request_id);
    match ctx.serve(&parts, body, &request_id, &mut log).await {
        Ok(resp) => resp,
        Err(e) => {
            log.finish(&ctx, e.kind.name());
            error(&request_id, &e)
        }
    }
}

/// A record under construction; written once.
pub(crate) struct Log {
    record: Option<Record>,
}

impl Log {
    pub(crate) fn new(ctx: &Ctx, request_id: &str) -> Log {
        Log {
            record: Some(Record {
                seq: 0,
                request_id: request_id.to_string(),
                endpoint_region: ctx.region.to_string(),
                inference_region: None,
                model_id: String::new(),
                operation: String::new(),
                outcome: String::new(),
                input_tokens: 0,
                output_tokens: 0,
                service_tier: None,
                prompt: None,
            }),
        }
    }

    pub(crate) fn set(&mut self, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.record.as_mut() {
            f(r);
        }
    }

    pub(crate) fn finish(&mut self, ctx: &Ctx, outcome: &str) {
        if let Some(mut r) = self.record.take() {
            r.outcome = outcome.to_string();
            ctx.shared.push_record(r);
        }
    }
}

impl Shared {
    /// Applies faults; returns false for an unknown region.
    pub fn set_faults(&self, region: &str, faults: FaultSet) -> bool {
        let Some(state) = self.regions.get(region) else {
            return false;
        };
        let outage = faults.outage;
        *state.faults.write() = faults;
        state.outage.send_replace(outage);
        tracing::info!(region, outage, "simulated faults changed");
        true
    }

    pub fn push_record(&self, mut r: Record) {
        r.seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let (max, prompts) = {
            let c = self.config.read();
            (c.max_records.max(1), c.keep_prompts)
        };
        if !prompts {
            r.prompt = None;
        }
        let mut records = self.records.lock();
        while records.len() >= max {
            records.pop_front();
        }
        records.push_back(r);
    }
}

fn error(request_id: &str, e: &BedrockError) -> Response {
    let status = http::StatusCode::from_u16(e.kind.status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    fleet_answer(
        status,
        request_id,
        Body::from(e.body()),
        &[("x-amzn-errortype", e.error_type_header())],
    )
}

fn json_response(request_id: &str, value: &Value, extra: &[(&str, String)]) -> Response {
    fleet_answer(
        http::StatusCode::OK,
        request_id,
        Body::from(value.to_string()),
        extra,
    )
}

/// A JSON answer; it cannot fail (a header value that is not valid is left
/// out), so a fleet answer is never an empty 200.
fn fleet_answer(
    status: http::StatusCode,
    request_id: &str,
    body: Body,
    extra: &[(&str, String)],
) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let pairs = std::iter::once(("x-amzn-requestid", request_id))
        .chain(extra.iter().map(|(k, v)| (*k, v.as_str())));
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    r
}

/// Where a model ID may be processed when called in this region.
pub(crate) struct Placement {
    pub(crate) base: String,
    pub(crate) destinations: Vec<String>,
    /// Provisioned throughput: its own capacity window (keyed by ARN), in
    /// place of the region's on-demand quota for the base model.
    pub(crate) provisioned: Option<(String, crate::config::CapacityModel)>,
}

/// Latency of one attempt, in milliseconds.
pub(crate) struct Pace {
    pub(crate) first_ms: f64,
    pub(crate) per_token_ms: f64,
}

impl Ctx {
    pub(crate) fn request_id(&self) -> String {
        let n = self
            .shared
            .state(&self.region)
            .map_or(0, |s| s.rng.lock().next_u64());
        let h = crate::rng::hash(self.region.as_bytes());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (n >> 32) as u32,
            (n >> 16) as u16,
            (n as u16) & 0xfff,
            (h as u16) & 0xfff,
            (h >> 16) & 0xffff_ffff_ffff
        )
    }

    /// A request this region takes on `surface`: not in an outage (a
    /// request on a connection left open while the region drains), the
    /// surface not down, and authenticated.
    pub(crate) fn take(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
        surface: &str,
    ) -> Result<(), BedrockError> {
        let faults = self.shared.faults(&self.region);
        if faults.outage || faults.surfaces_down.iter().any(|s| s == surface) {
            return Err(BedrockError::new(
                ErrorKind::ServiceUnavailable,
                "Service unavailable. Please try again later.",
            ));
        }
        self.authenticate_as(parts, body, service)
    }

    /// Checks a Bearer key, or a SigV4 signature scoped to `service`.
    fn authenticate_as(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<(), BedrockError> {
        let auth = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let config = self.shared.config.read();
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return if config.bearer_tokens.iter().any(|t| t == token.trim()) {
                Ok(())
            } else {
                Err(BedrockError::new(
                    ErrorKind::UnrecognizedClient,
                    "The security token included in the request is invalid.",
                ))
            };
        }
        let req = sigv4::Request::from_parts(parts, body);
        let lookup = |key: &str| {
            config
                .credentials
                .iter()
                .find(|c| c.access_key_id == key)
                .map(|c| Secret {
                    secret_access_key: c.secret_access_key.clone(),
                    session_token: None,
                })
        };
        let who = sigv4::verify(&req, &Rules::for_service(service), lookup)?;
        if who.region != *self.region {
            return Err(BedrockError::new(
                ErrorKind::InvalidSignature,
                format!(
                    "Credential should be scoped to a valid region, not '{}'; this endpoint is {}.",
                    who.region, self.region
                ),
            ));
        }
        Ok(())
    }

    async fn serve(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        request_id: &str,
        log: &mut Log,
    ) -> Result<Response, BedrockError> {
        self.take(parts, &body, "bedrock", "runtime")?;
        self.serve_op(parts, body, request_id, log, false).await
    }

    /// An authenticated runtime operation; `in_region`: the model ID is a
    /// base ID processed in this region whatever its throughput (Mantle).
    pub(crate) async fn serve_op(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        request_id: &str,
        log: &mut Log,
        in_region: bool,
    ) -> Result<Response, BedrockError> {
        let op = Operation::from_request(parts.method.as_str(), parts.uri.path())?;
        log.set(|r| {
            // A native Messages request named its surface already.
            if r.operation.is_empty() {
                r.operation = op.name().to_string();
            }
        });
        let query = parts.uri.query().unwrap_or("");
        if let Operation::ApplyGuardrail {
            guardrail_id,
            version,
        } = &op
        {
            log.set(|r| {
                r.model_id = format!("guardrail/{guardrail_id}");
                r.inference_region = Some(self.region.to_string());
            });
            let g = self
                .shared
                .config
                .read()
                .guardrails
                .iter()
                .find(|g| {
                    *g.region == *self.region && g.id == *guardrail_id && g.version == *version
                })
                .cloned()
                .ok_or_else(|| {
                    BedrockError::new(ErrorKind::ResourceNotFound, crate::guardrails::NOT_FOUND)
                })?;
            let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
                BedrockError::validation(format!("the request body is not valid JSON: {e}"))
            })?;
            let v = crate::guardrails::apply(&g, &parsed)?;
            log.finish(self, "success");
            return Ok(json_response(request_id, &v, &[]));
        }
        if op.model_id().is_none() {
            let missing = |what: &str, id: &str| match what {
                "profile" => format!("Inference profile {id} not found."),
                _ => format!(
                    "Could not resolve the foundation model from the provided model identifier: {id}"
                ),
            };
            let v = answer(&op, query, self.profiles(), self.models(), missing)?;
            log.finish(self, "success");
            return Ok(json_response(request_id, &v, &[]));
        }
        let model_id = op.model_id().unwrap_or_default().to_string();
        log.set(|r| r.model_id = model_id.clone());
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
            BedrockError::validation(format!("the request body is not valid JSON: {e}"))
        })?;
        if let Operation::CountTokens { .. } = op {
            // As Bedrock: base foundation-model IDs only, no profiles or ARNs.
            if self.shared.catalog.model_by_id(&model_id).is_none()
                && self.shared.world.read().model(&model_id).is_none()
            {
                return Err(BedrockError::validation(
                    "The provided model doesn't support counting tokens.",
                ));
            }
            let n = native::count_tokens(&parsed)?;
            // A stalled region stalls its token counting too.
            if let Some(ms) = self.shared.faults(&self.region).stall_ms {
                sleep(Duration::from_millis(ms)).await;
            }
            log.set(|r| r.input_tokens = n);
            log.finish(self, "success");
            return Ok(json_response(request_id, &json!({"inputTokens": n}), &[]));
        }
        let placement = if in_region {
            self.place_in_region(&model_id)?
        } else {
            self.place(&model_id)?
        };
        let dialect = match op {
            Operation::Converse { .. } | Operation::ConverseStream { .. } => None,
            _ => Some(Dialect::of(&placement.base)?),
        };
        let model = self.shared.catalog.model_by_id(&placement.base);
        if dialect == Some(Dialect::Anthropic)
            && !matches!(op, Operation::CountTokens { .. })
            && parsed.get("anthropic_version").is_none()
        {
            // Bedrock refuses a Claude body without the version field.
            return Err(BedrockError::validation(
                "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.",
            ));
        }
        if let (Some(Dialect::Anthropic), Some(m)) = (dialect, model)
            && m.arn_versioned
            && let Some(v) = parsed["anthropic_version"].as_str()
            && v != meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION
        {
            // Anthropic's legacy integration on Bedrock: the ARN-versioned
            // models take only Bedrock's own version.
            return Err(BedrockError::validation(format!(
                "anthropic_version {v} is not supported by {}; use {}.",
                m.id,
                meridian_wire::messages::BEDROCK_ANTHROPIC_VERSION
            )));
        }
        // Without maxTokens, reserve what the model would default to (at most 4,096).
        let default_max = model.map_or(4096, |m| u64::from(m.max_output_tokens.clamp(1, 4096)));
        let (conv, max_tokens) = match dialect {
            None => {
                converse::validate_request(&parsed)?;
                (
                    parsed.clone(),
                    converse::max_tokens(&parsed).unwrap_or(default_max),
                )
            }
            Some(d) if d.is_embedding() => (Value::Null, 0),
            Some(d) => native::to_converse(d, &parsed)?,
        };
        if dialect.is_some_and(Dialect::is_embedding) && op.is_streaming() {
            return Err(BedrockError::validation(
                "The model is unsupported for streaming.",
            ));
        }
        let prompt = crate::record::prompt_of(&conv, &parsed);
        log.set(|r| r.prompt = Some(prompt));
        let tier = crate::tiers::requested(dialect.is_none(), &parts.headers, &parsed)?;
        log.set(|r| r.service_tier = tier.map(|t| t.name().to_string()));
        crate::tiers::check(tier, model, &placement.base)?;
        // A guardrail is a regional resource: the called region must have it.
        let guardrail =
            match crate::guardrails::requested(dialect.is_none(), &parsed, &parts.headers) {
                None => None,
                Some((id, version, trace)) => {
                    let cfg = self.shared.config.read();
                    match cfg
                        .guardrails
                        .iter()
                        .find(|g| *g.region == *self.region && g.id == id && g.version == version)
                    {
                        Some(g) => Some((g.clone(), trace)),
                        None => {
                            return Err(BedrockError::validation(crate::guardrails::NOT_FOUND));
                        }
                    }
                }
            };
        if !conv.is_null() {
            // Mantle's frontier models reason and answer in a schema.
            let frontier = crate::frontier::mantle_only_in(&placement.base, &self.region);
            crate::thinking::check(
                &conv,
                frontier || model.is_some_and(|m| m.reasoning),
                &placement.base,
            )?;
            check_structured(
                &conv,
                frontier || model.is_some_and(|m| m.structured_output),
                &placement.base,
            )?;
        }
        let input_tokens = if conv.is_null() {
            let texts = parsed["texts"].as_array().map_or(0, |t| {
                t.iter()
                    .map(|x| converse::estimate_tokens(x.as_str().unwrap_or_default()))
                    .sum()
            });
            (converse::estimate_tokens(parsed["inputText"].as_str().unwrap_or_default()) + texts)
                .max(1)
        } else {
            converse::estimate_input_tokens(&conv)
        };
        let (region, admission) = self.admit(&placement, input_tokens + max_tokens, tier)?;
        log.set(|r| {
            r.inference_region = Some(region.clone());
            r.input_tokens = input_tokens;
        });
        let faults = self.shared.faults(&region);
        if let Some(ms) = faults.stall_ms {
            sleep(Duration::from_millis(ms)).await;
        }
        let pace = self.pace(&region, &faults, tier);
        let cache = if conv.is_null() {
            crate::prompt_cache::CacheUse::default()
        } else {
            self.shared.prompt_cache.apply(
                &region,
                &placement.base,
                &conv,
                tokio::time::Instant::now(),
            )
        };
        let mut rng = self.rng();
        let mut thought = rng.clone();
        let mut cached = |mut reply: generate::Reply| {
            reply.input_tokens = reply.input_tokens.saturating_sub(cache.read + cache.write);
            reply.cache = cache;
            reply.service_tier = tier.map(meridian_catalog::ServiceTier::name);
            crate::thinking::think(&conv, &mut reply, &region, &mut thought);
            reply
        };
        let release = ReleaseGuard {
            shared: self.shared.clone(),
            region: region.clone(),
            admission,
            used: 0,
        };
        match (dialect, op.is_streaming()) {
            (Some(d), _) if d.is_embedding() => {
                let (v, tokens) = native::embedding(d, &placement.base, &parsed, &mut rng)?;
                sleep(Duration::from_millis(pace.first_ms as u64)).await;
                log.set(|r| r.input_tokens = tokens);
                log.finish(self, "success");
                Ok(json_response(
                    request_id,
                    &v,
                    &self.invoke_headers(&region, tokens, 0, pace.first_ms as u64),
                ))
            }
            (_, false) => {
                let reply = cached(guarded(&guardrail, &conv, &region, max_tokens, &mut rng));
                let total_ms = pace.first_ms + pace.per_token_ms * reply.output_tokens as f64;
                sleep(Duration::from_millis(total_ms as u64)).await;
                let body = match dialect {
                    None => generate::converse_response(&reply, total_ms as u64),
                    Some(d) => native::response(d, &reply, &model_id, &mut rng),
                };
                let mut headers = self.invoke_headers(
                    &region,
                    reply.input_tokens,
                    reply.output_tokens,
                    total_ms as u64,
                );
                if dialect.is_none() {
                    headers.truncate(1);
                } else if let Some(t) = tier {
                    headers.push((crate::tiers::HEADER, t.name().to_string()));
                }
                let mut release = release;
                release.used = reply.input_tokens + reply.output_tokens;
                log.set(|r| r.output_tokens = reply.output_tokens);
                log.finish(self, "success");
                drop(release);
                Ok(json_response(request_id, &body, &headers))
            }
            (_, true) => {
                let reply = cached(guarded(&guardrail, &conv, &region, max_tokens, &mut rng));
                let record = log.record.take();
                Ok(self.stream(
                    request_id, dialect, &model_id, reply, pace, faults, region, release, record,
                    &mut rng,
                ))
            }
        }
    }

    fn rng(&self) -> Rng {
        let seed = self
            .shared
            .state(&self.region)
            .map_or(0, |s| s.rng.lock().next_u64());
        Rng::new(seed, "reply")
    }

    fn invoke_headers(
        &self,
        region: &str,
        input: u64,
        output: u64,
        latency_ms: u64,
    ) -> Vec<(&'static str, String)> {
        vec![
            (crate::INFERENCE_REGION_HEADER, region.to_string()),
            ("x-amzn-bedrock-input-token-count", input.to_string()),
            ("x-amzn-bedrock-output-token-count", output.to_string()),
            ("x-amzn-bedrock-invocation-latency", latency_ms.to_string()),
        ]
    }
}

/// Refuses `outputConfig.textFormat` for a model without structured output,
/// and a schema that is not a JSON string.
fn check_structured(conv: &Value, supported: bool, base: &str) -> Result<(), BedrockError> {
    let Some(format) = conv["outputConfig"].get("textFormat") else {
        return Ok(());
    };
    if !supported {
        return Err(BedrockError::validation(format!(
            "The model {base} does not support structured output (outputConfig.textFormat)."
        )));
    }
    if format["type"] != "json_schema" || generate::structured_schema(conv).is_none() {
        return Err(BedrockError::validation(
            "outputConfig.textFormat needs type json_schema and structure.jsonSchema.schema, a JSON schema as a string.",
        ));
    }
    Ok(())
}

/// Gives capacity back when an attempt ends, however it ends.
pub(crate) struct ReleaseGuard {
    pub(crate) shared: Arc<Shared>,
    pub(crate) region: String,
    pub(crate) admission: Admission,
    pub(crate) used: u64,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if let Some(s) = self.shared.state(&self.region) {
            s.capacity.lock().release(&self.admission, self.used);
        }
    }
}

/// The reply, under the request's guardrail when it named one.
fn guarded(
    guardrail: &Option<(crate::guardrails::SimGuardrail, bool)>,
    conv: &Value,
    region: &str,
    max_tokens: u64,
    rng: &mut Rng,
) -> generate::Reply {
    match guardrail {
        Some((g, trace)) => crate::guardrails::run(g, *trace, conv, |c| {
            generate::reply(c, region, max_tokens, rng)
        }),
        None => generate::reply(conv, region, max_tokens, rng),
    }
}
