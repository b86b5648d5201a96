//! Facts read from Bedrock's control plane (`ListInferenceProfiles` per
//! source region) and how they compare with the compiled catalog.
//!
//! Discovered facts **confirm** a compiled destination set, **add** a profile
//! or a source region the catalog does not list, or **contradict** it. They
//! are applied so that residency only ever tightens by itself: a target's
//! destination set becomes the union of the compiled and the discovered set
//! (a set that grew outside a policy takes the target out of that policy; a
//! set that shrank is reported, never trusted to widen anything), and
//! additions become callable.

use std::collections::BTreeSet;

use serde::Serialize;

pub use crate::facts::Discovered;

use crate::arn::ModelRef;
use crate::data::Catalog;
use crate::resolve::AppProfile;

/// How a discovered fact compares with the compiled catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Same destination set.
    Confirmed,
    /// A profile (or a source region of one) the catalog does not list.
    Added,
    /// The discovered set has regions the catalog's does not: those
    /// regions now count as possible processing regions.
    Widened,
    /// The catalog's set has regions the discovered one does not (kept:
    /// residency is never loosened by a refresh).
    Narrowed,
    /// Listed in the catalog for this source region, not listed by Bedrock.
    NotListed,
}

impl Verdict {
    /// Whether the compiled data disagrees with Bedrock.
    pub fn is_contradiction(self) -> bool {
        matches!(
            self,
            Verdict::Widened | Verdict::Narrowed | Verdict::NotListed
        )
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A system-defined inference profile (`ListInferenceProfiles`).
    SystemProfile,
    /// A declared application profile (`GetInferenceProfile`).
    AppProfile,
    /// A base model's on-demand availability (`ListFoundationModels`); the
    /// sets are the region itself when it is offered there.
    OnDemand,
}

/// One profile in one source region, compiled against discovered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What was compared.
    pub kind: Kind,
    /// System profile ID, application profile ARN or base model ID.
    pub profile: String,
    pub source: String,
    pub verdict: Verdict,
    /// The compiled set, when the catalog has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled: Option<BTreeSet<String>>,
    /// The discovered set, when Bedrock listed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered: Option<BTreeSet<String>>,
}

impl Catalog {
    /// The compiled destination set of system profile `profile` called in
    /// `source` (discovered facts not applied).
    pub fn compiled_destinations(&self, profile: &str, source: &str) -> Option<BTreeSet<String>> {
        let ModelRef::SystemProfile { prefix, base } = ModelRef::parse(profile) else {
            return None;
        };
        let model = self.model_by_id(base)?;
        let mut out: Option<BTreeSet<String>> = None;
        for route in model.routes.iter().filter_map(|id| self.route(id)) {
            if route.prefix == prefix
                && let Some(d) = route.destinations(source)
            {
                out.get_or_insert_default().extend(d.iter().cloned());
            }
        }
        out
    }

    /// Every system profile the compiled catalog says is callable in `source`.
    pub fn compiled_profiles_in(&self, source: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for m in self.models() {
            for route in m.routes.iter().filter_map(|id| self.route(id)) {
                if route.destinations(source).is_some() {
                    out.insert(format!("{}.{}", route.prefix, m.id));
                }
            }
        }
        out
    }
}

