//! Scheduled faults: a scenario file applies fault sets to regions at given times.

use serde::{Deserialize, Serialize};

use crate::config::{CapacityModel, LatencyModel};
use crate::faults::FaultSet;

/// One scheduled change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    /// Milliseconds after the fleet starts.
    pub at_ms: u64,
    /// Region affected.
    pub region: String,
    /// The region's faults from then on (replaces what it had).
    #[serde(default)]
    pub faults: FaultSet,
}

/// A scenario file (JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    #[serde(default)]
    pub name: String,
    /// Latency model override.
    #[serde(default)]
    pub latency: Option<LatencyModel>,
    /// Capacity model override.
    #[serde(default)]
    pub capacity: Option<CapacityModel>,
    /// Steps, applied in time order.
    #[serde(default)]
    pub steps: Vec<ScenarioStep>,
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario =
            serde_json::from_str(text).map_err(|e| format!("line {}: {e}", e.line()))?;
        for (i, step) in s.steps.iter().enumerate() {
            step.faults
                .validate()
                .map_err(|e| format!("steps[{i}].faults: {e}"))?;
        }
        Ok(s)
    }
}
