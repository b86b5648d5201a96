//! The fleet's address book: where each region listens, the control API,
//! and the credential the fleet accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::SimCredential;

/// Where each simulated region listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRegion {
    /// Bedrock endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Fault control URL for this region.
    pub control_url: String,
    /// Base URL of the region's Mantle endpoint (the fleet's stand-in for
    /// `https://bedrock-mantle.{region}.api.aws`): Anthropic Messages at
    /// `{mantle_url}/anthropic/v1/messages`.
    #[serde(default)]
    pub mantle_url: String,
}

/// The fleet's address book, written as JSON for other processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Control API base URL.
    pub control_url: String,
    /// Credential that signs requests the fleet accepts.
    pub credentials: SimCredential,
    /// Region code → URLs.
    pub regions: BTreeMap<String, ManifestRegion>,
}

impl Manifest {
    /// Region → endpoint URL, for a client's endpoint overrides.
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        self.regions
            .iter()
            .map(|(k, v)| (k.clone(), v.url.clone()))
            .collect()
    }

    /// Region → Mantle base URL, for the regions that have one.
    pub fn mantle_endpoints(&self) -> BTreeMap<String, String> {
        self.regions
            .iter()
            .filter(|(_, v)| !v.mantle_url.is_empty())
            .map(|(k, v)| (k.clone(), v.mantle_url.clone()))
            .collect()
    }
}
