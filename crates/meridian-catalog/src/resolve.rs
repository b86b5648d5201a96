//! Resolution: a model reference, a source region and a residency policy in;
//! ordered, policy-checked targets out.
//!
//! Each way a model is offered (a profile family, or on-demand base IDs) gives
//! a target called from the source region when it can be and the policy
//! allows it, else from the nearest region that can and is allowed; plus up
//! to [`FAILOVER_ENDPOINTS`] more allowed regions it can be called from,
//! nearest first, for when an endpoint is down.
//! Targets called from the source region come first — geography profiles
//! (tightest destination set first), then the in-region base ID, then
//! `global.` — and then targets called from other regions, nearest first.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::arn::{Arn, ModelRef};
use crate::data::Catalog;
use crate::model::{Model, Price};
use crate::region::Region;
use crate::residency::Policy;
use crate::route::Route;

/// An application inference profile, declared in config: its ARN says where
/// it is called, and only its owner knows where it processes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppProfile {
    /// The profile ARN.
    pub arn: String,
    /// Region in the ARN, where the profile is called.
    pub region: String,
    /// Base model ID the profile copies.
    pub model_id: String,
    /// Regions where Bedrock may process requests sent to it.
    pub destinations: BTreeSet<String>,
}

/// What kind of thing a target sends as its model ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A geography inference profile (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `us-gov.`).
    GeoProfile,
    /// The `global.` inference profile.
    GlobalProfile,
    /// A base model ID with on-demand throughput, processed in the called region.
    OnDemand,
    /// An application inference profile from config.
    AppProfile,
    /// A provisioned-model ARN: dedicated capacity bought in one region,
    /// processed there (no cross-region routing).
    Provisioned,
    /// An ARN or ID passed through as given, processed in the called region.
    PassThrough,
    /// A model on an OpenAI-compatible server (`[[providers]]`), processed
    /// in the region the config declares for it.
    Provider,
    /// A base model ID on Mantle (`bedrock-mantle.{region}`), processed in
    /// the region called.
    Mantle,
}

impl TargetKind {
    fn rank(self) -> u8 {
        match self {
            TargetKind::Provisioned | TargetKind::AppProfile | TargetKind::GeoProfile => 0,
            TargetKind::OnDemand
            | TargetKind::PassThrough
            | TargetKind::Provider
            | TargetKind::Mantle => 1,
            TargetKind::GlobalProfile => 2,
        }
    }
}

/// One concrete way to serve a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Region whose Bedrock endpoint is called.
    pub endpoint_region: String,
    /// Model ID (or ARN) sent in the request path.
    pub model_id: String,
    /// What `model_id` is.
    pub kind: TargetKind,
    /// Profile prefix, for profile targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Base foundation-model ID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model_id: Option<String>,
    /// Every region where Bedrock may process the request.
    pub destinations: BTreeSet<String>,
    /// Price per million tokens, when the catalog knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// False when the destination set is not confirmed by an AWS source.
    pub confirmed: bool,
    /// Distance from the source region to the called region, in km.
    pub distance_km: u32,
    /// Tokens per minute this gateway may send (provisioned targets: the
    /// purchased capacity, or this replica's share of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_tpm: Option<u64>,
}

impl Target {
    /// Regions that see the request: the called region and every destination.
    pub fn regions_touched(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.endpoint_region).chain(self.destinations.iter())
    }

    /// The same target without its destination set (for what must outlive
    /// the routing decision without copying every destination: a running
    /// stream's record of where it was served).
    pub fn without_destinations(&self) -> Target {
        Target {
            endpoint_region: self.endpoint_region.clone(),
            model_id: self.model_id.clone(),
            kind: self.kind,
            prefix: self.prefix.clone(),
            base_model_id: self.base_model_id.clone(),
            destinations: BTreeSet::new(),
            price: self.price,
            confirmed: self.confirmed,
            distance_km: self.distance_km,
            capacity_tpm: self.capacity_tpm,
        }
    }

    /// Whether the target is called in the source region.
    pub fn is_local(&self) -> bool {
        self.distance_km == 0
    }

    fn sort_key(&self) -> (bool, u32, u8, usize, String) {
        let remote = !self.is_local();
        (
            remote,
            self.distance_km,
            self.kind.rank(),
            self.destinations.len(),
            self.model_id.clone(),
        )
    }
}

