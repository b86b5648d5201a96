//! `meridian.toml`: parsed into raw structs that reject unknown keys, then
//! validated against the catalog into types that cannot be wrong.
//!
//! Errors name the file, the line, the key and what was expected.

mod error;
mod guard;
pub mod posture;
mod raw;
mod tenants;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use meridian_catalog::resolve::{ResolveError, closest};
use meridian_catalog::{AppProfile, Catalog, Policy, Resolution, Resolver};

pub use error::ConfigError;
pub use guard::{
    Builtin, CacheSettings, Detector, Guard, GuardAction, GuardRule, Guardrail, parse_duration,
};
pub use tenants::{
    Backend, HASH_PREFIX, KeyHash, Limits, OnUnavailable, StateSettings, Tenant, Tls,
    parse_key_hash,
};

/// Where the config came from when no path is given.
pub const DEFAULT_FILE: &str = "meridian.toml";

/// Which region Meridian considers itself to run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSetting {
    /// Run the detection chain.
    Auto,
    /// Fixed in the config file.
    Fixed(String),
}

/// How upstream calls are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// Real Bedrock when AWS credentials resolve, else the simulated fleet.
    Auto,
    /// Always real Bedrock.
    Aws,
    /// Always the simulated fleet.
    Simulated,
}

/// An AWS account Meridian may call Bedrock in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Name used in logs and metrics.
    pub name: String,
    /// Named profile from the AWS config files.
    pub profile: Option<String>,
    /// Role to assume through STS.
    pub role_arn: Option<String>,
    /// External ID for the role assumption.
    pub external_id: Option<String>,
    /// Regions this account may be called in (empty: all).
    pub regions: Vec<String>,
}

/// Upstream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// AWS, simulated, or decided at start-up.
    pub mode: UpstreamMode,
    /// Endpoint URL overrides by region (VPC endpoints, tests).
    pub endpoints: BTreeMap<String, String>,
    /// Mantle base URLs by region (`https://bedrock-mantle.{region}.api.aws`):
    /// the regions where Meridian calls Mantle; none unless listed.
    pub mantle_endpoints: BTreeMap<String, String>,
    /// Accounts; empty means the default credential chain.
    pub accounts: Vec<Account>,
}

/// A SigV4 credential clients may sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCredential {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Who may call this Meridian. Empty: every request is accepted unverified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundAuth {
    /// SigV4 credentials to verify signatures against.
    pub credentials: Vec<InboundCredential>,
    /// Bearer tokens (API keys) accepted.
    pub api_keys: Vec<String>,
}

impl InboundAuth {
    /// Whether any credential or key is configured.
    pub fn is_enforced(&self) -> bool {
        !self.credentials.is_empty() || !self.api_keys.is_empty()
    }
}

/// A model name Meridian serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedModel {
    /// The name clients send.
    pub name: String,
    /// What it resolves: alias, base model ID, profile ID or ARN.
    pub model: String,
    /// Residency for this model (the default policy already folded in).
    pub policy: Policy,
    /// How candidates are ordered.
    pub strategy: Strategy,
    /// Other exposed models tried, in order, once this one's candidates are
    /// spent; each under this model's policy as well as its own.
    pub fallback: Vec<String>,
    /// Keep requests with the same prompt prefix on the same candidate, so
    /// per-region prompt caches stay warm.
    pub prompt_cache_affinity: bool,
    /// Hedge slow attempts (overrides `[routing] hedging`).
    pub hedging: Option<bool>,
    /// Bedrock service tiers tried in this order (e.g. `flex` then
    /// `default`), each as extra candidates; empty: none named, so the
    /// client's own tier (or Bedrock's standard) applies.
    pub service_tiers: Vec<meridian_catalog::ServiceTier>,
    /// Provisioned throughput tried before any on-demand or profile target;
    /// those take the overflow.
    pub provisioned: Vec<Provisioned>,
    /// The `[[providers]]` entry serving this model (`model` is then the
    /// name the provider knows it by); `None`: Bedrock.
    pub provider: Option<String>,
    /// The `[guards]` entry applied to its requests and answers.
    pub guard: Option<String>,
    /// Bedrock guardrail per region; when any is set, a region without one
    /// is never called for this model.
    pub guardrails: BTreeMap<String, Guardrail>,
    /// Response cache for exact repeats; `None`: off.
    pub cache: Option<CacheSettings>,
}

