//! The simulated Bedrock region fleet.
//!
//! One HTTP listener per region on 127.0.0.1, each serving the Bedrock Runtime
//! and control-plane surface, verifying SigV4, processing profile requests in
//! a region of the profile's destination set, and modelling latency, capacity
//! and faults. A separate control listener switches faults at run time and
//! exposes the fleet's own record of where each request was processed.
//!
//! The fleet shares data (the catalog) with the gateway, never its routing.

mod batch;
mod capacity;
mod config;
mod control;
mod describe;
mod faults;
mod fleet;
mod frontier;
mod generate;
mod guardrails;
mod job;
mod manifest;
mod messages;
mod native;
mod openai;
mod placement;
mod prompt_cache;
mod record;
mod region;
mod rng;
mod s3;
mod scenario;
mod stream;
mod thinking;
mod tiers;
mod world;

pub use config::{CapacityModel, FleetConfig, LatencyModel, SimCredential, SimProvisioned};
pub use faults::FaultSet;
pub use fleet::Fleet;
pub use guardrails::SimGuardrail;
pub use manifest::{Manifest, ManifestRegion};
pub use record::Record;
pub use scenario::{Scenario, ScenarioStep};
pub use world::{NewModel, ProfileChange};

/// Header carrying the region that processed a request.
pub const INFERENCE_REGION_HEADER: &str = "x-meridian-sim-inference-region";
