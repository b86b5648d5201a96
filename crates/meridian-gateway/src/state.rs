//! What every request handler shares.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use meridian_catalog::detect::Step;
use meridian_catalog::resolve::ResolveError;
use meridian_catalog::{Catalog, Policy, Resolution, ServiceTier, Target, TargetKind};
use meridian_config::Config;
use std::collections::BTreeSet;

use meridian_router::breaker::State as BreakerState;
use meridian_router::budget::BudgetConfig;
use meridian_router::health::Health;
use meridian_router::{Router, Surface};
use meridian_upstream::BedrockClient;
use serde::Serialize;

/// Largest request body accepted by default, as Bedrock's InvokeModel.
pub const MAX_BODY: usize = 25_000_000;

/// Where upstream calls go, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamInfo {
    /// `aws` or `simulated`.
    pub mode: &'static str,
    /// How that was decided, in a few words.
    pub detail: String,
    /// `auto` fell back to the simulated fleet (no credentials resolved):
    /// `/ready` fails, since a gateway meant for Bedrock must not answer
    /// from the simulator unnoticed. `mode = "simulated"` is on purpose.
    pub fallback: bool,
}

/// One exposed model's readiness.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReadiness {
    /// Exposed name.
    pub model: String,
    /// Allowed candidates.
    pub candidates: usize,
    /// Of which healthy.
    pub healthy: usize,
    /// Why it has none, when it did not resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An upstream account: a name, a client with its credentials, and the
/// regions it may be called in (empty: all).
#[derive(Debug)]
pub struct UpstreamAccount {
    /// Name used in logs, metrics and candidate keys.
    pub name: String,
    /// Bedrock client signing with this account's credentials.
    pub client: BedrockClient,
    /// Regions this account may be called in; empty means every region.
    pub regions: BTreeSet<String>,
}

impl meridian_router::plan::Account for UpstreamAccount {
    fn name(&self) -> &str {
        &self.name
    }

    fn serves(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.contains(region)
    }
}

/// What lives as long as the process, across config reloads and catalog
/// refreshes: built once, shared by every [`AppState`] snapshot.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Region Meridian runs in.
    pub region: String,
    /// The step that decided the region.
    pub region_step: Step,
    /// Upstream accounts, in config order (the first is the active one).
    pub accounts: Arc<Vec<UpstreamAccount>>,
    /// Upstream mode for operators.
    pub upstream_info: UpstreamInfo,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Account ID shown in control-plane ARNs.
    pub account_id: String,
    /// Breakers, retry budget and per-candidate statistics.
    pub router: Arc<Router>,
    /// Request metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Invocation-log sinks.
    pub log: Arc<crate::invocation::InvocationLog>,
    /// OTLP trace export, when configured.
    pub tracer: Option<Arc<crate::traces::Tracer>>,
    /// Endpoint reachability from the background prober, by region.
    pub probes: Arc<parking_lot::RwLock<HashMap<String, bool>>>,
    /// Requests handled at once; beyond it, ServiceUnavailableException.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// Tenant limits, budgets, usage and issued keys (memory or Redis).
    pub limiter: Arc<crate::limits::Limiter>,
    /// The response cache (in memory; Redis goes through the limiter's
    /// shared backend). Entries survive a reload: each is checked against
    /// the new plan's policy and candidates when it is served.
    pub cache: Arc<crate::cache::Cache>,
    /// Stored Responses API state (in memory; Redis goes through the
    /// limiter's shared backend).
    pub responses: Arc<crate::responses_store::Responses>,
    /// Batches and their files (in memory; Redis goes through the
    /// limiter's shared backend).
    pub batches: Arc<crate::batch_store::Batches>,
    /// What the dashboard shows.
    pub stats: Arc<crate::traffic::Stats>,
    /// Drills started from the dashboard.
    pub drills: Arc<crate::drills::Drills>,
}