/// An OpenAI-compatible server (vLLM, Ollama, LiteLLM, a company's own
/// inference) that models can be routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Name: the account name of its candidates, in logs and metrics.
    pub name: String,
    /// Base URL up to `/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// Environment variable holding its API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// Where it processes requests; `None`: unknown, so only an
    /// unrestricted residency policy lets it be called.
    pub region: Option<String>,
    /// Model names it serves.
    pub models: Vec<String>,
}

/// Provisioned throughput for one exposed model: dedicated capacity in one
/// region, processed there.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    /// `arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID`.
    pub arn: String,
    /// Region in the ARN: where it is called and processed.
    pub region: String,
    /// Model units bought.
    pub model_units: u32,
    /// Tokens per minute one unit carries (input + output, as agreed with AWS).
    pub tokens_per_minute_per_unit: u64,
    /// The commitment's price per unit-hour, for cost reports; per-token
    /// cost of a provisioned call is zero.
    pub usd_per_unit_hour: Option<f64>,
}

impl Provisioned {
    /// Capacity in tokens per minute.
    pub fn tokens_per_minute(&self) -> u64 {
        u64::from(self.model_units).saturating_mul(self.tokens_per_minute_per_unit)
    }
}

/// How a model's candidates are ordered.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Strategy {
    /// Active-passive: the resolution's order (nearest first).
    #[default]
    Priority,
    /// Active-active: spread by weight per called region (1 when unlisted).
    Weighted(BTreeMap<String, u32>),
    /// Lowest peak-EWMA latency, by power of two choices among healthy candidates.
    Latency,
    /// Nearest to the caller's region (`x-meridian-caller-region`, else
    /// `[routing] caller_region`, else Meridian's region).
    Geo,
}

impl Strategy {
    /// Name as written in config.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::Weighted(_) => "weighted",
            Strategy::Latency => "latency",
            Strategy::Geo => "geo",
        }
    }
}

/// How several upstream accounts share a model's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountMode {
    /// The first account is active; the others are passive backups, in order.
    #[default]
    Tiered,
    /// Every account's candidates compete under the model's strategy.
    Pooled,
}

/// Routing settings shared by every model.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// End-to-end deadline per request, covering every attempt and backoff.
    pub deadline_ms: u64,
    /// Most attempts per request, hedges included.
    pub max_attempts: u32,
    /// Extra attempts (retries and hedges) allowed fleet-wide, as a share of requests.
    pub retry_budget: f64,
    /// Whether slow attempts are hedged.
    pub hedging: bool,
    /// How accounts share traffic.
    pub accounts: AccountMode,
    /// Caller region for the `geo` strategy when the request does not say.
    pub caller_region: Option<String>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            deadline_ms: 60_000,
            max_attempts: 3,
            retry_budget: 0.2,
            hedging: true,
            accounts: AccountMode::Tiered,
            caller_region: None,
        }
    }
}