/// A target the policy turned down, with the regions that made it fail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The target.
    pub target: Target,
    /// Regions of the target outside the policy.
    pub outside: Vec<String>,
}

/// The ordered targets for one model reference.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// What the caller asked for.
    pub requested: String,
    /// The catalog model, when the reference names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Region Meridian runs in.
    pub source_region: String,
    /// The policy applied.
    pub policy: Policy,
    /// Allowed targets, best first.
    pub targets: Vec<Target>,
    /// Targets the policy rejected.
    pub rejected: Vec<Rejected>,
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown region '{region}'; valid regions: {}", valid.join(", "))]
    UnknownRegion { region: String, valid: Vec<String> },
    #[error("unknown model '{given}'{}", suggest(suggestions))]
    UnknownModel {
        given: String,
        suggestions: Vec<String>,
    },
    #[error(
        "application inference profile {arn} is not declared in the config; add an [[application_profiles]] entry with its model and destination regions so residency can be checked"
    )]
    UnknownAppProfile { arn: String },
    #[error("{requested}: {reason}")]
    NotOffered { requested: String, reason: String },
    #[error("{}", no_target_message(requested, source_region, policy, rejected))]
    NoTarget {
        requested: String,
        source_region: String,
        policy: String,
        rejected: Vec<Rejected>,
    },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

fn no_target_message(requested: &str, source: &str, policy: &str, rejected: &[Rejected]) -> String {
    let mut msg =
        format!("no target for {requested} from {source} is allowed by residency policy {policy}");
    if rejected.is_empty() {
        msg.push_str("; the catalog offers this model nowhere reachable");
    } else {
        msg.push_str("; rejected:");
        for r in rejected {
            let dests: Vec<String> = r.target.destinations.iter().cloned().collect();
            msg.push_str(&format!(
                "\n  {} via {} processes in [{}]; outside the policy: {}",
                r.target.model_id,
                r.target.endpoint_region,
                short_list(&dests),
                short_list(&r.outside)
            ));
        }
    }
    msg
}

/// Up to six items, then a count, so errors stay readable.
pub fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 6;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!("{}, … ({} regions)", items[..SHOWN].join(", "), items.len())
    }
}

/// Allowed endpoints kept per offering beyond the first, nearest first, so
/// an outage of one region's endpoint leaves somewhere else to call.
pub const FAILOVER_ENDPOINTS: usize = 8;

/// Resolves model references against a catalog and declared application profiles.
#[derive(Debug, Clone, Copy)]
pub struct Resolver<'a> {
    catalog: &'a Catalog,
    app_profiles: &'a [AppProfile],
}

/// One way a model is offered, before a called region is chosen.
struct Offering {
    kind: TargetKind,
    /// The route, with discovered facts applied.
    route: Option<Route>,
    /// Regions it can be called from.
    callable: Vec<String>,
    confirmed: bool,
}

impl<'a> Resolver<'a> {
    /// A resolver over `catalog` that also knows `app_profiles`.
    pub fn new(catalog: &'a Catalog, app_profiles: &'a [AppProfile]) -> Self {
        Resolver {
            catalog,
            app_profiles,
        }
    }

