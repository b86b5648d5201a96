//! Facts read from Bedrock's control plane, as data: which system profiles a
//! refresh found in which source regions, and where each may be processed.
//! How they compare with the compiled catalog is `discovered`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::arn::Arn;
use crate::route::Route;

/// System inference profiles as one refresh read them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Discovered {
    /// Profile ID → source region → regions it may be processed in.
    pub profiles: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Source regions whose list was read (others say nothing).
    pub regions: BTreeSet<String>,
    /// Application profile ARN → regions it may be processed in, from
    /// `GetInferenceProfile` (`None`: Bedrock does not know the ARN).
    pub app_profiles: BTreeMap<String, Option<BTreeSet<String>>>,
    /// Region → base model IDs `ListFoundationModels` lists there with
    /// on-demand inference (regions read only).
    pub on_demand: BTreeMap<String, BTreeSet<String>>,
    /// Base model ID → what `ListFoundationModels` says of it, over the
    /// regions read: a model the compiled catalog lacks is servable from
    /// these facts alone (see `Catalog::with_discovered`).
    pub models: BTreeMap<String, Listed>,
    /// Region → model IDs Mantle's `/v1/models` lists there (regions whose
    /// Mantle was read; others say nothing).
    pub mantle: BTreeMap<String, BTreeSet<String>>,
}

/// A foundation model as `ListFoundationModels` lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Listed {
    /// `modelName`.
    pub name: String,
    /// `providerName`, lower case.
    pub provider: String,
    /// `inputModalities`, lower case.
    pub input: BTreeSet<String>,
    /// `outputModalities`, lower case.
    pub output: BTreeSet<String>,
    /// `responseStreamingSupported`.
    pub streaming: bool,
    /// Regions whose list names it.
    pub regions: BTreeSet<String>,
}

impl Discovered {
    /// Adds one region's `ListInferenceProfiles` answer (its
    /// `inferenceProfileSummaries`; system-defined profiles only). The
    /// destination set is the regions of each profile's foundation-model ARNs.
    pub fn add_region(&mut self, source: &str, summaries: &[Value]) {
        self.regions.insert(source.to_string());
        for s in summaries {
            if s["type"].as_str().is_some_and(|t| t != "SYSTEM_DEFINED") {
                continue;
            }
            let Some(id) = s["inferenceProfileId"].as_str() else {
                continue;
            };
            let dests = destinations_of(s);
            if !dests.is_empty() {
                self.profiles
                    .entry(id.to_string())
                    .or_default()
                    .insert(source.to_string(), dests);
            }
        }
    }

    /// Adds one region's Mantle model list (OpenAI's shape: `data[].id`).
    pub fn add_mantle(&mut self, region: &str, list: &Value) {
        let ids = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .map(str::to_string)
            .collect();
        self.mantle.insert(region.to_string(), ids);
    }

    /// Whether Mantle serves `id` in `region`: `None` while its list there
    /// was never read.
    pub fn on_mantle(&self, region: &str, id: &str) -> Option<bool> {
        self.mantle.get(region).map(|ids| ids.contains(id))
    }

    /// Carries over `before`'s facts for regions this read did not reach.
    pub fn keep_unread(&mut self, before: &Discovered) {
        for (region, ids) in &before.mantle {
            self.mantle
                .entry(region.clone())
                .or_insert_with(|| ids.clone());
        }
        for (region, ids) in &before.on_demand {
            self.on_demand
                .entry(region.clone())
                .or_insert_with(|| ids.clone());
        }
        for (id, listed) in &before.models {
            let unread: BTreeSet<String> = listed
                .regions
                .iter()
                .filter(|r| !self.models_read(r))
                .cloned()
                .collect();
            if !unread.is_empty() {
                let entry = self.models.entry(id.clone()).or_insert_with(|| Listed {
                    regions: BTreeSet::new(),
                    ..listed.clone()
                });
                entry.regions.extend(unread);
            }
        }
        for (arn, d) in &before.app_profiles {
            self.app_profiles
                .entry(arn.clone())
                .or_insert_with(|| d.clone());
        }
        for region in before.regions.difference(&self.regions.clone()) {
            for (profile, by_source) in &before.profiles {
                if let Some(d) = by_source.get(region) {
                    self.profiles
                        .entry(profile.clone())
                        .or_default()
                        .insert(region.clone(), d.clone());
                }
            }
            self.regions.insert(region.clone());
        }
    }

    /// Whether `ListFoundationModels` was read in `region` (this time or,
    /// carried over, before).
    fn models_read(&self, region: &str) -> bool {
        self.on_demand.contains_key(region)
    }

