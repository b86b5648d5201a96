//! One simulated region's Bedrock endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use meridian_catalog::arn::{ModelRef, foundation_model_arn, inference_profile_arn};
use meridian_catalog::{Catalog, Model};
use meridian_wire::control::{model_summary, page, profile_summary, query_param};
use meridian_wire::sigv4::{self, Rules, Secret};
use meridian_wire::{BedrockError, ErrorKind, Operation, converse, eventstream};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use crate::capacity::{Admission, Capacity};
use crate::config::FleetConfig;
use crate::faults::FaultSet;
use crate::generate::{self, Reply};
use crate::native::{self, Dialect};
use crate::record::Record;
use crate::rng::Rng;

/// Largest request body Bedrock accepts.
pub const MAX_BODY: usize = 25_000_000;
const ACCOUNT: &str = "000000000000";

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
    pub records: Mutex<Vec<Record>>,
    pub seq: AtomicU64,
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
            records: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        }
    }

    fn state(&self, region: &str) -> Option<&RegionState> {
        self.regions.get(region)
    }

    fn faults(&self, region: &str) -> FaultSet {
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
struct Log {
    record: Option<Record>,
}

impl Log {
    fn new(ctx: &Ctx, request_id: &str) -> Log {
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
            }),
        }
    }

    fn set(&mut self, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.record.as_mut() {
            f(r);
        }
    }

    fn finish(&mut self, ctx: &Ctx, outcome: &str) {
        if let Some(mut r) = self.record.take() {
            r.outcome = outcome.to_string();
            ctx.shared.push_record(r);
        }
    }
}

impl Shared {
    pub fn push_record(&self, mut r: Record) {
        r.seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.records.lock().push(r);
    }
}

fn error(request_id: &str, e: &BedrockError) -> Response {
    Response::builder()
        .status(e.kind.status())
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id)
        .header("x-amzn-errortype", e.error_type_header())
        .body(Body::from(e.body()))
        .unwrap_or_default()
}

fn json_response(request_id: &str, value: &Value, extra: &[(&str, String)]) -> Response {
    let mut b = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id);
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    b.body(Body::from(value.to_string())).unwrap_or_default()
}

fn invalid_model() -> BedrockError {
    BedrockError::validation("The provided model identifier is invalid.")
}

/// Where a model ID may be processed when called in this region.
struct Placement {
    base: String,
    destinations: Vec<String>,
}

/// Latency of one attempt, in milliseconds.
struct Pace {
    first_ms: f64,
    per_token_ms: f64,
}