    /// Resolves `requested` (alias, base model ID, profile ID or ARN) for a
    /// gateway running in `source`, under `policy`.
    pub fn resolve(
        &self,
        requested: &str,
        source: &str,
        policy: &Policy,
    ) -> Result<Resolution, ResolveError> {
        let src = self.region(source)?;
        let mut alias = None;
        let (targets, rejected) = match ModelRef::parse(requested) {
            ModelRef::Arn(arn) => self.arn_target(&arn, src, policy)?,
            ModelRef::SystemProfile { prefix, base } => {
                let model = self.catalog.model_by_id(base);
                alias = model.map(|m| m.alias.clone());
                let (targets, rejected) =
                    self.profile_targets(requested, prefix, base, model, src, policy)?;
                match model {
                    // The profile named processes outside the policy only: the
                    // same model on its targets inside it (Claude Code's Bedrock
                    // mode names its region's geography; the policy decides).
                    Some(m) if targets.is_empty() => {
                        let (inside, more) = self.model_targets(m, src, policy);
                        (inside, rejected.into_iter().chain(more).collect())
                    }
                    _ => (targets, rejected),
                }
            }
            ModelRef::Name(name) => {
                if let Some(model) = self.catalog.model(name).or_else(|| self.profile_only(name)) {
                    alias = Some(model.alias.clone());
                    self.model_targets(model, src, policy)
                } else if name.contains('.') {
                    // A raw base model ID passes through, called and processed in-region.
                    let model = self.catalog.model_by_id(name);
                    alias = model.map(|m| m.alias.clone());
                    let t = Target {
                        endpoint_region: src.code.clone(),
                        model_id: name.to_string(),
                        kind: TargetKind::OnDemand,
                        prefix: None,
                        base_model_id: Some(name.to_string()),
                        destinations: BTreeSet::from([src.code.clone()]),
                        price: model.and_then(|m| m.price.in_region()),
                        confirmed: model.is_some_and(|m| m.on_demand.contains(&src.code)),
                        distance_km: 0,
                        capacity_tpm: None,
                    };
                    check_one(t, policy)
                } else {
                    return Err(ResolveError::UnknownModel {
                        given: name.to_string(),
                        suggestions: closest(
                            name,
                            self.catalog.models().iter().map(|m| m.alias.as_str()),
                        ),
                    });
                }
            }
        };
        if targets.is_empty() {
            return Err(ResolveError::NoTarget {
                requested: requested.to_string(),
                source_region: src.code.clone(),
                policy: policy.to_string(),
                rejected,
            });
        }
        Ok(Resolution {
            requested: requested.to_string(),
            alias,
            source_region: src.code.clone(),
            policy: policy.clone(),
            targets,
            rejected,
        })
    }

