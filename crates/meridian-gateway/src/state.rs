//! What every request handler shares.

use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_config::Config;
use meridian_upstream::BedrockClient;
use serde::Serialize;

/// Where upstream calls go, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamInfo {
    /// `aws` or `simulated`.
    pub mode: &'static str,
    /// How that was decided, in a few words.
    pub detail: String,
}

/// Shared, read-only gateway state.
#[derive(Debug)]
pub struct AppState {
    /// Validated config.
    pub config: Config,
    /// The catalog the config was validated against.
    pub catalog: Catalog,
    /// Region Meridian runs in.
    pub region: String,
    /// The step that decided the region.
    pub region_step: Step,
    /// Bedrock client.
    pub upstream: BedrockClient,
    /// Upstream mode for operators.
    pub upstream_info: UpstreamInfo,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Most upstream attempts per request.
    pub max_attempts: usize,
    /// Account ID shown in control-plane ARNs.
    pub account_id: String,
    /// Breakers per target and the retry budget.
    pub health: meridian_router::health::Health,
}
