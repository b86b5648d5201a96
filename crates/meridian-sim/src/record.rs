//! The fleet's own record of every request: the ground truth for residency.

use serde::{Deserialize, Serialize};

/// One request as the fleet saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Order of arrival across the fleet.
    pub seq: u64,
    /// The request ID the fleet answered with.
    pub request_id: String,
    /// Region whose endpoint was called.
    pub endpoint_region: String,
    /// Region that processed it, when one did.
    pub inference_region: Option<String>,
    /// Model ID from the path.
    pub model_id: String,
    /// Operation name.
    pub operation: String,
    /// `success` or the error shape name, or `cut` for a broken stream.
    pub outcome: String,
    /// Input tokens counted.
    pub input_tokens: u64,
    /// Output tokens produced.
    pub output_tokens: u64,
    /// The service tier that served it, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
}