/// How the HTTP server protects itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Requests handled at once; beyond it, ServiceUnavailableException (503).
    pub max_concurrent_requests: usize,
    /// A request body must arrive within this time.
    pub body_read_timeout_ms: u64,
    /// Invocation records queued for the stdout or file sink; when the
    /// queue is full, records for those sinks are dropped and counted.
    pub log_queue_records: usize,
    /// A connection must send its first byte within this time.
    pub first_byte_timeout_ms: u64,
    /// With no request in flight, a connection silent this long is closed.
    pub idle_timeout_ms: u64,
    /// Open connections at once; `None`: `RLIMIT_NOFILE` less a reserve.
    pub max_connections: Option<usize>,
    /// Open connections per peer address; `None`: half of the cap.
    pub max_connections_per_peer: Option<usize>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            max_concurrent_requests: 4096,
            body_read_timeout_ms: 30_000,
            log_queue_records: 16_384,
            first_byte_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            max_connections: None,
            max_connections_per_peer: None,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; `None` for the built-in defaults.
    pub file: Option<PathBuf>,
    /// Region setting.
    pub region: RegionSetting,
    /// Catalog override file, resolved against the config's folder.
    pub catalog_file: Option<PathBuf>,
    /// Seconds between catalog refreshes from Bedrock's control plane
    /// (`[catalog] refresh_interval_s`; 0: never).
    pub catalog_refresh_s: u64,
    /// Policy for every request; per-model policies narrow it.
    pub default_policy: Policy,
    /// Named residency policies.
    pub policies: BTreeMap<String, Policy>,
    /// Models served, by name. Without a `[models]` table, every catalog alias.
    pub models: Vec<ExposedModel>,
    /// True without a `[models]` table: every catalog model is exposed,
    /// those a catalog refresh finds later included.
    pub exposes_catalog: bool,
    /// Declared application inference profiles.
    pub app_profiles: Vec<AppProfile>,
    /// Upstream settings.
    pub upstream: Upstream,
    /// Inbound authentication.
    pub auth: InboundAuth,
    /// Routing settings.
    pub routing: Routing,
    /// Invocation logs.
    pub logging: Logging,
    /// OTLP traces.
    pub tracing: Tracing,
    /// HTTP server limits.
    pub server: Server,
    /// Tenants; empty: one implicit tenant, as before tenants existed.
    pub tenants: Vec<Tenant>,
    /// Where limits, budgets and runtime keys live.
    pub state: StateSettings,
    /// Hash of the admin API key; `None`: `/admin` is off.
    pub admin_key: Option<KeyHash>,
    /// Inbound TLS; `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// Label request metrics with the tenant (names come from the config only).
    pub tenant_metric_label: bool,
    /// OpenAI-compatible servers models may be routed to.
    pub providers: Vec<Provider>,
    /// `[guards.NAME]`.
    pub guards: BTreeMap<String, Guard>,
    /// A policy must allow the gateway's own region too (no transit): a
    /// gateway outside any policy it serves refuses to start.
    pub strict_residency: bool,
    /// Bytes the in-memory response cache may hold.
    pub cache_max_bytes: u64,
    /// `[responses]`: stored Responses API state.
    pub responses: ResponsesStore,
    /// `[batch]`: batch inference through Bedrock's model invocation jobs.
    pub batch: Batch,
}

/// `[batch]`: where batch inference jobs keep their input and output, and
/// what a tenant may run. No buckets: batch endpoints are refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Region → the S3 bucket in that region a job there reads and writes
    /// (Bedrock reads and writes buckets in the job's own region).
    pub buckets: BTreeMap<String, String>,
    /// The service role Bedrock assumes to run a job.
    pub role_arn: Option<String>,
    /// An S3-compatible endpoint instead of AWS's (tests, on-premises).
    pub s3_endpoint: Option<String>,
    /// Key prefix of every object Meridian writes.
    pub prefix: String,
    /// How long a batch, its files and results are answered for.
    pub retention: std::time::Duration,
    /// Batches a tenant may have running at once.
    pub max_active_per_tenant: u32,
    /// The batch price as a factor of the on-demand price.
    pub price_factor: f64,
    /// How often each replica asks Bedrock how running jobs stand.
    pub poll_interval: std::time::Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            buckets: BTreeMap::new(),
            role_arn: None,
            s3_endpoint: None,
            prefix: "meridian-batch".into(),
            retention: std::time::Duration::from_secs(30 * 86_400),
            max_active_per_tenant: 10,
            price_factor: 0.5,
            poll_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// `[responses]`: whether `/v1/responses` keeps responses (their input and
