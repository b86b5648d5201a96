//! The catalog's data files: compiled in, optionally overridden by a user file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::CatalogError;
use crate::model::Model;
use crate::region::Region;
use crate::route::Route;

const REGIONS: &str = include_str!("../../../catalog/regions.toml");
const PROFILES: &str = include_str!("../../../catalog/profiles.toml");
const MODELS: &str = include_str!("../../../catalog/models.toml");

/// Provenance of one data file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Schema version of the file.
    pub schema: u32,
    /// Date the data was last checked against its sources.
    pub checked: String,
    /// Where the data comes from.
    pub sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    id: String,
    prefix: String,
    confirmed: bool,
    #[serde(default)]
    note: String,
    #[serde(default)]
    all_commercial: bool,
    #[serde(default)]
    map: BTreeMap<String, BTreeSet<String>>,
}

/// One catalog file. A user override file has the same shape, every section optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    meta: Option<Meta>,
    #[serde(default)]
    region: Vec<Region>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    model: Vec<Model>,
}

fn parse(file: &str, text: &str) -> Result<RawFile, CatalogError> {
    toml::from_str(text).map_err(|e| CatalogError::Parse {
        file: file.to_string(),
        message: toml_message(text, &e),
    })
}

/// `line N, key: message` for a TOML error, so users can find the spot.
pub(crate) fn toml_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// A model from refresh facts alone: `None` when Bedrock offers it no way
/// to be called (no profile read, no on-demand region). Its profiles become
/// routes `discovered:<profile ID>`.
fn discovered_model(
    routes: &mut BTreeMap<String, Route>,
    found: &crate::facts::Discovered,
    id: &str,
    listed: &crate::facts::Listed,
) -> Option<Model> {
    let mut route_ids = Vec::new();
    for (profile, by_source) in &found.profiles {
        let Some(prefix) = profile
            .strip_suffix(id)
            .and_then(|p| p.strip_suffix('.'))
            .filter(|p| !p.is_empty() && !p.contains('.'))
        else {
            continue;
        };
        let rid = format!("discovered:{profile}");
        routes.insert(
            rid.clone(),
            Route {
                id: rid.clone(),
                prefix: prefix.to_string(),
                confirmed: true,
                note: "read from ListInferenceProfiles".into(),
                map: by_source.clone(),
            },
        );
        route_ids.push(rid);
    }
    let on_demand: Vec<String> = found
        .on_demand
        .iter()
        .filter(|(_, ids)| ids.contains(id))
        .map(|(r, _)| r.clone())
        .collect();
    if route_ids.is_empty() && on_demand.is_empty() {
        return None;
    }
    let mut m = Model {
        alias: id.to_string(),
        id: id.to_string(),
        name: listed.name.clone(),
        provider: listed.provider.clone(),
        input: listed.input.iter().cloned().collect(),
        output: listed.output.iter().cloned().collect(),
        streaming: listed.streaming,
        tools: false,
        context_window: 0,
        max_output_tokens: 0,
        routes: route_ids,
        on_demand,
        confirmed: true,
        lifecycle: Default::default(),
        end_of_life: None,
        price: Default::default(),
        service_tiers: Vec::new(),
        reasoning: false,
        structured_output: false,
        arn_versioned: false,
        source: "discovered: Bedrock's ListFoundationModels and ListInferenceProfiles (not in the compiled catalog; limits and price unknown)".into(),
        checked: String::new(),
    };
    if let Some(name) = m.provider_name() {
        m.alias = name.to_string();
    }
    Some(m)
}

/// Everything Meridian knows about regions, models and inference profiles.
#[derive(Debug, Clone)]
pub struct Catalog {
    regions: Vec<Region>,
    routes: BTreeMap<String, Route>,
    models: Vec<Model>,
    /// Provenance of the compiled-in files, by file name.
    pub meta: BTreeMap<String, Meta>,
    /// The user override file, when one was applied.
    pub override_file: Option<String>,
    /// Facts read from Bedrock's control plane, applied on top of the
    /// compiled data (see `discovered`).
    discovered: Option<std::sync::Arc<crate::facts::Discovered>>,
}

