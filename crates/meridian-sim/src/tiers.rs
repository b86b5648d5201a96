//! Service tiers as Bedrock models them: `serviceTier` in a Converse body or
//! `X-Amzn-Bedrock-Service-Tier` on InvokeModel; a tier the model does not
//! offer is refused; Flex gets half the region's capacity (so it is
//! throttled first) and runs slower, Priority runs faster.

use meridian_catalog::ServiceTier;
use meridian_wire::BedrockError;
use serde_json::Value;

/// InvokeModel's service-tier header.
pub const HEADER: &str = "x-amzn-bedrock-service-tier";

/// Share of a region's capacity Flex requests may use.
pub const FLEX_SHARE: f64 = 0.5;

/// The tier a request asks for (`None`: standard).
pub fn requested(
    converse: bool,
    headers: &http::HeaderMap,
    body: &Value,
) -> Result<Option<ServiceTier>, BedrockError> {
    let name = if converse {
        match body.get("serviceTier") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v["type"].as_str().ok_or_else(|| {
                BedrockError::validation(
                    "1 validation error detected: Value at 'serviceTier' failed to satisfy constraint: Member must be an object with a 'type'",
                )
            })?,
        }
    } else {
        match headers.get(HEADER).and_then(|v| v.to_str().ok()) {
            None => return Ok(None),
            Some(v) => v,
        }
    };
    ServiceTier::parse(name)
        .map(Some)
        .ok_or_else(|| BedrockError::validation("The service tier provided is invalid."))
}

/// Refuses a tier `model` does not offer.
pub fn check(
    tier: Option<ServiceTier>,
    model: Option<&meridian_catalog::Model>,
    base: &str,
) -> Result<(), BedrockError> {
    let Some(tier) = tier else { return Ok(()) };
    if tier == ServiceTier::Reserved {
        return Err(BedrockError::validation("Reservation not found."));
    }
    if model.is_some_and(|m| m.offers_tier(tier)) {
        return Ok(());
    }
    Err(BedrockError::validation(format!(
        "The {} service tier is not supported for model {base}.",
        tier.name()
    )))
}

/// Latency factors (first token, per token) of a tier.
pub fn pace_factors(tier: Option<ServiceTier>) -> (f64, f64) {
    match tier {
        Some(ServiceTier::Flex) => (1.5, 1.25),
        Some(ServiceTier::Priority) => (0.75, 0.8),
        _ => (1.0, 1.0),
    }
}