impl Runtime {
    /// The runtime `config` starts with (its restart-only sections apply).
    pub fn new(
        config: &Config,
        region: String,
        region_step: Step,
        accounts: Vec<UpstreamAccount>,
        upstream_info: UpstreamInfo,
    ) -> Runtime {
        let budget = BudgetConfig {
            ratio: config.routing.retry_budget,
            ..BudgetConfig::default()
        };
        let max_concurrent = config.server.max_concurrent_requests;
        Runtime {
            region,
            region_step,
            accounts: Arc::new(accounts),
            upstream_info,
            max_body: MAX_BODY,
            account_id: "000000000000".into(),
            router: Arc::new(Router::new(Health::new(Default::default(), budget))),
            metrics: Arc::default(),
            log: Arc::new(crate::invocation::InvocationLog::disabled()),
            tracer: None,
            probes: Arc::default(),
            admission: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            limiter: Arc::new(crate::limits::Limiter::new(&config.state)),
            cache: Arc::new(crate::cache::Cache::new(config.cache_max_bytes)),
            responses: Arc::new(crate::responses_store::Responses::new(
                config.responses.max_bytes,
            )),
            batches: Arc::default(),
            stats: Arc::default(),
            drills: Arc::default(),
        }
    }
}

/// One config's view of the gateway: the config, the catalog it was
/// validated against and what is derived from them (tenants, guards,
/// resolved plans, provider clients), over the process's [`Runtime`]. A
/// reload or a catalog refresh builds a new one over the same runtime and
/// swaps it in whole; fields of the runtime read through (`state.router`).
#[derive(Debug)]
pub struct AppState {
    /// Validated config.
    pub config: Config,
    /// The catalog the config was validated against.
    pub catalog: Catalog,
    /// Most upstream attempts per request.
    pub max_attempts: usize,
    /// Tenants, indexed for identification.
    pub tenants: crate::tenancy::Tenants,
    /// Exposed names resolved once at start-up: the request path reads this.
    plans: HashMap<String, Result<Resolution, ResolveError>>,
    /// Clients of the `[[providers]]`, by name.
    pub providers: Arc<HashMap<String, meridian_upstream::openai_compat::OpenAiClient>>,
    /// Each exposed model's fallbacks with their targets, resolved at
    /// start-up under the model's policy as well as their own.
    fallbacks: HashMap<String, Fallbacks>,
    /// The `[guards]`, compiled.
    pub guards: Arc<crate::guard::Guards>,
    /// What lives across snapshots.
    pub runtime: Arc<Runtime>,
}

impl std::ops::Deref for AppState {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

/// The sections of `new` that differ from `old` and take effect only after
/// a restart (they shape the runtime, which a reload keeps).
pub fn restart_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, section: &'static str| {
        if changed {
            out.push(section);
        }
    };
    check(old.region != new.region, "region");
    check(old.upstream != new.upstream, "upstream");
    check(old.logging != new.logging, "logging");
    check(old.tracing != new.tracing, "tracing");
    check(old.state != new.state, "state");
    check(old.server != new.server || old.tls != new.tls, "server");
    check(
        old.routing.retry_budget != new.routing.retry_budget,
        "routing.retry_budget",
    );
    check(old.cache_max_bytes != new.cache_max_bytes, "cache");
    check(
        old.responses.max_bytes != new.responses.max_bytes,
        "responses.max_bytes",
    );
    out
}

/// Fallback models in order, each with its targets.
pub type Fallbacks = Vec<(String, Vec<Target>)>;

impl AppState {
    /// State with one upstream account called `default`.
    pub fn new(
        config: Config,
        catalog: Catalog,
        region: String,
        region_step: Step,
        upstream: BedrockClient,
        upstream_info: UpstreamInfo,
    ) -> AppState {
        let account = UpstreamAccount {
            name: "default".into(),
            client: upstream,
            regions: BTreeSet::new(),
        };
        AppState::with_accounts(
            config,
            catalog,
            region,
            region_step,
            vec![account],
            upstream_info,
        )
    }

    /// State with default limits, resolving every exposed model once.
    pub fn with_accounts(
        config: Config,
        catalog: Catalog,
        region: String,
        region_step: Step,
        accounts: Vec<UpstreamAccount>,
        upstream_info: UpstreamInfo,
    ) -> AppState {
        let runtime = Runtime::new(&config, region, region_step, accounts, upstream_info);
        AppState::over(config, catalog, Arc::new(runtime))
    }

