//! How a fleet is set up.

use meridian_catalog::AppProfile;
use serde::{Deserialize, Serialize};

/// A credential the fleet accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCredential {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl Default for SimCredential {
    fn default() -> Self {
        SimCredential {
            access_key_id: "AKIDMERIDIANSIM".into(),
            secret_access_key: "meridian-simulated-fleet-secret".into(),
        }
    }
}

/// Latency model. Times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyModel {
    /// Time to first token before network distance and faults.
    pub ttft_ms: f64,
    /// Output speed.
    pub tokens_per_sec: f64,
    /// Relative jitter, 0.1 = ±10 %.
    pub jitter: f64,
    /// Round-trip milliseconds per 1,000 km between the called region and the
    /// processing region (light in fibre plus routing: about 10).
    pub rtt_ms_per_1000km: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel {
            ttft_ms: 40.0,
            tokens_per_sec: 400.0,
            jitter: 0.1,
            rtt_ms_per_1000km: 10.0,
        }
    }
}

/// Capacity model, per region and model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityModel {
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Tokens per minute (input + max_tokens reserved at admission).
    pub tokens_per_minute: u64,
}

impl Default for CapacityModel {
    fn default() -> Self {
        CapacityModel {
            concurrency: 256,
            tokens_per_minute: 2_000_000,
        }
    }
}

/// Provisioned throughput the fleet serves: a fixed capacity per ARN, in
/// the ARN's region only, throttling beyond it; no cross-region routing and
/// no share of the region's on-demand quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimProvisioned {
    /// `arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID`.
    pub arn: String,
    /// Base model it serves.
    pub model_id: String,
    /// Tokens per minute (input + max_tokens reserved at admission, the
    /// unused part given back, as for on-demand quotas).
    pub tokens_per_minute: u64,
}

/// Everything a fleet needs to start.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Region codes to simulate.
    pub regions: Vec<String>,
    /// Seed for every random choice.
    pub seed: u64,
    /// Accepted SigV4 credentials.
    pub credentials: Vec<SimCredential>,
    /// Accepted bearer tokens (Bedrock API keys).
    pub bearer_tokens: Vec<String>,
    /// Latency model.
    pub latency: LatencyModel,
    /// Capacity model.
    pub capacity: CapacityModel,
    /// Application inference profiles the fleet knows.
    pub app_profiles: Vec<AppProfile>,
    /// Provisioned throughput the fleet serves.
    pub provisioned: Vec<SimProvisioned>,
    /// Bedrock guardrails, each in its one region.
    pub guardrails: Vec<crate::guardrails::SimGuardrail>,
    /// Records kept (the oldest are dropped first).
    pub max_records: usize,
    /// Whether records keep the prompt text (for tests that check what a
    /// gateway let through); `serve`'s in-process fleet keeps none.
    pub keep_prompts: bool,
    /// When set, the control API answers only `Authorization: Bearer TOKEN`.
    pub control_token: Option<String>,
    /// The S3-compatible server batch jobs read their input from and write
    /// their output to (no batch jobs without one).
    pub s3_endpoint: Option<String>,
    /// How long a batch job takes from submission to its end, ms.
    pub batch_job_ms: u64,
}

/// Records a fleet keeps by default.
pub const MAX_RECORDS: usize = 100_000;

impl FleetConfig {
    /// A fleet of `regions` with defaults and the default credential.
    pub fn new<S: Into<String>>(regions: impl IntoIterator<Item = S>) -> Self {
        FleetConfig {
            regions: regions.into_iter().map(Into::into).collect(),
            seed: 1,
            credentials: vec![SimCredential::default()],
            bearer_tokens: Vec::new(),
            latency: LatencyModel::default(),
            capacity: CapacityModel::default(),
            app_profiles: Vec::new(),
            provisioned: Vec::new(),
            guardrails: Vec::new(),
            max_records: MAX_RECORDS,
            keep_prompts: true,
            control_token: None,
            s3_endpoint: None,
            batch_job_ms: 3000,
        }
    }
}