impl Catalog {
    /// The compiled-in catalog.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::build(Vec::new(), None)
    }

    /// The compiled-in catalog with a user file's entries replacing or adding
    /// regions (by code), routes (by id) and models (by alias).
    pub fn with_override(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        let raw = parse(&name, &text)?;
        Self::build(vec![raw], Some(name))
    }

    fn build(
        overrides: Vec<RawFile>,
        override_file: Option<String>,
    ) -> Result<Catalog, CatalogError> {
        let mut meta = BTreeMap::new();
        let mut regions: Vec<Region> = Vec::new();
        let mut raw_routes: Vec<RawRoute> = Vec::new();
        let mut models: Vec<Model> = Vec::new();
        let builtin = [
            ("catalog/regions.toml", REGIONS),
            ("catalog/profiles.toml", PROFILES),
            ("catalog/models.toml", MODELS),
        ];
        let mut files = Vec::new();
        for (name, text) in builtin {
            let raw = parse(name, text)?;
            if let Some(m) = &raw.meta {
                meta.insert(name.to_string(), m.clone());
            }
            files.push(raw);
        }
        files.extend(overrides);
        for raw in files {
            for r in raw.region {
                upsert(&mut regions, r, |a, b| a.code == b.code);
            }
            for r in raw.route {
                upsert(&mut raw_routes, r, |a, b| a.id == b.id);
            }
            for m in raw.model {
                upsert(&mut models, m, |a, b| a.alias == b.alias);
            }
        }
        let file = override_file
            .clone()
            .unwrap_or_else(|| "built-in catalog".into());
        let routes = expand_routes(&regions, raw_routes);
        let catalog = Catalog {
            regions,
            routes,
            models,
            meta,
            override_file,
            discovered: None,
        };
        catalog
            .validate()
            .map_err(|what| CatalogError::Invalid { file, what })?;
        Ok(catalog)
    }

    /// Every region, in catalog order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// A region by code.
    pub fn region(&self, code: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.code == code)
    }

    /// Every model, in catalog order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// A model by alias, or by the name its provider's own API uses
    /// (Anthropic's `claude-sonnet-4-5-20250929`, as the `anthropic` SDKs
    /// and Claude Code send it).
    pub fn model(&self, alias: &str) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.alias == alias)
            .or_else(|| self.models.iter().find(|m| m.has_provider_name(alias)))
    }

    /// This catalog with `found` applied on top of its compiled data
    /// (replacing facts applied before).
    ///
    /// A model Bedrock lists that the compiled data lacks becomes a model
    /// of this catalog, servable at once: its profiles and on-demand regions
    /// are the ones read, its alias is its provider's name for it where
    /// Meridian knows the rule (`anthropic.claude-opus-6` → `claude-opus-6`)
    /// and its base ID otherwise, and its price is unknown (never zero).
    pub fn with_discovered(&self, found: std::sync::Arc<crate::facts::Discovered>) -> Catalog {
        let mut c = Catalog {
            discovered: Some(found.clone()),
            ..self.clone()
        };
        for (id, listed) in &found.models {
            if c.model_by_id(id).is_some() {
                continue;
            }
            if let Some(mut m) = discovered_model(&mut c.routes, &found, id, listed) {
                if c.model(&m.alias).is_some() {
                    // Its provider's name is taken: known by its ID only.
                    m.alias = m.id.clone();
                }
                c.models.push(m);
            }
        }
        c
    }

    /// The facts applied on top of the compiled data, if a refresh read any.
    pub fn discovered(&self) -> Option<&std::sync::Arc<crate::facts::Discovered>> {
        self.discovered.as_ref()
    }

    /// A model by base model ID.
    pub fn model_by_id(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// A route by ID.
    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes.get(id)
    }

    /// Every route, by ID.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// Every geography and zone name, sorted.
    pub fn groups(&self) -> BTreeSet<&str> {
        self.regions
            .iter()
            .flat_map(|r| {
                std::iter::once(r.geography.as_str()).chain(r.zones.iter().map(String::as_str))
            })
            .collect()
    }

    /// Commercial regions that serve Bedrock.
    pub fn commercial_bedrock_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions
            .iter()
            .filter(|r| r.bedrock && r.partition == crate::COMMERCIAL_PARTITION)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for r in &self.regions {
            if !seen.insert(&r.code) {
                return Err(format!("region {} is listed twice", r.code));
            }
            if self.groups().contains(r.code.as_str()) {
                return Err(format!(
                    "region code {} is also a geography or zone name",
                    r.code
                ));
            }
        }
        for route in self.routes.values() {
            for (src, dests) in &route.map {
                for code in std::iter::once(src).chain(dests) {
                    if self.region(code).is_none() {
                        return Err(format!("route {}: unknown region {code}", route.id));
                    }
                }
                if dests.is_empty() {
                    return Err(format!(
                        "route {}: source {src} has no destinations",
                        route.id
                    ));
                }
            }
        }
        for m in &self.models {
            for id in &m.routes {
                let Some(route) = self.routes.get(id) else {
                    return Err(format!("model {}: unknown route {id}", m.alias));
                };
                if m.price.for_prefix(&route.prefix).is_none() {
                    return Err(format!(
                        "model {}: no price for {} profiles (set price.geo, price.global or price.by_prefix)",
                        m.alias, route.prefix
                    ));
                }
            }
            for code in &m.on_demand {
                if self.region(code).is_none() {
                    return Err(format!(
                        "model {}: unknown on_demand region {code}",
                        m.alias
                    ));
                }
            }
            if !m.on_demand.is_empty() && m.price.on_demand.is_none() {
                return Err(format!(
                    "model {}: on_demand regions listed but no price.on_demand",
                    m.alias
                ));
            }
        }
        Ok(())
    }
}

fn upsert<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T, &T) -> bool) {
    match list.iter_mut().find(|x| same(x, &item)) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
}

fn expand_routes(regions: &[Region], raw: Vec<RawRoute>) -> BTreeMap<String, Route> {
    let commercial: BTreeSet<String> = regions
        .iter()
        .filter(|r| r.bedrock && r.partition == crate::COMMERCIAL_PARTITION)
        .map(|r| r.code.clone())
        .collect();
    raw.into_iter()
        .map(|r| {
            let map = if r.all_commercial {
                commercial
                    .iter()
                    .map(|c| (c.clone(), commercial.clone()))
                    .collect()
            } else {
                r.map
            };
            let route = Route {
                id: r.id.clone(),
                prefix: r.prefix,
                confirmed: r.confirmed,
                note: r.note,
                map,
            };
            (r.id, route)
        })
        .collect()
}