    /// The model whose base ID is `id` when Bedrock serves it only through
    /// inference profiles (`anthropic.claude-opus-5-5`, as Mantle clients and
    /// Claude Code in Mantle mode name it): no region takes the base ID on
    /// demand, so the ID names the model, served by its profiles inside the
    /// residency policy like its alias.
    fn profile_only(&self, id: &str) -> Option<&'a Model> {
        self.catalog
            .model_by_id(id)
            .filter(|m| m.on_demand.is_empty() && !m.routes.is_empty())
    }

    /// The catalog model a reference names (alias, base ID, system profile
    /// ID or ARN, declared application profile ARN), when it names one.
    pub fn model_of(&self, reference: &str) -> Option<&'a Model> {
        match ModelRef::parse(reference) {
            ModelRef::Name(n) => self
                .catalog
                .model(n)
                .or_else(|| self.catalog.model_by_id(n)),
            ModelRef::SystemProfile { base, .. } => self.catalog.model_by_id(base),
            ModelRef::Arn(arn) => match arn.resource_type {
                "application-inference-profile" => self
                    .app_profiles
                    .iter()
                    .find(|p| p.arn == arn.raw)
                    .and_then(|p| self.catalog.model_by_id(&p.model_id)),
                "foundation-model" => self.catalog.model_by_id(arn.resource_id),
                "inference-profile" => match ModelRef::parse(arn.resource_id) {
                    ModelRef::SystemProfile { base, .. } => self.catalog.model_by_id(base),
                    _ => None,
                },
                _ => None,
            },
        }
    }

    fn region(&self, code: &str) -> Result<&'a Region, ResolveError> {
        self.catalog
            .region(code)
            .ok_or_else(|| ResolveError::UnknownRegion {
                region: code.to_string(),
                valid: self
                    .catalog
                    .regions()
                    .iter()
                    .map(|r| r.code.clone())
                    .collect(),
            })
    }

    fn model_targets(
        &self,
        model: &'a Model,
        src: &Region,
        policy: &Policy,
    ) -> (Vec<Target>, Vec<Rejected>) {
        let routes: Vec<&Route> = model
            .routes
            .iter()
            .filter_map(|id| self.catalog.route(id))
            .collect();
        let mut offerings: Vec<Offering> = routes
            .iter()
            .map(|route| {
                let profile = format!("{}.{}", route.prefix, model.id);
                let confirmed = route.confirmed && model.confirmed;
                let route = self
                    .discovered(route, &profile)
                    .unwrap_or_else(|| (*route).clone());
                Offering {
                    kind: kind_of(&route.prefix),
                    callable: route.map.keys().cloned().collect(),
                    confirmed,
                    route: Some(route),
                }
            })
            .collect();
        // Profiles of this model that a refresh found under a prefix the
        // catalog does not list for it.
        if let Some(found) = self.catalog.discovered() {
            for profile in found.profiles.keys() {
                let ModelRef::SystemProfile { prefix, base } = ModelRef::parse(profile) else {
                    continue;
                };
                if base != model.id || routes.iter().any(|r| r.prefix == prefix) {
                    continue;
                }
                if let Some(route) = found.route(profile, prefix) {
                    offerings.push(Offering {
                        kind: kind_of(prefix),
                        callable: route.map.keys().cloned().collect(),
                        confirmed: true,
                        route: Some(route),
                    });
                }
            }
        }
        // In-region base model IDs: the catalog's regions and those where a
        // refresh found the model on demand (in-region never widens residency).
        let mut on_demand = model.on_demand.clone();
        if let Some(found) = self.catalog.discovered() {
            for region in found.on_demand.keys() {
                if found.on_demand_in(&model.id, region) && !on_demand.contains(region) {
                    on_demand.push(region.clone());
                }
            }
        }
        if !on_demand.is_empty() {
            offerings.push(Offering {
                kind: TargetKind::OnDemand,
                route: None,
                callable: on_demand,
                confirmed: model.confirmed,
            });
        }
        self.place_all(&offerings, &model.id, Some(model), src, policy)
    }

    fn profile_targets(
        &self,
        requested: &str,
        prefix: &str,
        base: &str,
        model: Option<&'a Model>,
        src: &Region,
        policy: &Policy,
    ) -> Result<(Vec<Target>, Vec<Rejected>), ResolveError> {
        let model_routes: Vec<&Route> = model
            .map(|m| {
                m.routes
                    .iter()
                    .filter_map(|id| self.catalog.route(id))
                    .filter(|r| r.prefix == prefix)
                    .collect()
            })
            .unwrap_or_default();
        // A model or prefix the catalog does not pair: assume the widest set any
        // family with this prefix has, so residency errs on the safe side.
        let (routes, known) = if model_routes.is_empty() {
            (
                self.catalog
                    .routes()
                    .filter(|r| r.prefix == prefix)
                    .collect::<Vec<_>>(),
                false,
            )
        } else {
            (model_routes, true)
        };
        let found = self
            .catalog
            .discovered()
            .and_then(|d| d.route(requested, prefix));
        // A model the catalog pairs with this prefix: its sets widened by the
        // refresh. Otherwise the catalog only guesses (the widest set of the
        // prefix), and Bedrock's own list, when there is one, replaces the guess.
        let (merged, confirmed) = match (routes.is_empty() || !known, found) {
            (true, None) if routes.is_empty() => {
                return Err(ResolveError::NotOffered {
                    requested: requested.to_string(),
                    reason: format!(
                        "the catalog knows no inference profiles with prefix '{prefix}.'"
                    ),
                });
            }
            (true, Some(found)) => (found, true),
            (_, found) => {
                let merged = merge_routes(&routes);
                let confirmed = found.is_some() || (known && merged.confirmed);
                let merged = self.discovered(&merged, requested).unwrap_or(merged);
                (merged, confirmed)
            }
        };
        let offering = Offering {
            kind: kind_of(prefix),
            callable: merged.map.keys().cloned().collect(),
            confirmed,
            route: Some(merged),
        };
        let (mut targets, mut rejected) = self.place_all(&[offering], base, model, src, policy);
        for t in targets
            .iter_mut()
            .chain(rejected.iter_mut().map(|r| &mut r.target))
        {
            t.model_id = requested.to_string();
        }
        Ok((targets, rejected))
    }

    fn arn_target(
        &self,
        arn: &Arn<'_>,
        src: &Region,
        policy: &Policy,
    ) -> Result<(Vec<Target>, Vec<Rejected>), ResolveError> {
        let region = if arn.region.is_empty() {
            src
        } else {
            self.region(arn.region)?
        };
        let at = |kind, base: Option<&str>, destinations: BTreeSet<String>, confirmed| Target {
            endpoint_region: region.code.clone(),
            model_id: arn.raw.to_string(),
            kind,
            prefix: None,
            base_model_id: base.map(str::to_string),
            destinations,
            price: base
                .and_then(|b| self.catalog.model_by_id(b))
                .and_then(|m| m.price.in_region().or(m.price.for_prefix("geo"))),
            confirmed,
            distance_km: distance(src, region),
            capacity_tpm: None,
        };
        let in_region = BTreeSet::from([region.code.clone()]);
        let target = match arn.resource_type {
            "application-inference-profile" => {
                let p = self
                    .app_profiles
                    .iter()
                    .find(|p| p.arn == arn.raw)
                    .ok_or_else(|| ResolveError::UnknownAppProfile {
                        arn: arn.raw.to_string(),
                    })?;
                // Bedrock's own answer widens what the config declares.
                let mut dests = p.destinations.clone();
                if let Some(Some(found)) = self
                    .catalog
                    .discovered()
                    .and_then(|d| d.app_profiles.get(&p.arn))
                {
                    dests.extend(found.iter().cloned());
                }
                at(TargetKind::AppProfile, Some(&p.model_id), dests, true)
            }
            "inference-profile" => {
                let ModelRef::SystemProfile { prefix, base } = ModelRef::parse(arn.resource_id)
                else {
                    return Err(ResolveError::NotOffered {
                        requested: arn.raw.to_string(),
                        reason: "the inference profile ID has no known prefix".into(),
                    });
                };
                let model = self.catalog.model_by_id(base);
                let routes: Vec<&Route> = self
                    .catalog
                    .routes()
                    .filter(|r| r.prefix == prefix)
                    .collect();
                let mine: Vec<&Route> = routes
                    .iter()
                    .copied()
                    .filter(|r| model.is_none_or(|m| m.routes.contains(&r.id)))
                    .collect();
                let merged = merge_routes(if mine.is_empty() { &routes } else { &mine });
                let merged = self.discovered(&merged, arn.resource_id).unwrap_or(merged);
                let Some(dests) = merged.destinations(&region.code) else {
                    return Err(ResolveError::NotOffered {
                        requested: arn.raw.to_string(),
                        reason: format!(
                            "'{prefix}.' profiles cannot be called from {}",
                            region.code
                        ),
                    });
                };
                let mut t = at(
                    TargetKind::GeoProfile,
                    Some(base),
                    dests.clone(),
                    merged.confirmed && !mine.is_empty(),
                );
                t.prefix = Some(prefix.to_string());
                if prefix == "global" {
                    t.kind = TargetKind::GlobalProfile;
                }
                t.price = model.and_then(|m| m.price.for_prefix(prefix));
                t
            }
            "foundation-model" => at(TargetKind::OnDemand, Some(arn.resource_id), in_region, true),
            "provisioned-model" => at(TargetKind::Provisioned, None, in_region, true),
            _ => at(TargetKind::PassThrough, None, in_region, true),
        };
        Ok(check_one(target, policy))
    }

    /// `route` as profile `profile` has it with the catalog's discovered
    /// facts applied; `None` when a refresh found nothing for it.
    fn discovered(&self, route: &Route, profile: &str) -> Option<Route> {
        self.catalog.discovered()?.overlay(route, profile)
    }

    /// Chooses a called region for each offering and orders the results.
    fn place_all(
        &self,
        offerings: &[Offering],
        base: &str,
        model: Option<&Model>,
        src: &Region,
        policy: &Policy,
    ) -> (Vec<Target>, Vec<Rejected>) {
        let mut targets = Vec::new();
        let mut rejected = Vec::new();
        for o in offerings {
            // The source region first, then the rest of its partition, nearest first.
            let mut endpoints: Vec<(&Region, u32)> = o
                .callable
                .iter()
                .filter_map(|c| self.catalog.region(c))
                .filter(|r| r.partition == src.partition)
                .map(|r| (r, distance(src, r)))
                .collect();
            endpoints.sort_by_key(|(r, d)| (r.code != src.code, *d));
            let mut first_rejected = None;
            let mut placed = 0;
            for (region, d) in endpoints {
                let t = self.make_target(o, base, model, region, d);
                let outside = policy.outside(t.regions_touched());
                if outside.is_empty() {
                    targets.push(t);
                    placed += 1;
                    if placed > FAILOVER_ENDPOINTS {
                        break;
                    }
                } else if placed == 0 {
                    first_rejected.get_or_insert(Rejected { target: t, outside });
                }
            }
            if placed == 0 {
                rejected.extend(first_rejected);
            }
        }
        targets.sort_by_key(Target::sort_key);
        rejected.sort_by_key(|r| r.target.sort_key());
        (targets, rejected)
    }

    fn make_target(
        &self,
        o: &Offering,
        base: &str,
        model: Option<&Model>,
        region: &Region,
        d: u32,
    ) -> Target {
        let (model_id, prefix, destinations, price) = match &o.route {
            Some(route) => (
                format!("{}.{base}", route.prefix),
                Some(route.prefix.clone()),
                route
                    .destinations(&region.code)
                    .cloned()
                    .unwrap_or_default(),
                model.and_then(|m| m.price.for_prefix(&route.prefix)),
            ),
            None => (
                base.to_string(),
                None,
                BTreeSet::from([region.code.clone()]),
                model.and_then(|m| m.price.in_region()),
            ),
        };
        // Bedrock's own list for this profile (or model) and region confirms it.
        let confirmed = o.confirmed
            || self.catalog.discovered().is_some_and(|f| {
                f.destinations(&model_id, &region.code).is_some()
                    || (o.route.is_none() && f.on_demand_in(&model_id, &region.code))
            });
        Target {
            endpoint_region: region.code.clone(),
            model_id,
            kind: o.kind,
            prefix,
            base_model_id: Some(base.to_string()),
            destinations,
            price,
            confirmed,
            distance_km: d,
            capacity_tpm: None,
        }
    }
}

