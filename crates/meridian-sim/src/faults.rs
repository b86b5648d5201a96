//! Faults a region can be put in.

use serde::{Deserialize, Serialize};

/// The faults active in one region. The default is healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSet {
    /// Hard outage: the region's endpoint refuses connections and it processes
    /// nothing for profiles called elsewhere.
    pub outage: bool,
    /// During an outage, how long responses already under way may finish
    /// before open connections are reset (a load balancer's connection
    /// draining). New connections are refused and new requests on open ones
    /// get a 503 at once either way. Unset: reset at once.
    pub outage_drain_ms: Option<u64>,
    /// Share of requests answered with a 5xx, 0 to 1.
    pub error_rate: f64,
    /// Status of those errors: 500 (InternalServer) or 503 (ServiceUnavailable).
    pub error_status: u16,
    /// Brownout: latency multiplied by this.
    pub latency_factor: f64,
    /// Throttle storm: quota multiplied by this (0.2 = cut to 20 %).
    pub quota_factor: f64,
    /// Streams break (connection cut) after this many events.
    pub cut_after_events: Option<u32>,
    /// Hold the response this long before the first byte.
    pub stall_ms: Option<u64>,
    /// Answer ModelNotReadyException.
    pub not_ready: bool,
    /// Slow drip: output speed in tokens per second, overriding the model.
    pub drip_tokens_per_sec: Option<f64>,
    /// No Flex capacity left: every Flex-tier request is throttled.
    pub flex_throttled: bool,
    /// Requests called in this region are processed in this other region,
    /// whatever the model's destinations say (and the answer says so): a
    /// provider-side misroute, to rehearse residency alarms.
    pub misroute_to: Option<String>,
    /// Endpoint surfaces of this region that answer 503 while the others
    /// serve: `runtime` (Converse, InvokeModel), `runtime-messages`,
    /// `mantle-messages`, `runtime-openai`, `mantle-openai`; and `batch`: the
    /// region refuses new batch inference jobs (at its job quota).
    pub surfaces_down: Vec<String>,
}

/// The surface names `surfaces_down` takes.
pub const SURFACES: [&str; 6] = [
    "batch",
    "runtime",
    "runtime-messages",
    "mantle-messages",
    "runtime-openai",
    "mantle-openai",
];

impl Default for FaultSet {
    fn default() -> Self {
        FaultSet {
            outage: false,
            outage_drain_ms: None,
            error_rate: 0.0,
            error_status: 503,
            latency_factor: 1.0,
            quota_factor: 1.0,
            cut_after_events: None,
            stall_ms: None,
            not_ready: false,
            drip_tokens_per_sec: None,
            flex_throttled: false,
            misroute_to: None,
            surfaces_down: Vec::new(),
        }
    }
}

impl FaultSet {
    /// Whether nothing is wrong.
    pub fn is_healthy(&self) -> bool {
        *self == FaultSet::default()
    }

    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be between 0 and 1".into());
        }
        if !matches!(self.error_status, 500 | 503) {
            return Err("error_status must be 500 or 503".into());
        }
        if self.latency_factor <= 0.0 || self.quota_factor < 0.0 {
            return Err("latency_factor must be > 0 and quota_factor >= 0".into());
        }
        if self.drip_tokens_per_sec.is_some_and(|t| t <= 0.0) {
            return Err("drip_tokens_per_sec must be > 0".into());
        }
        if let Some(s) = self
            .surfaces_down
            .iter()
            .find(|s| !SURFACES.contains(&s.as_str()))
        {
            return Err(format!(
                "surfaces_down: '{s}' is not a surface; expected {}",
                SURFACES.join(", ")
            ));
        }
        Ok(())
    }
}
