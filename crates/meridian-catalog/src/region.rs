use serde::{Deserialize, Serialize};

/// One AWS region as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region code, e.g. `eu-west-3`.
    pub code: String,
    /// Display name, e.g. `Europe (Paris)`.
    pub name: String,
    /// Residency geography: `us`, `eu`, `apac`, `ca`, ...
    pub geography: String,
    /// Finer residency groups inside the geography (`jp`, `au`, `nz`).
    #[serde(default)]
    pub zones: Vec<String>,
    /// AWS partition: `aws` or `aws-us-gov`.
    pub partition: String,
    /// Whether the region serves the Bedrock Runtime API.
    pub bedrock: bool,
    /// False when Bedrock availability is not confirmed by an AWS source.
    #[serde(default = "yes")]
    pub bedrock_confirmed: bool,
    /// Approximate latitude of the region's metro area.
    pub lat: f64,
    /// Approximate longitude of the region's metro area.
    pub lon: f64,
}

fn yes() -> bool {
    true
}

impl Region {
    /// Great-circle distance in kilometres; a rough proxy for network distance.
    pub fn distance_km(&self, other: &Region) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        let (la1, lo1) = (self.lat.to_radians(), self.lon.to_radians());
        let (la2, lo2) = (other.lat.to_radians(), other.lon.to_radians());
        let h = ((la2 - la1) / 2.0).sin().powi(2)
            + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }

    /// Whether a residency term (geography or zone name) covers this region.
    pub fn in_group(&self, term: &str) -> bool {
        self.geography == term || self.zones.iter().any(|z| z == term)
    }
}