fn kind_of(prefix: &str) -> TargetKind {
    if prefix == "global" {
        TargetKind::GlobalProfile
    } else {
        TargetKind::GeoProfile
    }
}

fn check_one(t: Target, policy: &Policy) -> (Vec<Target>, Vec<Rejected>) {
    let outside = policy.outside(t.regions_touched());
    if outside.is_empty() {
        (vec![t], Vec::new())
    } else {
        (Vec::new(), vec![Rejected { target: t, outside }])
    }
}

fn distance(a: &Region, b: &Region) -> u32 {
    if a.code == b.code {
        0
    } else {
        // At least 1 km so a different region never counts as local.
        (a.distance_km(b).round() as u32).max(1)
    }
}

/// One route whose sets are the union of several routes' sets.
fn merge_routes(routes: &[&Route]) -> Route {
    let mut merged = Route {
        id: routes
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        prefix: routes.first().map(|r| r.prefix.clone()).unwrap_or_default(),
        confirmed: routes.iter().all(|r| r.confirmed),
        note: String::new(),
        map: Default::default(),
    };
    for r in routes {
        for (src, dests) in &r.map {
            merged
                .map
                .entry(src.clone())
                .or_default()
                .extend(dests.iter().cloned());
        }
    }
    merged
}

/// Up to three names closest to `given`, closest first.
pub fn closest<'n>(given: &str, names: impl Iterator<Item = &'n str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = names
        .map(|n| (strsim::jaro_winkler(given, n), n))
        .filter(|(s, _)| *s > 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_string())
        .collect()
}