    /// The snapshot of `config` over `runtime`, resolving every exposed
    /// model once.
    pub fn over(config: Config, catalog: Catalog, runtime: Arc<Runtime>) -> AppState {
        let region = &runtime.region;
        let plans: HashMap<String, Result<Resolution, ResolveError>> = config
            .models
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    config.resolve(&catalog, &m.name, region, None),
                )
            })
            .collect();
        let fallbacks = config
            .models
            .iter()
            .filter_map(|m| {
                let policy = &plans.get(&m.name)?.as_ref().ok()?.policy;
                Some((
                    m.name.clone(),
                    resolve_fallbacks(&config, &catalog, region, &m.fallback, policy),
                ))
            })
            .collect();
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let key = p.api_key_env.as_ref().and_then(|e| {
                    use meridian_catalog::env::EnvSource as _;
                    meridian_catalog::env::ProcessEnv.non_empty(e)
                });
                let client = meridian_upstream::openai_compat::OpenAiClient::new(
                    &p.base_url,
                    key,
                    meridian_upstream::Timeouts::default(),
                );
                (p.name.clone(), client)
            })
            .collect();
        let state = AppState {
            guards: Arc::new(crate::guard::Guards::new(&config)),
            providers: Arc::new(providers),
            max_attempts: config.routing.max_attempts as usize,
            tenants: crate::tenancy::Tenants::new(&config),
            config,
            catalog,
            plans,
            fallbacks,
            runtime,
        };
        // Builds every exposed model's candidates once, which interns their
        // keys: a breaker another replica opened is known here before this
        // replica's first request.
        let _ = state.readiness();
        state
    }

    /// The runtime, to change before the state is shared (copied first if
    /// it already is).
    pub fn runtime_mut(&mut self) -> &mut Runtime {
        Arc::make_mut(&mut self.runtime)
    }

    /// Per exposed model: how many of its allowed candidates are healthy
    /// (endpoint reachable per the prober, breaker not open).
    pub fn readiness(&self) -> Vec<ModelReadiness> {
        let probes = self.probes.read();
        self.config
            .models
            .iter()
            .map(|m| {
                let (candidates, healthy, error) = match self.plans.get(&m.name) {
                    Some(Ok(res)) => {
                        // The candidates a request for the model gets,
                        // built as the plan builds them (tiers included).
                        let per_tier: Vec<Option<ServiceTier>> = if m.service_tiers.is_empty() {
                            vec![None]
                        } else {
                            m.service_tiers.iter().copied().map(Some).collect()
                        };
                        let cands = self.candidates(
                            [(m.name.as_str(), res.targets.as_slice())],
                            &per_tier,
                            || true,
                        );
                        let healthy = cands
                            .iter()
                            .filter(|c| {
                                // A provider is its own one account, not
                                // probed like Bedrock's regional endpoints.
                                let reachable = Surface::of(&c.target) == Surface::Provider
                                    || probes
                                        .get(&c.target.endpoint_region)
                                        .copied()
                                        .unwrap_or(true);
                                reachable && self.router.health.state(c.key()) != BreakerState::Open
                            })
                            .count();
                        (cands.len(), healthy, None)
                    }
                    Some(Err(e)) => (0, 0, Some(e.to_string())),
                    None => (0, 0, Some("not resolved".into())),
                };
                ModelReadiness {
                    model: m.name.clone(),
                    candidates,
                    healthy,
                    error,
                }
            })
            .collect()
    }

    /// The candidates for these models' targets (the requested model first,
    /// then its fallbacks) before ordering; see [`meridian_router::plan::candidates`].
    pub fn candidates<'a>(
        &'a self,
        models: impl IntoIterator<Item = (&'a str, &'a [Target])>,
        per_tier: &[Option<ServiceTier>],
        provider_serves: impl FnMut() -> bool,
    ) -> Vec<meridian_router::Candidate> {
        let mode = match self.config.routing.accounts {
            meridian_config::AccountMode::Tiered => meridian_router::plan::Accounts::Tiered,
            meridian_config::AccountMode::Pooled => meridian_router::plan::Accounts::Pooled,
        };
        meridian_router::plan::candidates(
            models,
            &self.accounts,
            mode,
            per_tier,
            |model, t| provider_of(&self.config, model, t),
            provider_serves,
        )
    }

    /// Every (region, endpoint URL) an exposed model may call.
    pub fn probe_targets(&self) -> Vec<(String, String)> {
        let mut out = std::collections::BTreeMap::new();
        for res in self.plans.values().flatten() {
            for t in res
                .targets
                .iter()
                .filter(|t| t.kind != TargetKind::Provider)
            {
                for a in self.accounts.iter() {
                    out.entry(t.endpoint_region.clone())
                        .or_insert_with(|| a.client.endpoints().url(&t.endpoint_region));
                }
            }
        }
        out.into_iter().collect()
    }

    /// The client of account `name`.
    pub fn client(&self, name: &str) -> Option<&BedrockClient> {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.client)
    }

    /// The catalog's model behind what a client asked for (an exposed name,
    /// alias, base model ID, system profile ID or foundation-model ARN);
    /// `None` for what the catalog does not name (application profiles,
    /// unknown IDs).
    pub fn catalog_model(&self, requested: &str) -> Option<&meridian_catalog::Model> {
        use meridian_catalog::arn::ModelRef;
        let reference = self
            .config
            .model(requested)
            .map_or(requested, |m| m.model.as_str());
        if let Some(m) = self.catalog.model(reference) {
            return Some(m);
        }
        let base = match ModelRef::parse(reference) {
            ModelRef::SystemProfile { base, .. } | ModelRef::Name(base) => base,
            ModelRef::Arn(arn) if arn.resource_type == "foundation-model" => arn.resource_id,
            ModelRef::Arn(_) => return None,
        };
        self.catalog.model_by_id(base)
    }

    /// The start-up residency policy of exposed model `name`.
    pub fn planned_policy(&self, name: &str) -> Option<&Policy> {
        self.plans.get(name)?.as_ref().ok().map(|r| &r.policy)
    }

    /// The targets for what a client asked for: the start-up snapshot for an
    /// exposed name, else a fresh resolution (raw IDs, ARNs, a narrowing header).
    pub fn resolve(
        &self,
        requested: &str,
        narrow: Option<&Policy>,
    ) -> Result<Cow<'_, Resolution>, ResolveError> {
        if narrow.is_none()
            && let Some(plan) = self.plans.get(requested)
        {
            return plan.as_ref().map(Cow::Borrowed).map_err(Clone::clone);
        }
        self.config
            .resolve(&self.catalog, requested, &self.region, narrow)
            .map(Cow::Owned)
    }

    /// This gateway with a new config: tenants, keys, limits, models and
    /// routing come from it; the runtime — breakers and estimates, metrics,
    /// invocation logs, traces, endpoint probes, upstream accounts, the state
    /// backend, the response cache and the request cap — is the same one.
    /// Returns the sections that changed but only take effect after a restart.
    pub fn reloaded(&self, config: Config, catalog: Catalog) -> (AppState, Vec<&'static str>) {
        let restart = restart_sections(&self.config, &config);
        let mut next = AppState::over(config, catalog, self.runtime.clone());
        // Keep the settings that did not take effect, so /status tells the truth.
        next.config.state = self.config.state.clone();
        next.config.server = self.config.server;
        next.config.tls = self.config.tls.clone();
        (next, restart)
    }

    /// The fallbacks of `requested` with their targets: the start-up
    /// snapshot, or resolved afresh under `policy` when a request header
    /// narrowed it.
    pub fn fallbacks(
        &self,
        requested: &str,
        narrow: Option<&Policy>,
        policy: &Policy,
    ) -> Cow<'_, Fallbacks> {
        let Some(m) = self.config.model(requested) else {
            return Cow::Owned(Vec::new());
        };
        match (narrow, self.fallbacks.get(requested)) {
            (None, Some(f)) => Cow::Borrowed(f),
            _ => Cow::Owned(resolve_fallbacks(
                &self.config,
                &self.catalog,
                &self.region,
                &m.fallback,
                policy,
            )),
        }
    }
}

/// The provider serving a target of exposed model `model`, when it is a
/// provider target.
pub(crate) fn provider_of<'a>(config: &'a Config, model: &str, t: &Target) -> Option<&'a str> {
    if t.kind != TargetKind::Provider {
        return None;
    }
    config.model(model).and_then(|m| m.provider.as_deref())
}

fn resolve_fallbacks(
    config: &Config,
    catalog: &Catalog,
    region: &str,
    names: &[String],
    policy: &Policy,
) -> Fallbacks {
    names
        .iter()
        .filter_map(|f| match config.resolve(catalog, f, region, Some(policy)) {
            Ok(r) => Some((f.clone(), r.targets)),
            Err(e) => {
                tracing::debug!(fallback = %f, error = %e, "fallback has no target");
                None
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
