use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// A family of system-defined inference profiles sharing a prefix and the same
/// source-region → destination-regions map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Route ID referenced by models, e.g. `eu-2025`.
    pub id: String,
    /// Profile ID prefix, e.g. `eu` (profile ID `eu.<base model ID>`).
    pub prefix: String,
    /// False when the sets are not confirmed by an AWS source.
    pub confirmed: bool,
    /// Where the data comes from and how sure it is.
    pub note: String,
    /// Source region → regions where Bedrock may process the request.
    pub map: BTreeMap<String, BTreeSet<String>>,
}

impl Route {
    /// Whether this is the `global.` family.
    pub fn is_global(&self) -> bool {
        self.prefix == "global"
    }

    /// Destination set when called from `source`, if callable from there.
    pub fn destinations(&self, source: &str) -> Option<&BTreeSet<String>> {
        self.map.get(source)
    }
}