/// output bodies) for `previous_response_id` and `GET`, and for how long.
/// Off unless configured, as bodies in the invocation log are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesStore {
    /// Keep responses created with `store` (the default of the API).
    pub store: bool,
    /// How long a stored response is kept.
    pub ttl: std::time::Duration,
    /// Bytes the in-memory store may hold (oldest out first); Redis keeps
    /// entries with the TTL as their expiry.
    pub max_bytes: u64,
}

impl Default for ResponsesStore {
    fn default() -> Self {
        ResponsesStore {
            store: false,
            ttl: std::time::Duration::from_secs(24 * 3600),
            max_bytes: 64 << 20,
        }
    }
}

/// OpenTelemetry trace export.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tracing {
    /// The collector's base URL (OTLP/HTTP: spans go to `{url}/v1/traces`;
    /// gRPC: the `TraceService/Export` method at that address); `None`: off.
    pub otlp_endpoint: Option<String>,
    /// How spans travel (`otlp_protocol`, spelt as `OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// OTLP's transports and encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP/1.1 (`http/protobuf`): the OpenTelemetry SDKs' default.
    #[default]
    HttpProtobuf,
    /// JSON over HTTP/1.1 (`http/json`).
    HttpJson,
    /// gRPC over HTTP/2 without TLS (`grpc`), the Collector's port 4317.
    Grpc,
}

impl OtlpProtocol {
    /// Every protocol, by its configuration spelling.
    pub const ALL: [(&'static str, OtlpProtocol); 3] = [
        ("http/protobuf", OtlpProtocol::HttpProtobuf),
        ("http/json", OtlpProtocol::HttpJson),
        ("grpc", OtlpProtocol::Grpc),
    ];

    /// Its configuration spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("http/protobuf", |(n, _)| n)
    }
}

/// Where invocation records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogSink {
    /// JSON lines on stdout.
    #[default]
    Stdout,
    /// JSON lines appended to `[logging] file`.
    File,
    /// Nowhere (S3 export, if configured, still runs).
    None,
}

/// S3 export of invocation records.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Log {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server (else AWS).
    pub endpoint: Option<String>,
    /// First guess of the bucket's region (HeadBucket finds the real one).
    pub region: Option<String>,
    /// Named AWS profile for S3 credentials (else the default chain).
    pub profile: Option<String>,
    /// Local spool directory.
    pub spool_dir: PathBuf,
    /// Most bytes the spool holds.
    pub spool_max_bytes: u64,
    /// Spool segments are sealed at this size.
    pub segment_bytes: u64,
    /// Segments are sealed and uploaded this often.
    pub flush_interval_ms: u64,
}

/// Invocation-log settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Logging {
    /// Line sink.
    pub sink: LogSink,
    /// File for `sink = "file"`.
    pub file: Option<PathBuf>,
    /// Request and response bodies in records.
    pub include_bodies: bool,
    /// S3 export.
    pub s3: Option<S3Log>,
}

/// A config together with the catalog it was validated against.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// The catalog, with any override file applied.
    pub catalog: Catalog,
}

/// The environment variable that may hold the whole config as TOML text
/// (containers with no file to mount: the ECS task definition sets it).
pub const CONFIG_TEXT_ENV: &str = "MERIDIAN_CONFIG_TOML";

/// Loads `path`; with `None`, the TOML text in `MERIDIAN_CONFIG_TOML` when
/// set, else `./meridian.toml` when it exists, else defaults.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    use meridian_catalog::env::EnvSource as _;
    load_with(
        path,
        meridian_catalog::env::ProcessEnv.non_empty(CONFIG_TEXT_ENV),
    )
}