/// Compares `found` with the compiled catalog, region by region read, and
/// with the application profiles the config declares.
pub fn diff(catalog: &Catalog, declared: &[AppProfile], found: &Discovered) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in declared {
        let Some(read) = found.app_profiles.get(&p.arn) else {
            continue;
        };
        let verdict = match read {
            None => Verdict::NotListed,
            Some(d) if *d == p.destinations => Verdict::Confirmed,
            Some(d) if !d.is_subset(&p.destinations) => Verdict::Widened,
            Some(_) => Verdict::Narrowed,
        };
        out.push(Finding {
            kind: Kind::AppProfile,
            profile: p.arn.clone(),
            source: p.region.clone(),
            verdict,
            compiled: Some(p.destinations.clone()),
            discovered: read.clone(),
        });
    }
    for source in &found.regions {
        let mut seen = BTreeSet::new();
        for (profile, by_source) in &found.profiles {
            let Some(dests) = by_source.get(source) else {
                continue;
            };
            seen.insert(profile.clone());
            let compiled = catalog.compiled_destinations(profile, source);
            let verdict = match &compiled {
                None => Verdict::Added,
                Some(c) if c == dests => Verdict::Confirmed,
                Some(c) if !dests.is_subset(c) => Verdict::Widened,
                Some(_) => Verdict::Narrowed,
            };
            out.push(Finding {
                kind: Kind::SystemProfile,
                profile: profile.clone(),
                source: source.clone(),
                verdict,
                compiled,
                discovered: Some(dests.clone()),
            });
        }
        for profile in catalog.compiled_profiles_in(source) {
            if !seen.contains(&profile) {
                out.push(Finding {
                    kind: Kind::SystemProfile,
                    compiled: catalog.compiled_destinations(&profile, source),
                    profile,
                    source: source.clone(),
                    verdict: Verdict::NotListed,
                    discovered: None,
                });
            }
        }
    }
    for (region, listed) in &found.on_demand {
        let here = || Some(BTreeSet::from([region.clone()]));
        for m in catalog.models() {
            let compiled = m.on_demand.iter().any(|r| r == region);
            let verdict = match (compiled, listed.contains(&m.id)) {
                (true, true) => Verdict::Confirmed,
                (false, true) => Verdict::Added,
                (true, false) => Verdict::NotListed,
                (false, false) => continue,
            };
            out.push(Finding {
                kind: Kind::OnDemand,
                profile: m.id.clone(),
                source: region.clone(),
                verdict,
                compiled: if compiled { here() } else { None },
                discovered: if listed.contains(&m.id) { here() } else { None },
            });
        }
    }
    out.sort_by(|a, b| (a.verdict, &a.profile, &a.source).cmp(&(b.verdict, &b.profile, &b.source)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::tests::summary;

    const SONNET: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

    #[test]
    fn findings_confirm_add_and_contradict() {
        let c = Catalog::builtin().unwrap();
        let eu = format!("eu.{SONNET}");
        let compiled: Vec<String> = c
            .compiled_destinations(&eu, "eu-west-1")
            .unwrap()
            .into_iter()
            .collect();
        let mut wider: Vec<&str> = compiled.iter().map(String::as_str).collect();
        wider.push("us-east-1");
        let mut d = Discovered::default();
        d.add_region(
            "eu-west-1",
            &[
                summary(&eu, &wider),
                summary(
                    "eu.anthropic.claude-opus-4-7-v1",
                    &["eu-west-1", "eu-north-1"],
                ),
            ],
        );
        let f = diff(&c, &[], &d);
        let of = |p: &str| f.iter().find(|x| x.profile == p).map(|x| x.verdict);
        assert_eq!(of(&eu), Some(Verdict::Widened));
        assert_eq!(of("eu.anthropic.claude-opus-4-7-v1"), Some(Verdict::Added));
        assert!(
            f.iter().any(|x| x.verdict == Verdict::NotListed),
            "compiled profiles the list left out are reported"
        );
        let route = c.route("eu-2025").unwrap();
        let merged = d.overlay(route, &eu).unwrap();
        assert!(
            merged
                .destinations("eu-west-1")
                .unwrap()
                .contains("us-east-1")
        );
        assert!(d.overlay(route, "eu.other").is_none());

        let mut same = Discovered::default();
        let exact: Vec<&str> = compiled.iter().map(String::as_str).collect();
        same.add_region("eu-west-1", &[summary(&eu, &exact)]);
        assert_eq!(
            diff(&c, &[], &same)
                .iter()
                .find(|x| x.profile == eu)
                .map(|x| x.verdict),
            Some(Verdict::Confirmed)
        );
    }
}
