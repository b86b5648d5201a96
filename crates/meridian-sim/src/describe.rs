//! The control-plane view of one region: its system profiles (and the
//! application profiles declared for it) and the models offered there.

use meridian_catalog::arn::{foundation_model_arn, inference_profile_arn};
use meridian_catalog::{Catalog, Model};
use meridian_wire::control::{app_profile_summary, catalog_model_summary, profile_summary};
use serde_json::Value;

use crate::region::{ACCOUNT, Ctx};

impl Ctx {
    pub(crate) fn profiles(&self) -> Vec<Value> {
        let catalog = &self.shared.catalog;
        let here = self.region.to_string();
        let world = self.shared.world.read();
        let mut out = Vec::new();
        let mut listed = std::collections::BTreeSet::new();
        for m in catalog.models() {
            for route in m.routes.iter().filter_map(|id| catalog.route(id)) {
                if let Some(dests) = route.destinations(&here) {
                    let id = format!("{}.{}", route.prefix, m.id);
                    // The control plane publishes a world change at once.
                    let dests = world.published(&id, &here).unwrap_or(dests);
                    listed.insert(id.clone());
                    let arns: Vec<String> = dests
                        .iter()
                        .map(|d| foundation_model_arn(d, &m.id))
                        .collect();
                    let name = format!("{} {}", route.prefix.to_ascii_uppercase(), m.name);
                    out.push(profile_summary(
                        &id,
                        &inference_profile_arn(&here, ACCOUNT, &id),
                        &name,
                        "SYSTEM_DEFINED",
                        &arns,
                        &route.note,
                    ));
                }
            }
        }
        for change in world.in_source(&here) {
            // Application profiles (ARNs) change below, with the config's.
            if listed.contains(&change.id) || change.id.starts_with("arn:") {
                continue;
            }
            let base = change.id.split_once('.').map_or("", |(_, b)| b);
            let arns: Vec<String> = change
                .destinations
                .iter()
                .map(|d| foundation_model_arn(d, base))
                .collect();
            out.push(profile_summary(
                &change.id,
                &inference_profile_arn(&here, ACCOUNT, &change.id),
                &change.id,
                "SYSTEM_DEFINED",
                &arns,
                "added to the simulated world at run time",
            ));
        }
        for p in self
            .shared
            .config
            .read()
            .app_profiles
            .iter()
            .filter(|p| p.region == here)
        {
            match world.published(&p.arn, &here) {
                Some(d) => {
                    let changed = meridian_catalog::AppProfile {
                        destinations: d.clone(),
                        ..p.clone()
                    };
                    out.push(app_profile_summary(
                        &changed,
                        "application inference profile",
                    ));
                }
                None => out.push(app_profile_summary(p, "application inference profile")),
            }
        }
        out
    }

    pub(crate) fn models(&self) -> Vec<Value> {
        let here = self.region.to_string();
        let catalog = &self.shared.catalog;
        let mut out: Vec<Value> = catalog
            .models()
            .iter()
            .filter(|m| offered_here(catalog, m, &here))
            .map(|m| catalog_model_summary(m, &here))
            .collect();
        let world = self.shared.world.read();
        for m in world.models().iter().filter(|m| m.regions.contains(&here)) {
            let types: &[&str] = if m.on_demand {
                &["ON_DEMAND"]
            } else {
                &["INFERENCE_PROFILE"]
            };
            out.push(meridian_wire::control::model_summary(
                &meridian_catalog::arn::foundation_model_arn(&here, &m.id),
                &m.id,
                &m.name,
                &m.provider,
                &["text".to_string()],
                &["text".to_string()],
                true,
                types,
                false,
            ));
        }
        out
    }
}

fn offered_here(catalog: &Catalog, m: &Model, here: &str) -> bool {
    m.on_demand.iter().any(|r| r == here)
        || m.routes
            .iter()
            .filter_map(|id| catalog.route(id))
            .any(|r| r.destinations(here).is_some())
}