/// [`load`] with the config text from the environment given.
pub fn load_with(path: Option<&Path>, env_text: Option<String>) -> Result<Loaded, ConfigError> {
    if let (None, Some(text)) = (path, env_text) {
        // No file: relative paths are taken from the working directory, and
        // there is nothing to watch for reloads (a new task brings a new config).
        return parse(&text, None);
    }
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::io(&p, e))?;
            parse(&text, Some(&p))
        }
        None => parse("", None),
    }
}

/// Parses and validates config text. `file` names it in errors and anchors
/// relative paths.
pub fn parse(text: &str, file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let raw = raw::parse(text, file)?;
    validate::validate(raw, text, file)
}

impl Config {
    /// The residency policies (of exposed models and tenants) that do not
    /// allow `gateway_region`: a gateway there would have their prompts
    /// transit a region they exclude. Each with who uses it
    /// (`models.NAME`, `tenants.NAME`).
    pub fn transit_policies(&self, gateway_region: &str) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let uses = self
            .models
            .iter()
            .map(|m| (&m.policy, format!("models.{}", m.name)))
            .chain(
                self.tenants
                    .iter()
                    .filter_map(|t| Some((t.residency.as_ref()?, format!("tenants.{}", t.name)))),
            );
        for (policy, user) in uses {
            if policy.allows(gateway_region) {
                continue;
            }
            match out.iter_mut().find(|(p, _)| *p == policy.name) {
                Some((_, users)) => users.push(user),
                None => out.push((policy.name.clone(), vec![user])),
            }
        }
        out
    }

    /// With `strict_residency`, the error for a gateway in `gateway_region`
    /// outside a policy it serves; `None` when it may serve them all.
    pub fn strict_violation(&self, gateway_region: &str) -> Option<String> {
        if !self.strict_residency {
            return None;
        }
        let outside = self.transit_policies(gateway_region);
        if outside.is_empty() {
            return None;
        }
        let list: Vec<String> = outside
            .iter()
            .map(|(p, users)| format!("'{p}' ({})", users.join(", ")))
            .collect();
        Some(format!(
            "strict_residency: a gateway in {gateway_region} may not serve residency policy {} — \
             prompts would pass through {gateway_region}, which the policy does not allow; \
             run Meridian in an allowed region or turn strict_residency off",
            list.join(", ")
        ))
    }

    /// The exposed model called `name`.
    pub fn model(&self, name: &str) -> Option<&ExposedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Resolves what a client asked for: an exposed name, or any model
    /// reference under the default policy. `narrow` (e.g. from a request
    /// header) can only narrow the policy.
    pub fn resolve(
        &self,
        catalog: &Catalog,
        requested: &str,
        source: &str,
        narrow: Option<&Policy>,
    ) -> Result<Resolution, ResolveError> {
        let exposed = self.model(requested);
        if let Some(m) = exposed
            && let Some(p) = &m.provider
        {
            return self.provider_resolution(m, p, source, narrow);
        }
        let (reference, policy) = match exposed {
            Some(m) => (m.model.as_str(), m.policy.clone()),
            None => (requested, self.default_policy.clone()),
        };
        let policy = match narrow {
            Some(n) => policy.intersect(n),
            None => policy,
        };
        let resolver = Resolver::new(catalog, &self.app_profiles);
        let mut res = resolver.resolve(reference, source, &policy);
        if let Some(m) = exposed.filter(|m| !m.provisioned.is_empty()) {
            res = self.with_provisioned(&resolver, m, source, &policy, res);
        }
        if let Err(ResolveError::UnknownModel { given, suggestions }) = &mut res {
            let names = self.models.iter().map(|m| m.name.as_str());
            let aliases = catalog.models().iter().map(|m| m.alias.as_str());
            *suggestions = closest(
                given,
                names
                    .chain(aliases)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter(),
            );
        }
        let mut res = res?;
        res.requested = requested.to_string();
        Ok(res)
    }

    /// `res` with the model's provisioned throughput first: each ARN under
    /// the same policy as any target (its region is where it processes),
    /// carrying this replica's share of the capacity and no per-token price.
    fn with_provisioned(
        &self,
        resolver: &Resolver<'_>,
        m: &ExposedModel,
        source: &str,
        policy: &Policy,
        res: Result<Resolution, ResolveError>,
    ) -> Result<Resolution, ResolveError> {
        let model = resolver.model_of(&m.model);
        let base = model.map(|c| c.id.clone());
        let mut targets = Vec::new();
        let mut rejected = Vec::new();
        for p in &m.provisioned {
            let r = match resolver.resolve(&p.arn, source, policy) {
                Ok(r) => r,
                Err(ResolveError::NoTarget { rejected: r, .. }) => {
                    rejected.extend(r);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for mut t in r.targets {
                t.base_model_id.clone_from(&base);
                t.price = Some(meridian_catalog::Price::FREE);
                t.capacity_tpm =
                    Some(p.tokens_per_minute() / u64::from(self.state.replicas.max(1)));
                targets.push(t);
            }
        }
        match res {
            Ok(mut r) => {
                targets.append(&mut r.targets);
                r.targets = targets;
                rejected.append(&mut r.rejected);
                r.rejected = rejected;
                Ok(r)
            }
            Err(ResolveError::NoTarget {
                requested,
                source_region,
                policy: name,
                rejected: mut more,
            }) => {
                rejected.append(&mut more);
                if targets.is_empty() {
                    return Err(ResolveError::NoTarget {
                        requested,
                        source_region,
                        policy: name,
                        rejected,
                    });
                }
                Ok(Resolution {
                    requested,
                    alias: model.map(|c| c.alias.clone()),
                    source_region,
                    policy: policy.clone(),
                    targets,
                    rejected,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The one target of a model served by a provider: called and processed
    /// in the provider's declared region. A provider whose region is not
    /// declared passes only an unrestricted policy.
    fn provider_resolution(
        &self,
        m: &ExposedModel,
        provider: &str,
        source: &str,
        narrow: Option<&Policy>,
    ) -> Result<Resolution, ResolveError> {
        let policy = match narrow {
            Some(n) => m.policy.intersect(n),
            None => m.policy.clone(),
        };
        let region = self
            .providers
            .iter()
            .find(|p| p.name == provider)
            .and_then(|p| p.region.clone());
        let called_in = region.clone().unwrap_or_else(|| UNDECLARED_REGION.into());
        let target = meridian_catalog::Target {
            endpoint_region: called_in.clone(),
            model_id: m.model.clone(),
            kind: meridian_catalog::TargetKind::Provider,
            prefix: None,
            base_model_id: None,
            destinations: std::collections::BTreeSet::from([called_in]),
            price: None,
            confirmed: region.is_some(),
            distance_km: 0,
            capacity_tpm: None,
        };
        let outside = match &region {
            Some(_) => policy.outside(target.regions_touched()),
            None if policy.is_unrestricted() => Vec::new(),
            None => vec![UNDECLARED_REGION.to_string()],
        };
        let (targets, rejected) = if outside.is_empty() {
            (vec![target], Vec::new())
        } else {
            (
                Vec::new(),
                vec![meridian_catalog::resolve::Rejected { target, outside }],
            )
        };
        if targets.is_empty() {
            return Err(ResolveError::NoTarget {
                requested: m.name.clone(),
                source_region: source.to_string(),
                policy: policy.name.clone(),
                rejected,
            });
        }
        Ok(Resolution {
            requested: m.name.clone(),
            alias: None,
            source_region: source.to_string(),
            policy,
            targets,
            rejected,
        })
    }
}

/// What a provider without a declared region is called in place of one.
pub const UNDECLARED_REGION: &str = "undeclared";
