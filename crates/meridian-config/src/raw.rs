//! The file as written: every key known, nothing checked beyond types.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, line_of};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub region: Option<Spanned<String>>,
    pub default_residency: Option<Spanned<RawResidency>>,
    pub strict_residency: Option<Spanned<bool>>,
    #[serde(default)]
    pub catalog: RawCatalog,
    #[serde(default)]
    pub residency: BTreeMap<Spanned<String>, RawPolicy>,
    #[serde(default)]
    pub models: BTreeMap<Spanned<String>, RawModel>,
    #[serde(default)]
    pub application_profiles: Vec<RawAppProfile>,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tenants: BTreeMap<Spanned<String>, RawTenant>,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub guards: BTreeMap<Spanned<String>, crate::guard::RawGuard>,
    #[serde(default)]
    pub cache: RawCacheStore,
    #[serde(default)]
    pub responses: RawResponses,
    #[serde(default)]
    pub batch: RawBatch,
}

/// `[batch]`: buckets per region, the job role, limits and price.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBatch {
    #[serde(default)]
    pub buckets: BTreeMap<Spanned<String>, Spanned<String>>,
    pub role_arn: Option<Spanned<String>>,
    pub s3_endpoint: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    pub max_active_per_tenant: Option<Spanned<u32>>,
    pub price_factor: Option<Spanned<f64>>,
    pub poll_interval: Option<Spanned<String>>,
}

/// `[responses]`: what `/v1/responses` keeps for `previous_response_id`
/// and `GET /v1/responses/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponses {
    pub store: Option<Spanned<bool>>,
    pub ttl: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<u64>>,
}

/// `[cache]`: the response cache's store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheStore {
    pub max_bytes: Option<Spanned<u64>>,
}

/// An OpenAI-compatible server Meridian may route to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: Spanned<String>,
    pub base_url: Spanned<String>,
    pub api_key_env: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub models: Spanned<Vec<String>>,
}

/// One tenant: who it is, what it may call, how much.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    #[serde(default)]
    pub api_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    pub models: Option<Spanned<Vec<String>>>,
    pub residency: Option<Spanned<RawResidency>>,
    pub requests_per_minute: Option<Spanned<u64>>,
    pub tokens_per_minute: Option<Spanned<u64>>,
    pub max_concurrent: Option<Spanned<u64>>,
    pub budget_usd_per_day: Option<Spanned<f64>>,
    pub budget_usd_per_month: Option<Spanned<f64>>,
    pub unpriced: Option<Spanned<String>>,
    pub guard: Option<Spanned<String>>,
}

/// Where limits, budgets and runtime keys live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub backend: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub on_unavailable: Option<Spanned<String>>,
    pub replicas: Option<Spanned<u32>>,
    pub timeout_ms: Option<Spanned<u64>>,
}

/// The admin API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub key_hash: Option<Spanned<String>>,
}

/// Metric options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    #[serde(default)]
    pub tenant_label: bool,
}

/// How the HTTP server protects itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub max_concurrent_requests: Option<Spanned<u64>>,
    pub body_read_timeout_ms: Option<Spanned<u64>>,
    pub log_queue_records: Option<Spanned<u64>>,
    pub first_byte_timeout_ms: Option<Spanned<u64>>,
    pub idle_timeout_ms: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_connections_per_peer: Option<Spanned<u64>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
}

/// OTLP traces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTracing {
    pub otlp_endpoint: Option<Spanned<String>>,
    pub otlp_protocol: Option<Spanned<String>>,
    pub service_name: Option<String>,
}

/// Invocation logs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    pub sink: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub include_bodies: bool,
    pub s3: Option<RawS3>,
}

/// Invocation-log export to S3.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawS3 {
    pub bucket: Spanned<String>,
    #[serde(default)]
    pub prefix: String,
    pub endpoint: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub profile: Option<String>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<Spanned<u64>>,
    pub segment_bytes: Option<Spanned<u64>>,
    pub flush_interval_ms: Option<Spanned<u64>>,
}

/// Routing defaults for every model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub deadline_ms: Option<Spanned<u64>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub retry_budget: Option<Spanned<f64>>,
    pub hedging: Option<bool>,
    pub accounts: Option<Spanned<String>>,
    pub caller_region: Option<Spanned<String>>,
}

/// Inbound authentication: who may call this Meridian.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    #[serde(default)]
    pub api_keys: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub access_key_id: Spanned<String>,
    pub secret_access_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatalog {
    pub file: Option<Spanned<String>>,
    pub refresh_interval_s: Option<Spanned<u64>>,
}

/// A named policy: terms to allow (empty: anywhere) and to exclude.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
}

/// A policy by name, or inline allow terms.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawResidency {
    Named(String),
    Inline(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub model: Spanned<String>,
    pub provider: Option<Spanned<String>>,
    pub residency: Option<Spanned<RawResidency>>,
    pub strategy: Option<Spanned<String>>,
    #[serde(default)]
    pub weights: BTreeMap<Spanned<String>, u32>,
    #[serde(default)]
    pub fallback: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompt_cache_affinity: bool,
    pub hedging: Option<bool>,
    #[serde(default)]
    pub service_tiers: Vec<Spanned<String>>,
    #[serde(default)]
    pub provisioned: Vec<RawProvisioned>,
    pub guard: Option<Spanned<String>>,
    #[serde(default)]
    pub guardrail: BTreeMap<Spanned<String>, Spanned<String>>,
    pub cache: Option<crate::guard::RawCache>,
}

/// Provisioned throughput bought for a model in one region.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvisioned {
    pub arn: Spanned<String>,
    pub model_units: Spanned<u32>,
    pub tokens_per_minute_per_unit: Spanned<u64>,
    pub usd_per_unit_hour: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAppProfile {
    pub arn: Spanned<String>,
    pub model: Spanned<String>,
    pub regions: Spanned<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoints: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub mantle_endpoints: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub name: Spanned<String>,
    pub profile: Option<String>,
    pub role_arn: Option<Spanned<String>>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub regions: Vec<Spanned<String>>,
}

pub(crate) fn parse(text: &str, file: Option<&Path>) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError {
            file: display(file),
            line,
            key: line.and_then(|l| key_on_line(text, l)),
            message: e.message().trim().to_string(),
        }
    })
}

pub(crate) fn display(file: Option<&Path>) -> String {
    file.map(|p| p.display().to_string())
        .unwrap_or_else(|| "<defaults>".into())
}

/// The key written on a line (`key = …` or `[table]`), to name it in errors.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line - 1)?.trim();
    if let Some(h) = l.strip_prefix('[') {
        return Some(h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    }
    l.split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
}
