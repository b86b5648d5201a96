//! The fleet's own view of the world, which a test or scenario can change
//! at run time: system inference profiles that appear, or whose destination
//! set changes, in one source region.
//!
//! As AWS does, a change is published by the control plane
//! (ListInferenceProfiles, GetInferenceProfile) at once and used by the data
//! plane only after `effective_after_ms`, so a gateway that refreshes its
//! catalog in time can stop using a widened profile before any request is
//! processed in a new destination.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

/// One change: profile `id`, called in `source`, processes in `destinations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// System profile ID, e.g. `eu.anthropic.claude-sonnet-4-5-20250929-v1:0`.
    pub id: String,
    /// Source region the profile is called in.
    pub source: String,
    /// Regions where it may be processed from there.
    pub destinations: BTreeSet<String>,
    /// Delay before the data plane routes by the new set.
    #[serde(default)]
    pub effective_after_ms: u64,
}

/// A foundation model the fleet starts serving at run time (a model
/// released today): listed by `ListFoundationModels` in `regions`, called
/// there by its base ID when `on_demand`, else only through the profiles
/// the world gives it (`PUT /world/profiles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    /// Base model ID, e.g. `anthropic.claude-opus-6`.
    pub id: String,
    /// `modelName`.
    pub name: String,
    /// `providerName`, e.g. `Anthropic`.
    pub provider: String,
    /// Regions whose `ListFoundationModels` lists it.
    pub regions: BTreeSet<String>,
    /// Whether the base ID takes on-demand calls in those regions.
    #[serde(default)]
    pub on_demand: bool,
    /// Regions whose Mantle serves it (and lists it in `/v1/models`);
    /// unset: every region's Mantle, for an Anthropic model.
    #[serde(default)]
    pub mantle: Option<BTreeSet<String>>,
}

/// A change, stamped when it reaches the data plane.
#[derive(Debug, Clone)]
struct Applied {
    change: ProfileChange,
    effective_at: Instant,
}

/// Every change made so far; the latest per (profile, source) wins.
#[derive(Debug, Default)]
pub struct World {
    changes: Vec<Applied>,
    models: Vec<NewModel>,
}

impl World {
    /// Records `change` (replacing an earlier one for the same profile and source).
    pub fn apply(&mut self, change: ProfileChange) {
        self.changes
            .retain(|a| !(a.change.id == change.id && a.change.source == change.source));
        let effective_at = Instant::now() + Duration::from_millis(change.effective_after_ms);
        self.changes.push(Applied {
            change,
            effective_at,
        });
    }

    /// Forgets every change.
    pub fn reset(&mut self) {
        self.changes.clear();
        self.models.clear();
    }

    /// Starts serving `model` (replacing an earlier one with its ID).
    pub fn add_model(&mut self, model: NewModel) {
        self.models.retain(|m| m.id != model.id);
        self.models.push(model);
    }

    /// The model added with base ID `id`.
    pub fn model(&self, id: &str) -> Option<&NewModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Every model added.
    pub fn models(&self) -> &[NewModel] {
        &self.models
    }

    /// What the control plane publishes for `id` called in `source`.
    pub fn published(&self, id: &str, source: &str) -> Option<&BTreeSet<String>> {
        self.find(id, source).map(|a| &a.change.destinations)
    }

    /// What the data plane uses for `id` called in `source`, once effective.
    pub fn routed(&self, id: &str, source: &str) -> Option<&BTreeSet<String>> {
        self.find(id, source)
            .filter(|a| a.effective_at <= Instant::now())
            .map(|a| &a.change.destinations)
    }

    /// Changes for profiles called in `source`.
    pub fn in_source<'a>(&'a self, source: &'a str) -> impl Iterator<Item = &'a ProfileChange> {
        self.changes
            .iter()
            .map(|a| &a.change)
            .filter(move |c| c.source == source)
    }

    /// Every change.
    pub fn changes(&self) -> Vec<ProfileChange> {
        self.changes.iter().map(|a| a.change.clone()).collect()
    }

    fn find(&self, id: &str, source: &str) -> Option<&Applied> {
        self.changes
            .iter()
            .find(|a| a.change.id == id && a.change.source == source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn published_at_once_routed_after_the_delay() {
        let mut w = World::default();
        w.apply(ProfileChange {
            id: "eu.m".into(),
            source: "eu-west-1".into(),
            destinations: BTreeSet::from(["eu-west-1".into(), "us-east-1".into()]),
            effective_after_ms: 2_000,
        });
        assert_eq!(w.published("eu.m", "eu-west-1").map(BTreeSet::len), Some(2));
        assert!(w.routed("eu.m", "eu-west-1").is_none());
        assert!(w.published("eu.m", "eu-west-3").is_none());
        tokio::time::advance(Duration::from_millis(2_000)).await;
        assert!(w.routed("eu.m", "eu-west-1").is_some());
    }
}