    /// Adds one region's `ListFoundationModels` answer (its `modelSummaries`).
    pub fn add_models(&mut self, region: &str, summaries: &[Value]) {
        let lower = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        };
        for m in summaries {
            let Some(id) = m["modelId"].as_str() else {
                continue;
            };
            let entry = self.models.entry(id.to_string()).or_insert_with(|| Listed {
                name: m["modelName"].as_str().unwrap_or(id).to_string(),
                provider: m["providerName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                input: lower(&m["inputModalities"]),
                output: lower(&m["outputModalities"]),
                streaming: m["responseStreamingSupported"].as_bool().unwrap_or(false),
                regions: BTreeSet::new(),
            });
            entry.regions.insert(region.to_string());
        }
        let ids = summaries
            .iter()
            .filter(|m| {
                m["inferenceTypesSupported"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == "ON_DEMAND"))
            })
            .filter_map(|m| m["modelId"].as_str().map(str::to_string))
            .collect();
        self.on_demand.insert(region.to_string(), ids);
    }

    /// Whether `ListFoundationModels` in `region` lists `model_id` on demand.
    pub fn on_demand_in(&self, model_id: &str, region: &str) -> bool {
        self.on_demand
            .get(region)
            .is_some_and(|ids| ids.contains(model_id))
    }

    /// Adds `GetInferenceProfile`'s answer for application profile `arn`
    /// (`None`: not found).
    pub fn add_app_profile(&mut self, arn: &str, profile: Option<&Value>) {
        let dests = profile.map(destinations_of);
        self.app_profiles.insert(arn.to_string(), dests);
    }

    /// The discovered set of `profile` called in `source`.
    pub fn destinations(&self, profile: &str, source: &str) -> Option<&BTreeSet<String>> {
        self.profiles.get(profile)?.get(source)
    }

    /// `route` as profile `profile` has it once these facts are applied:
    /// each source's set widened by what was discovered, discovered sources
    /// added.
    pub fn overlay(&self, route: &Route, profile: &str) -> Option<Route> {
        let found = self.profiles.get(profile)?;
        let mut r = route.clone();
        for (src, dests) in found {
            r.map
                .entry(src.clone())
                .or_default()
                .extend(dests.iter().cloned());
        }
        Some(r)
    }

    /// A route for `profile` from discovered facts alone.
    pub fn route(&self, profile: &str, prefix: &str) -> Option<Route> {
        let found = self.profiles.get(profile)?;
        Some(Route {
            id: format!("discovered:{prefix}"),
            prefix: prefix.to_string(),
            confirmed: true,
            note: "read from ListInferenceProfiles".into(),
            map: found.clone(),
        })
    }
}

/// The regions of a profile's foundation-model ARNs.
fn destinations_of(profile: &Value) -> BTreeSet<String> {
    profile["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["modelArn"].as_str())
        .filter_map(Arn::parse)
        .map(|a| a.region.to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A `ListInferenceProfiles` summary of system profile `id` processing in `dests`.
    pub(crate) fn summary(id: &str, dests: &[&str]) -> Value {
        let models: Vec<Value> = dests
            .iter()
            .map(|d| json!({"modelArn": format!("arn:aws:bedrock:{d}::foundation-model/m")}))
            .collect();
        json!({"inferenceProfileId": id, "type": "SYSTEM_DEFINED", "models": models})
    }

    #[test]
    fn a_region_not_read_again_keeps_its_earlier_facts_and_a_read_one_replaces_them() {
        let mut before = Discovered::default();
        before.add_region("eu-west-1", &[summary("eu.m", &["eu-west-1", "us-east-1"])]);
        before.add_region("eu-west-3", &[summary("eu.m", &["eu-west-3"])]);
        before.add_models(
            "eu-west-1",
            &[json!({"modelId": "m", "inferenceTypesSupported": ["ON_DEMAND"]})],
        );

        // This time only eu-west-3 answered, with a narrower set.
        let mut now = Discovered::default();
        now.add_region(
            "eu-west-3",
            &[summary("eu.m", &["eu-west-3", "eu-central-1"])],
        );
        now.keep_unread(&before);
        let wide = now.destinations("eu.m", "eu-west-1").unwrap();
        assert!(
            wide.contains("us-east-1"),
            "eu-west-1 was not read: the widened set stays"
        );
        assert_eq!(
            now.destinations("eu.m", "eu-west-3").unwrap().len(),
            2,
            "eu-west-3's new read wins"
        );
        assert!(now.on_demand_in("m", "eu-west-1"));
        assert!(now.regions.contains("eu-west-1") && now.regions.contains("eu-west-3"));
    }

    #[test]
    fn mantle_lists_say_what_they_read_and_nothing_elsewhere() {
        let mut d = Discovered::default();
        d.add_mantle(
            "us-east-2",
            &json!({"object": "list", "data": [{"id": "anthropic.a"}, {"id": "anthropic.b"}]}),
        );
        assert_eq!(d.on_mantle("us-east-2", "anthropic.a"), Some(true));
        assert_eq!(d.on_mantle("us-east-2", "anthropic.c"), Some(false));
        assert_eq!(d.on_mantle("us-east-1", "anthropic.a"), None, "never read");
        // A later refresh that cannot read us-east-2 keeps what was read there.
        let mut next = Discovered::default();
        next.add_mantle("us-east-1", &json!({"data": []}));
        next.keep_unread(&d);
        assert_eq!(next.on_mantle("us-east-2", "anthropic.b"), Some(true));
        assert_eq!(next.on_mantle("us-east-1", "anthropic.a"), Some(false));
    }
}