impl Ctx {
    fn request_id(&self) -> String {
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

    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<(), BedrockError> {
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
        let who = sigv4::verify(&req, &Rules::bedrock(), lookup)?;
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
        self.authenticate(parts, &body)?;
        let op = Operation::from_request(parts.method.as_str(), parts.uri.path())?;
        log.set(|r| r.operation = op.name().to_string());
        let query = parts.uri.query().unwrap_or("");
        match &op {
            Operation::ListInferenceProfiles => {
                let (items, next) = page(
                    self.profiles(query_param(query, "type").as_deref()),
                    query_param(query, "maxResults").and_then(|m| m.parse().ok()),
                    query_param(query, "nextToken").as_deref(),
                );
                let mut v = json!({"inferenceProfileSummaries": items});
                if let Some(n) = next {
                    v["nextToken"] = json!(n);
                }
                log.finish(self, "success");
                return Ok(json_response(request_id, &v, &[]));
            }
            Operation::GetInferenceProfile { id } => {
                let found = self.profiles(None).into_iter().find(|p| {
                    p["inferenceProfileId"] == id.as_str()
                        || p["inferenceProfileArn"] == id.as_str()
                });
                let p = found.ok_or_else(|| {
                    BedrockError::new(
                        ErrorKind::ResourceNotFound,
                        format!("Inference profile {id} not found."),
                    )
                })?;
                log.finish(self, "success");
                return Ok(json_response(request_id, &p, &[]));
            }
            Operation::ListFoundationModels => {
                let provider = query_param(query, "byProvider");
                let models: Vec<Value> = self
                    .models()
                    .into_iter()
                    .filter(|m| {
                        provider.as_deref().is_none_or(|p| {
                            m["providerName"]
                                .as_str()
                                .is_some_and(|n| n.eq_ignore_ascii_case(p))
                        })
                    })
                    .collect();
                log.finish(self, "success");
                return Ok(json_response(
                    request_id,
                    &json!({"modelSummaries": models}),
                    &[],
                ));
            }
            Operation::GetFoundationModel { id } => {
                let m = self
                    .models()
                    .into_iter()
                    .find(|m| m["modelId"] == id.as_str() || m["modelArn"] == id.as_str());
                let m = m.ok_or_else(|| BedrockError::new(ErrorKind::ResourceNotFound, format!("Could not resolve the foundation model from the provided model identifier: {id}")))?;
                log.finish(self, "success");
                return Ok(json_response(request_id, &json!({"modelDetails": m}), &[]));
            }
            _ => {}
        }
        let model_id = op.model_id().unwrap_or_default().to_string();
        log.set(|r| r.model_id = model_id.clone());
        let placement = self.place(&model_id)?;
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
            BedrockError::validation(format!("the request body is not valid JSON: {e}"))
        })?;
        if let Operation::CountTokens { .. } = op {
            let n = native::count_tokens(&parsed)?;
            log.set(|r| r.input_tokens = n);
            log.finish(self, "success");
            return Ok(json_response(request_id, &json!({"inputTokens": n}), &[]));
        }
        let dialect = match op {
            Operation::Converse { .. } | Operation::ConverseStream { .. } => None,
            _ => Some(Dialect::of(&placement.base)?),
        };
        let model = self.shared.catalog.model_by_id(&placement.base);
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
            Some(Dialect::TitanEmbed) => (Value::Null, 0),
            Some(d) => native::to_converse(d, &parsed)?,
        };
        if dialect == Some(Dialect::TitanEmbed) && op.is_streaming() {
            return Err(BedrockError::validation(
                "The model is unsupported for streaming.",
            ));
        }
        let input_tokens = if conv.is_null() {
            converse::estimate_tokens(parsed["inputText"].as_str().unwrap_or_default()).max(1)
        } else {
            converse::estimate_input_tokens(&conv)
        };
        let (region, admission) = self.admit(&placement, input_tokens + max_tokens)?;
        log.set(|r| {
            r.inference_region = Some(region.clone());
            r.input_tokens = input_tokens;
        });
        let faults = self.shared.faults(&region);
        if let Some(ms) = faults.stall_ms {
            sleep(Duration::from_millis(ms)).await;
        }
        let pace = self.pace(&region, &faults);
        let mut rng = self.rng();
        let release = ReleaseGuard {
            shared: self.shared.clone(),
            region: region.clone(),
            admission,
            used: 0,
        };
        match (dialect, op.is_streaming()) {
            (Some(Dialect::TitanEmbed), _) => {
                let (v, tokens) = native::embedding(&parsed, &mut rng)?;
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
                let reply = generate::reply(&conv, &region, max_tokens, &mut rng);
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
                }
                let mut release = release;
                release.used = reply.input_tokens + reply.output_tokens;
                log.set(|r| r.output_tokens = reply.output_tokens);
                log.finish(self, "success");
                drop(release);
                Ok(json_response(request_id, &body, &headers))
            }
            (_, true) => {
                let reply = generate::reply(&conv, &region, max_tokens, &mut rng);
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

    #[allow(clippy::too_many_arguments)] // one stream, all of its parts
    fn stream(
        &self,
        request_id: &str,
        dialect: Option<Dialect>,
        model_id: &str,
        reply: Reply,
        pace: Pace,
        faults: FaultSet,
        region: String,
        mut release: ReleaseGuard,
        mut record: Option<Record>,
        rng: &mut Rng,
    ) -> Response {
        let total_ms = pace.first_ms + pace.per_token_ms * reply.output_tokens as f64;
        let frames: Vec<(Bytes, u64)> = match dialect {
            None => generate::converse_events(&reply, total_ms as u64)
                .into_iter()
                .map(|(t, mut v, tokens)| {
                    v["p"] = json!(padding(rng));
                    (eventstream::event(t, v.to_string().as_bytes()), tokens)
                })
                .collect(),
            Some(d) => native::stream_chunks(
                d,
                &reply,
                model_id,
                (total_ms as u64, pace.first_ms as u64),
                rng,
            )
            .into_iter()
            .map(|(v, tokens)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
                let payload = json!({"bytes": b64, "p": padding(rng)});
                (
                    eventstream::event("chunk", payload.to_string().as_bytes()),
                    tokens,
                )
            })
            .collect(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let shared = self.shared.clone();
        let output_tokens = reply.output_tokens;
        let input_tokens = reply.input_tokens;
        tokio::spawn(async move {
            sleep(Duration::from_millis(pace.first_ms as u64)).await;
            let mut outcome = "success";
            for (i, (frame, tokens)) in frames.into_iter().enumerate() {
                if faults.cut_after_events.is_some_and(|n| i as u32 >= n) {
                    let _ = tx
                        .send(Err(std::io::Error::other("simulated cut mid-stream")))
                        .await;
                    outcome = "cut";
                    break;
                }
                if tx.send(Ok(frame)).await.is_err() {
                    outcome = "client-gone";
                    break;
                }
                if tokens > 0 {
                    sleep(Duration::from_secs_f64(
                        pace.per_token_ms * tokens as f64 / 1000.0,
                    ))
                    .await;
                }
            }
            release.used = input_tokens + output_tokens;
            drop(release);
            if let Some(mut r) = record.take() {
                r.output_tokens = output_tokens;
                r.outcome = outcome.to_string();
                shared.push_record(r);
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut b = Response::builder()
            .status(200)
            .header("content-type", eventstream::CONTENT_TYPE)
            .header("x-amzn-requestid", request_id)
            .header(crate::INFERENCE_REGION_HEADER, region);
        if dialect.is_some() {
            b = b.header("x-amzn-bedrock-content-type", "application/json");
        }
        b.body(Body::from_stream(stream)).unwrap_or_default()
    }

    /// Checks the model ID as Bedrock would in this region.
    fn place(&self, model_id: &str) -> Result<Placement, BedrockError> {
        let catalog = &self.shared.catalog;
        let here = self.region.to_string();
        let profile = |prefix: &str, base: &str| -> Result<Placement, BedrockError> {
            let m = catalog.model_by_id(base).ok_or_else(invalid_model)?;
            let dests = m
                .routes
                .iter()
                .filter_map(|id| catalog.route(id))
                .filter(|r| r.prefix == prefix)
                .find_map(|r| r.destinations(&here))
                .ok_or_else(invalid_model)?;
            Ok(Placement {
                base: base.to_string(),
                destinations: dests.iter().cloned().collect(),
            })
        };
        let on_demand = |base: &str| -> Result<Placement, BedrockError> {
            let m = catalog.model_by_id(base).ok_or_else(invalid_model)?;
            if m.on_demand.contains(&here) {
                Ok(Placement {
                    base: base.to_string(),
                    destinations: vec![here.clone()],
                })
            } else if !m.routes.is_empty() {
                Err(BedrockError::validation(format!(
                    "Invocation of model ID {base} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
                )))
            } else {
                Err(invalid_model())
            }
        };
        match ModelRef::parse(model_id) {
            ModelRef::SystemProfile { prefix, base } => profile(prefix, base),
            ModelRef::Name(base) => on_demand(base),
            ModelRef::Arn(arn) => {
                if arn.region != here {
                    return Err(invalid_model());
                }
                match arn.resource_type {
                    "foundation-model" => on_demand(arn.resource_id),
                    "inference-profile" => match ModelRef::parse(arn.resource_id) {
                        ModelRef::SystemProfile { prefix, base } => profile(prefix, base),
                        _ => Err(invalid_model()),
                    },
                    "application-inference-profile" => {
                        let config = self.shared.config.read();
                        let p = config
                            .app_profiles
                            .iter()
                            .find(|p| p.arn == model_id)
                            .ok_or_else(|| {
                                BedrockError::new(
                                    ErrorKind::ResourceNotFound,
                                    format!("Inference profile {model_id} not found."),
                                )
                            })?;
                        Ok(Placement {
                            base: p.model_id.clone(),
                            destinations: p.destinations.iter().cloned().collect(),
                        })
                    }
                    _ => Err(invalid_model()),
                }
            }
        }
    }

    /// Picks the processing region and reserves capacity there.
    fn admit(&self, p: &Placement, tokens: u64) -> Result<(String, Admission), BedrockError> {
        let live: Vec<&String> = p
            .destinations
            .iter()
            .filter(|d| !self.shared.faults(d).outage)
            .collect();
        if live.is_empty() {
            return Err(BedrockError::new(
                ErrorKind::ServiceUnavailable,
                "Service unavailable. Please try again later.",
            ));
        }
        // Faults of the processing region decide the answer; draw in a fixed order.
        let mut rng = self
            .shared
            .state(&self.region)
            .map(|s| s.rng.lock().clone())
            .unwrap_or_else(|| Rng::new(0, ""));
        let capacity = self.shared.config.read().capacity;
        let now = Instant::now();
        let mut ranked: Vec<(f64, u64, &String)> = live
            .iter()
            .map(|d| {
                let f = self.shared.faults(d);
                let head = self.shared.state(d).map_or(0.0, |s| {
                    s.capacity
                        .lock()
                        .headroom(&p.base, &capacity, f.quota_factor, now)
                });
                (head, rng.next_u64(), *d)
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(s) = self.shared.state(&self.region) {
            *s.rng.lock() = rng;
        }
        let chosen = ranked[0].2.clone();
        let f = self.shared.faults(&chosen);
        if f.not_ready {
            return Err(BedrockError::new(
                ErrorKind::ModelNotReady,
                "Model is not ready for inference. Wait and try your request again.",
            ));
        }
        if f.error_rate > 0.0 {
            let draw = self
                .shared
                .state(&self.region)
                .map_or(1.0, |s| s.rng.lock().unit());
            if draw < f.error_rate {
                return Err(if f.error_status == 500 {
                    BedrockError::new(
                        ErrorKind::InternalServer,
                        "The server encountered an internal error while processing the request.",
                    )
                } else {
                    BedrockError::new(
                        ErrorKind::ServiceUnavailable,
                        "Service unavailable. Please try again later.",
                    )
                });
            }
        }
        for (_, _, d) in &ranked {
            let factor = self.shared.faults(d).quota_factor;
            if let Some(s) = self.shared.state(d)
                && let Some(a) = s
                    .capacity
                    .lock()
                    .admit(&p.base, tokens, &capacity, factor, now)
            {
                return Ok(((*d).clone(), a));
            }
        }
        Err(BedrockError::new(
            ErrorKind::Throttling,
            "Too many requests, please wait before trying again.",
        ))
    }

    fn pace(&self, processing: &str, f: &FaultSet) -> Pace {
        let lat = self.shared.config.read().latency;
        let catalog = &self.shared.catalog;
        let km = match (catalog.region(&self.region), catalog.region(processing)) {
            (Some(a), Some(b)) => a.distance_km(b),
            _ => 0.0,
        };
        let jitter = {
            let u = self
                .shared
                .state(&self.region)
                .map_or(0.5, |s| s.rng.lock().unit());
            1.0 + lat.jitter * (2.0 * u - 1.0)
        };
        let first_ms =
            (lat.ttft_ms + km / 1000.0 * lat.rtt_ms_per_1000km) * f.latency_factor * jitter;
        let tps = f
            .drip_tokens_per_sec
            .unwrap_or(lat.tokens_per_sec)
            .max(0.001);
        Pace {
            first_ms,
            per_token_ms: 1000.0 / tps * f.latency_factor,
        }
    }

    fn profiles(&self, kind: Option<&str>) -> Vec<Value> {
        let catalog = &self.shared.catalog;
        let here = self.region.to_string();
        let mut out = Vec::new();
        if kind.is_none_or(|k| k == "SYSTEM_DEFINED") {
            for m in catalog.models() {
                for route in m.routes.iter().filter_map(|id| catalog.route(id)) {
                    if let Some(dests) = route.destinations(&here) {
                        let id = format!("{}.{}", route.prefix, m.id);
                        let arns: Vec<String> = dests
                            .iter()
                            .map(|d| foundation_model_arn(d, &m.id))
                            .collect();
                        let name = format!("{} {}", route.prefix.to_ascii_uppercase(), m.name);
                        out.push(profile_summary(
                            &id,
                            &inference_profile_arn(&here, ACCOUNT, &id),
                            &name,
                            "SYSTEM_DEFINED",
                            &arns,
                            &route.note,
                        ));
                    }
                }
            }
        }
        if kind.is_none_or(|k| k == "APPLICATION") {
            for p in self
                .shared
                .config
                .read()
                .app_profiles
                .iter()
                .filter(|p| p.region == here)
            {
                let arns: Vec<String> = p
                    .destinations
                    .iter()
                    .map(|d| foundation_model_arn(d, &p.model_id))
                    .collect();
                let id = p.arn.rsplit('/').next().unwrap_or_default();
                out.push(profile_summary(
                    id,
                    &p.arn,
                    id,
                    "APPLICATION",
                    &arns,
                    "application inference profile",
                ));
            }
        }
        out
    }

    fn models(&self) -> Vec<Value> {
        let here = self.region.to_string();
        let catalog = &self.shared.catalog;
        catalog
            .models()
            .iter()
            .filter(|m| offered_here(catalog, m, &here))
            .map(|m| {
                let types: Vec<&str> = if m.on_demand.contains(&here) {
                    vec!["ON_DEMAND"]
                } else {
                    vec!["INFERENCE_PROFILE"]
                };
                model_summary(
                    &foundation_model_arn(&here, &m.id),
                    &m.id,
                    &m.name,
                    &m.provider,
                    &m.input,
                    &m.output,
                    m.streaming,
                    &types,
                    m.lifecycle == meridian_catalog::Lifecycle::Legacy,
                )
            })
            .collect()
    }
}

fn offered_here(catalog: &Catalog, m: &Model, here: &str) -> bool {
    m.on_demand.iter().any(|r| r == here)
        || m.routes
            .iter()
            .filter_map(|id| catalog.route(id))
            .any(|r| r.destinations(here).is_some())
}

fn padding(rng: &mut Rng) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = 1 + (rng.next_u64() % 24) as usize;
    (0..n).map(|i| ALPHA[i % ALPHA.len()] as char).collect()
}

/// Gives capacity back when an attempt ends, however it ends.
struct ReleaseGuard {
    shared: Arc<Shared>,
    region: String,
    admission: Admission,
    used: u64,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if let Some(s) = self.shared.state(&self.region) {
            s.capacity.lock().release(&self.admission, self.used);
        }
    }
}
