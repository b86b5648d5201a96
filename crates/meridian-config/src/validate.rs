//! Raw config → validated config, checked against the catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use meridian_catalog::arn::{Arn, ModelRef};
use meridian_catalog::resolve::closest;
use meridian_catalog::{AppProfile, Catalog, Policy};
use toml::Spanned;

use crate::error::{At, ConfigError};
use crate::raw::{RawConfig, RawModel, RawResidency, display};
use crate::tenants;

/// Catalog refreshes every hour unless `[catalog] refresh_interval_s` says otherwise.
const DEFAULT_CATALOG_REFRESH_S: u64 = 3_600;
use crate::{
    Account, AccountMode, Config, ExposedModel, InboundAuth, Loaded, LogSink, Logging,
    OtlpProtocol, RegionSetting, Routing, S3Log, Server, Strategy, Tracing, Upstream, UpstreamMode,
};

/// The smallest invocation-log segment worth sealing and uploading.
const MIN_SEGMENT_BYTES: u64 = 4096;

pub(crate) fn validate(
    raw: RawConfig,
    text: &str,
    file: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let at = At {
        text,
        file: display(file),
    };
    let dir = file.and_then(Path::parent).unwrap_or(Path::new(""));

    let catalog_file = raw.catalog.file.as_ref().map(|f| dir.join(f.get_ref()));
    let catalog_refresh_s = raw
        .catalog
        .refresh_interval_s
        .as_ref()
        .map_or(DEFAULT_CATALOG_REFRESH_S, |s| *s.get_ref());
    let catalog = match (&catalog_file, &raw.catalog.file) {
        (Some(path), Some(spanned)) => Catalog::with_override(path)
            .map_err(|e| at.at(spanned, "catalog.file", e.to_string()))?,
        _ => Catalog::builtin().map_err(|e| at.err(None, "catalog", e.to_string()))?,
    };

    let region = match &raw.region {
        None => RegionSetting::Auto,
        Some(r) if r.get_ref() == "auto" => RegionSetting::Auto,
        Some(r) => {
            check_region(&at, &catalog, r, "region")?;
            RegionSetting::Fixed(r.get_ref().clone())
        }
    };

    let mut policies = BTreeMap::new();
    for (name, p) in &raw.residency {
        let key = format!("residency.{}", name.get_ref());
        let allow: Vec<&str> = p.allow.iter().map(|t| t.get_ref().as_str()).collect();
        let exclude: Vec<&str> = p.exclude.iter().map(|t| t.get_ref().as_str()).collect();
        let policy =
            Policy::from_terms(name.get_ref(), &catalog, &allow, &exclude).map_err(|e| {
                let bad = p
                    .allow
                    .iter()
                    .chain(&p.exclude)
                    .find(|t| t.get_ref().trim() == e.term);
                at.err(
                    bad.map(Spanned::span).or(Some(name.span())),
                    key.clone(),
                    e.to_string(),
                )
            })?;
        policies.insert(name.get_ref().clone(), policy);
    }

    let policy_for = |spanned: &Spanned<RawResidency>, key: &str| -> Result<Policy, ConfigError> {
        match spanned.get_ref() {
            RawResidency::Named(n) => policies.get(n).cloned().ok_or_else(|| {
                let known: Vec<&str> = policies.keys().map(String::as_str).collect();
                at.at(
                    spanned,
                    key,
                    if known.is_empty() {
                        format!("no residency policy named '{n}'; define it under [residency.{n}] or list terms inline, e.g. [\"eu\"]")
                    } else {
                        format!("no residency policy named '{n}'; defined: {}", known.join(", "))
                    },
                )
            }),
            RawResidency::Inline(terms) => {
                Policy::from_terms(&terms.join("+"), &catalog, terms, &[] as &[String])
                    .map_err(|e| at.at(spanned, key, e.to_string()))
            }
        }
    };

    let default_policy = match &raw.default_residency {
        Some(d) => policy_for(d, "default_residency")?,
        None => Policy::unrestricted(),
    };

    let mut app_profiles = Vec::new();
    for (i, p) in raw.application_profiles.iter().enumerate() {
        let key = format!("application_profiles[{i}]");
        let arn = p.arn.get_ref();
        let parsed = Arn::parse(arn).filter(|a| a.resource_type == "application-inference-profile");
        let Some(parsed) = parsed else {
            return Err(at.at(&p.arn, format!("{key}.arn"), "expected an ARN like arn:aws:bedrock:REGION:ACCOUNT:application-inference-profile/ID"));
        };
        if catalog.region(parsed.region).is_none() {
            return Err(at.at(
                &p.arn,
                format!("{key}.arn"),
                unknown_region(&catalog, parsed.region),
            ));
        }
        let model_id = model_id_of(&catalog, p.model.get_ref()).ok_or_else(|| {
            at.at(
                &p.model,
                format!("{key}.model"),
                unknown_model(&catalog, p.model.get_ref()),
            )
        })?;
        if p.regions.get_ref().is_empty() {
            return Err(at.at(
                &p.regions,
                format!("{key}.regions"),
                "list the regions the profile routes to (at least one)",
            ));
        }
        for r in p.regions.get_ref() {
            if catalog.region(r).is_none() {
                return Err(at.at(
                    &p.regions,
                    format!("{key}.regions"),
                    unknown_region(&catalog, r),
                ));
            }
        }
        app_profiles.push(AppProfile {
            arn: arn.clone(),
            region: parsed.region.to_string(),
            model_id,
            destinations: p.regions.get_ref().iter().cloned().collect(),
        });
    }

    let providers = validate_providers(&at, &catalog, &raw)?;
    let guards = crate::guard::validate_guards(&at, &raw.guards)?;
    let exposes_catalog = raw.models.is_empty();
    let models = if exposes_catalog {
        catalog
            .models()
            .iter()
            .map(|m| ExposedModel {
                name: m.alias.clone(),
                model: m.alias.clone(),
                policy: default_policy.clone(),
                strategy: Strategy::Priority,
                fallback: Vec::new(),
                prompt_cache_affinity: false,
                hedging: None,
                service_tiers: Vec::new(),
                provisioned: Vec::new(),
                provider: None,
                guard: None,
                guardrails: BTreeMap::new(),
                cache: None,
            })
            .collect()
    } else {
        let mut out = Vec::new();
        for (name, m) in &raw.models {
            let key = format!("models.{}", name.get_ref());
            let provider = provider_of(&at, &providers, &key, m)?;
            if provider.is_none() {
                check_model_ref(
                    &at,
                    &catalog,
                    &app_profiles,
                    &m.model,
                    &format!("{key}.model"),
                )?;
            }
            let policy = match &m.residency {
                Some(r) => default_policy.intersect(&policy_for(r, &format!("{key}.residency"))?),
                None => default_policy.clone(),
            };
            let strategy = strategy_of(&at, &catalog, &key, m, &policy)?;
            let service_tiers = service_tiers_of(&at, &catalog, &key, m)?;
            let provisioned = provisioned_of(&at, &catalog, &key, m)?;
            out.push(ExposedModel {
                name: name.get_ref().clone(),
                model: m.model.get_ref().clone(),
                policy,
                strategy,
                fallback: m.fallback.iter().map(|f| f.get_ref().clone()).collect(),
                prompt_cache_affinity: m.prompt_cache_affinity,
                hedging: m.hedging,
                service_tiers,
                provisioned,
                provider,
                guard: crate::guard::guard_ref(
                    &at,
                    &guards,
                    m.guard.as_ref(),
                    &format!("{key}.guard"),
                )?,
                guardrails: crate::guard::guardrails(
                    &at,
                    &catalog,
                    &m.guardrail,
                    &format!("{key}.guardrail"),
                )?,
                cache: crate::guard::cache(&at, m.cache.as_ref(), &format!("{key}.cache"))?,
            });
        }
        for (name, m) in &raw.models {
            let key = format!("models.{}.fallback", name.get_ref());
            for f in &m.fallback {
                if f.get_ref() == name.get_ref() {
                    return Err(at.at(f, key, "a model cannot fall back to itself"));
                }
                if !out.iter().any(|e| &e.name == f.get_ref()) {
                    let names: Vec<&str> = out.iter().map(|e| e.name.as_str()).collect();
                    return Err(at.at(
                        f,
                        key,
                        format!(
                            "'{}' is not an exposed model; fallbacks name other [models] entries: {}",
                            f.get_ref(),
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        out
    };
    let routing = validate_routing(&at, &catalog, &raw)?;
    let logging = validate_logging(&at, &catalog, &raw, dir)?;
    let tracing = Tracing {
        otlp_endpoint: match &raw.tracing.otlp_endpoint {
            Some(e)
                if !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://")) =>
            {
                return Err(at.at(
                    e,
                    "tracing.otlp_endpoint",
                    "expected http://HOST:PORT (the collector's OTLP address)",
                ));
            }
            Some(e) => Some(e.get_ref().clone()),
            None => None,
        },
        otlp_protocol: match &raw.tracing.otlp_protocol {
            None => OtlpProtocol::default(),
            Some(p) => OtlpProtocol::ALL
                .iter()
                .find(|(n, _)| *n == p.get_ref())
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    at.at(
                        p,
                        "tracing.otlp_protocol",
                        "expected \"http/protobuf\", \"http/json\" or \"grpc\"",
                    )
                })?,
        },
        service_name: raw
            .tracing
            .service_name
            .clone()
            .unwrap_or_else(|| "meridian".into()),
    };

    let upstream = validate_upstream(&at, &catalog, &raw)?;
    let server = validate_server(&at, &raw)?;
    let names: BTreeSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let tenants = tenants::validate_tenants(&at, &raw, &names, &policy_for, &guards)?;
    let cache_max_bytes = match &raw.cache.max_bytes {
        Some(b) if *b.get_ref() == 0 => {
            return Err(at.at(b, "cache.max_bytes", "expected a positive number of bytes"));
        }
        Some(b) => *b.get_ref(),
        None => 64 << 20,
    };
    let responses = validate_responses(&at, &raw)?;
    let batch = validate_batch(&at, &raw, &catalog)?;
    let state = tenants::validate_state(&at, &raw)?;
    let admin_key = tenants::validate_admin(&at, &raw)?;
    let tls = tenants::validate_tls(&at, &raw, dir)?;
    let mut auth = InboundAuth {
        credentials: tenants::credentials(&at, &raw.auth.credentials, "auth.credentials")?,
        ..InboundAuth::default()
    };
    for (i, k) in raw.auth.api_keys.iter().enumerate() {
        if k.get_ref().len() < 16 {
            return Err(at.at(
                k,
                format!("auth.api_keys[{i}]"),
                "an API key must be at least 16 characters",
            ));
        }
        auth.api_keys.push(k.get_ref().clone());
    }

    let strict_residency = raw.strict_residency.as_ref().is_some_and(|s| *s.get_ref());
    let loaded = Loaded {
        config: Config {
            file: file.map(Path::to_path_buf),
            region,
            catalog_file,
            catalog_refresh_s,
            default_policy,
            policies,
            models,
            exposes_catalog,
            app_profiles,
            upstream,
            auth,
            routing,
            logging,
            tracing,
            server,
            tenants,
            state,
            admin_key,
            tls,
            tenant_metric_label: raw.metrics.tenant_label,
            providers,
            guards,
            cache_max_bytes,
            strict_residency,
            responses,
            batch,
        },
        catalog,
    };
    // A fixed region is checked now; `auto` when the region is detected.
    if let (Some(s), RegionSetting::Fixed(r)) = (&raw.strict_residency, &loaded.config.region)
        && let Some(why) = loaded.config.strict_violation(r)
    {
        return Err(at.at(s, "strict_residency", why));
    }
    Ok(loaded)
}

fn strategy_of(
    at: &At<'_>,
    catalog: &Catalog,
    key: &str,
    m: &crate::raw::RawModel,
    policy: &Policy,
) -> Result<Strategy, ConfigError> {
    let name = m.strategy.as_ref().map(|s| s.get_ref().as_str());
    if !m.weights.is_empty() && !matches!(name, Some("weighted")) {
        let span = m.weights.keys().next().map(Spanned::span);
        return Err(at.err(
            span,
            format!("{key}.weights"),
            "weights only apply with strategy = \"weighted\"",
        ));
    }
    Ok(match name {
        None | Some("priority") => Strategy::Priority,
        Some("latency") => Strategy::Latency,
        Some("geo") => Strategy::Geo,
        Some("weighted") => {
            let mut w = BTreeMap::new();
            for (region, weight) in &m.weights {
                check_region(at, catalog, region, &format!("{key}.weights"))?;
                if !policy.allows(region.get_ref()) {
                    return Err(at.at(
                        region,
                        format!("{key}.weights"),
                        format!(
                            "'{}' is outside this model's residency policy '{}', so it never serves; weight only allowed regions",
                            region.get_ref(),
                            policy.name
                        ),
                    ));
                }
                w.insert(region.get_ref().clone(), *weight);
            }
            Strategy::Weighted(w)
        }
        Some(other) => {
            let span = m.strategy.as_ref().map(Spanned::span);
            return Err(at.err(
                span,
                format!("{key}.strategy"),
                format!("'{other}' is not a strategy; expected priority, weighted, latency or geo"),
            ));
        }
    })
}

/// `[batch]`.
fn validate_batch(
    at: &At<'_>,
    raw: &RawConfig,
    catalog: &meridian_catalog::Catalog,
) -> Result<crate::Batch, ConfigError> {
    let r = &raw.batch;
    let mut out = crate::Batch::default();
    for (region, bucket) in &r.buckets {
        if catalog.region(region.get_ref()).is_none() {
            return Err(at.at(
                region,
                "batch.buckets",
                "expected a region code (Bedrock reads and writes a job's S3 objects in the job's own region)",
            ));
        }
        let b = bucket.get_ref();
        let valid = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
        if !valid {
            return Err(at.at(
                bucket,
                "batch.buckets",
                "expected an S3 bucket name (3-63 lowercase letters, digits, '-' and '.'), not a URI",
            ));
        }
        out.buckets.insert(region.get_ref().clone(), b.clone());
    }
    if let Some(role) = &r.role_arn {
        let v = role.get_ref();
        if !(v.starts_with("arn:aws") && v.contains(":iam::") && v.contains(":role/")) {
            return Err(at.at(
                role,
                "batch.role_arn",
                "expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            ));
        }
        out.role_arn = Some(v.clone());
    }
    if !out.buckets.is_empty() && out.role_arn.is_none() {
        return Err(at.err(
            None,
            "batch.role_arn",
            "[batch] has buckets but no role_arn: Bedrock runs a batch job as a service role that reads and writes those buckets",
        ));
    }
    if let Some(e) = &r.s3_endpoint {
        out.s3_endpoint = Some(e.get_ref().trim_end_matches('/').to_string());
    }
    if let Some(p) = &r.prefix {
        out.prefix = p.get_ref().trim_matches('/').to_string();
    }
    for (field, value, slot) in [
        ("batch.retention", &r.retention, &mut out.retention),
        (
            "batch.poll_interval",
            &r.poll_interval,
            &mut out.poll_interval,
        ),
    ] {
        if let Some(t) = value {
            *slot = crate::parse_duration(t.get_ref())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    at.at(
                        t,
                        field,
                        "expected a duration such as \"500ms\", \"30s\" or \"30d\"",
                    )
                })?;
        }
    }
    if let Some(n) = &r.max_active_per_tenant {
        if *n.get_ref() == 0 {
            return Err(at.at(n, "batch.max_active_per_tenant", "expected at least 1"));
        }
        out.max_active_per_tenant = *n.get_ref();
    }
    if let Some(f) = &r.price_factor {
        if !(f.get_ref().is_finite() && *f.get_ref() > 0.0 && *f.get_ref() <= 1.0) {
            return Err(at.at(
                f,
                "batch.price_factor",
                "expected a factor of the on-demand price, above 0 and at most 1",
            ));
        }
        out.price_factor = *f.get_ref();
    }
    Ok(out)
}

/// `[responses]`.
fn validate_responses(at: &At<'_>, raw: &RawConfig) -> Result<crate::ResponsesStore, ConfigError> {
    let r = &raw.responses;
    let mut out = crate::ResponsesStore::default();
    if let Some(s) = &r.store {
        out.store = *s.get_ref();
    }
    if let Some(t) = &r.ttl {
        out.ttl = crate::parse_duration(t.get_ref())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                at.at(
                    t,
                    "responses.ttl",
                    "expected a duration such as \"30m\", \"24h\" or \"30d\"",
                )
            })?;
    }
    if let Some(b) = &r.max_bytes {
        if *b.get_ref() == 0 {
            return Err(at.at(
                b,
                "responses.max_bytes",
                "expected a positive number of bytes",
            ));
        }
        out.max_bytes = *b.get_ref();
    }
    Ok(out)
}

fn validate_server(at: &At<'_>, raw: &RawConfig) -> Result<Server, ConfigError> {
    let r = &raw.server;
    let mut out = Server::default();
    let within = |v: &Spanned<u64>, key: &str, lo: u64, hi: u64, unit: &str| {
        if (lo..=hi).contains(v.get_ref()) {
            Ok(*v.get_ref())
        } else {
            Err(at.at(v, key, format!("expected {lo} to {hi} {unit}")))
        }
    };
    if let Some(v) = &r.max_concurrent_requests {
        out.max_concurrent_requests = within(
            v,
            "server.max_concurrent_requests",
            1,
            1_000_000,
            "requests",
        )? as usize;
    }
    if let Some(v) = &r.body_read_timeout_ms {
        out.body_read_timeout_ms = within(
            v,
            "server.body_read_timeout_ms",
            100,
            600_000,
            "milliseconds",
        )?;
    }
    if let Some(v) = &r.log_queue_records {
        out.log_queue_records =
            within(v, "server.log_queue_records", 1, 10_000_000, "records")? as usize;
    }
    if let Some(v) = &r.first_byte_timeout_ms {
        out.first_byte_timeout_ms = within(
            v,
            "server.first_byte_timeout_ms",
            100,
            600_000,
            "milliseconds",
        )?;
    }
    if let Some(v) = &r.idle_timeout_ms {
        out.idle_timeout_ms = within(v, "server.idle_timeout_ms", 100, 3_600_000, "milliseconds")?;
    }
    if let Some(v) = &r.max_connections {
        out.max_connections =
            Some(within(v, "server.max_connections", 1, 1_000_000, "connections")? as usize);
    }
    if let Some(v) = &r.max_connections_per_peer {
        out.max_connections_per_peer = Some(within(
            v,
            "server.max_connections_per_peer",
            1,
            1_000_000,
            "connections",
        )? as usize);
    }
    Ok(out)
}

fn validate_routing(
    at: &At<'_>,
    catalog: &Catalog,
    raw: &RawConfig,
) -> Result<Routing, ConfigError> {
    let r = &raw.routing;
    let mut out = Routing::default();
    if let Some(d) = &r.deadline_ms {
        if !(100..=3_600_000).contains(d.get_ref()) {
            return Err(at.at(
                d,
                "routing.deadline_ms",
                "expected 100 to 3600000 milliseconds",
            ));
        }
        out.deadline_ms = *d.get_ref();
    }
    if let Some(m) = &r.max_attempts {
        if !(1..=10).contains(m.get_ref()) {
            return Err(at.at(m, "routing.max_attempts", "expected 1 to 10 attempts"));
        }
        out.max_attempts = *m.get_ref();
    }
    if let Some(b) = &r.retry_budget {
        if !(0.0..=1.0).contains(b.get_ref()) {
            return Err(at.at(
                b,
                "routing.retry_budget",
                "expected a share of requests from 0 to 1 (0.2 = 20 % extra attempts)",
            ));
        }
        out.retry_budget = *b.get_ref();
    }
    if let Some(h) = r.hedging {
        out.hedging = h;
    }
    if let Some(a) = &r.accounts {
        out.accounts = match a.get_ref().as_str() {
            "tiered" => AccountMode::Tiered,
            "pooled" => AccountMode::Pooled,
            other => {
                return Err(at.at(
                    a,
                    "routing.accounts",
                    format!("'{other}' is not an account mode; expected tiered or pooled"),
                ));
            }
        };
    }
    if let Some(c) = &r.caller_region {
        check_region(at, catalog, c, "routing.caller_region")?;
        out.caller_region = Some(c.get_ref().clone());
    }
    Ok(out)
}

fn validate_upstream(
    at: &At<'_>,
    catalog: &Catalog,
    raw: &RawConfig,
) -> Result<Upstream, ConfigError> {
    let mode = match raw.upstream.mode.as_ref() {
        None => UpstreamMode::Auto,
        Some(m) => match m.get_ref().as_str() {
            "auto" => UpstreamMode::Auto,
            "aws" => UpstreamMode::Aws,
            "simulated" => UpstreamMode::Simulated,
            other => {
                return Err(at.at(
                    m,
                    "upstream.mode",
                    format!("'{other}' is not a mode; expected auto, aws or simulated"),
                ));
            }
        },
    };
    let endpoints = urls_by_region(at, catalog, &raw.upstream.endpoints, "upstream.endpoints")?;
    let mantle_endpoints = urls_by_region(
        at,
        catalog,
        &raw.upstream.mantle_endpoints,
        "upstream.mantle_endpoints",
    )?;
    let mut accounts = Vec::new();
    let mut names = BTreeSet::new();
    for (i, a) in raw.upstream.accounts.iter().enumerate() {
        let key = format!("upstream.accounts[{i}]");
        if !names.insert(a.name.get_ref().clone()) {
            return Err(at.at(
                &a.name,
                format!("{key}.name"),
                format!("account '{}' is listed twice", a.name.get_ref()),
            ));
        }
        if let Some(role) = &a.role_arn
            && Arn::parse(role.get_ref())
                .is_none_or(|r| r.service != "iam" || r.resource_type != "role")
        {
            return Err(at.at(
                role,
                format!("{key}.role_arn"),
                "expected an IAM role ARN like arn:aws:iam::123456789012:role/NAME",
            ));
        }
        for r in &a.regions {
            check_region(at, catalog, r, &format!("{key}.regions"))?;
        }
        accounts.push(Account {
            name: a.name.get_ref().clone(),
            profile: a.profile.clone(),
            role_arn: a.role_arn.as_ref().map(|r| r.get_ref().clone()),
            external_id: a.external_id.clone(),
            regions: a.regions.iter().map(|r| r.get_ref().clone()).collect(),
        });
    }
    Ok(Upstream {
        mode,
        endpoints,
        mantle_endpoints,
        accounts,
    })
}

/// A table of region → endpoint URL: known regions, http(s) URLs.
fn urls_by_region(
    at: &At<'_>,
    catalog: &Catalog,
    table: &BTreeMap<Spanned<String>, Spanned<String>>,
    key: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (region, url) in table {
        check_region(at, catalog, region, &format!("{key}.{}", region.get_ref()))?;
        let u = url.get_ref();
        let ok = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(' '));
        if !ok {
            return Err(at.at(
                url,
                format!("{key}.{}", region.get_ref()),
                format!("'{u}' is not a URL; expected http://HOST[:PORT] or https://HOST[:PORT]"),
            ));
        }
        out.insert(region.get_ref().clone(), u.clone());
    }
    Ok(out)
}

fn check_region(
    at: &At<'_>,
    catalog: &Catalog,
    r: &Spanned<String>,
    key: &str,
) -> Result<(), ConfigError> {
    match catalog.region(r.get_ref()) {
        Some(_) => Ok(()),
        None => Err(at.at(r, key, unknown_region(catalog, r.get_ref()))),
    }
}

fn check_model_ref(
    at: &At<'_>,
    catalog: &Catalog,
    profiles: &[AppProfile],
    m: &Spanned<String>,
    key: &str,
) -> Result<(), ConfigError> {
    let s = m.get_ref();
    match ModelRef::parse(s) {
        ModelRef::Arn(arn) if arn.resource_type == "application-inference-profile" => {
            if profiles.iter().any(|p| &p.arn == s) {
                Ok(())
            } else {
                Err(at.at(m, key, "application inference profile not declared; add it under [[application_profiles]] with its model and regions"))
            }
        }
        ModelRef::Arn(_) | ModelRef::SystemProfile { .. } => Ok(()),
        ModelRef::Name(_) => match model_id_of(catalog, s) {
            Some(_) => Ok(()),
            None => Err(at.at(m, key, unknown_model(catalog, s))),
        },
    }
}

/// The base model ID for an alias or a base ID.
fn model_id_of(catalog: &Catalog, s: &str) -> Option<String> {
    catalog
        .model(s)
        .map(|m| m.id.clone())
        .or_else(|| s.contains('.').then(|| s.to_string()))
}

fn unknown_model(catalog: &Catalog, s: &str) -> String {
    let near = closest(s, catalog.models().iter().map(|m| m.alias.as_str()));
    let mut msg = format!(
        "unknown model '{s}'; expected a catalog alias, a base model ID (provider.name), a profile ID or an ARN"
    );
    if !near.is_empty() {
        msg.push_str(&format!("; did you mean {}?", near.join(", ")));
    }
    msg
}

fn unknown_region(catalog: &Catalog, r: &str) -> String {
    let codes: Vec<&str> = catalog.regions().iter().map(|r| r.code.as_str()).collect();
    let near = closest(r, codes.iter().copied());
    if near.is_empty() {
        format!("unknown region '{r}'; expected one of {}", codes.join(", "))
    } else {
        format!(
            "unknown region '{r}'; did you mean {}? (all: {})",
            near.join(", "),
            codes.join(", ")
        )
    }
}

fn validate_logging(
    at: &At<'_>,
    catalog: &Catalog,
    raw: &RawConfig,
    dir: &Path,
) -> Result<Logging, ConfigError> {
    let l = &raw.logging;
    let mut out = Logging {
        include_bodies: l.include_bodies,
        ..Logging::default()
    };
    if let Some(s) = &l.sink {
        out.sink = match s.get_ref().as_str() {
            "stdout" => LogSink::Stdout,
            "file" => LogSink::File,
            "none" => LogSink::None,
            other => {
                return Err(at.at(
                    s,
                    "logging.sink",
                    format!("'{other}' is not a sink; expected stdout, file or none"),
                ));
            }
        };
    }
    match (&l.file, out.sink) {
        (Some(f), _) => out.file = Some(dir.join(f.get_ref())),
        (None, LogSink::File) => {
            return Err(at.err(
                l.sink.as_ref().map(Spanned::span),
                "logging.file",
                "sink = \"file\" needs file = \"PATH\"",
            ));
        }
        _ => {}
    }
    if let Some(s3) = &l.s3 {
        let bucket = s3.bucket.get_ref();
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(at.at(
                &s3.bucket,
                "logging.s3.bucket",
                "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
            ));
        }
        if let Some(r) = &s3.region {
            check_region(at, catalog, r, "logging.s3.region")?;
        }
        if let Some(e) = &s3.endpoint {
            let ok = e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://");
            if !ok {
                return Err(at.at(
                    e,
                    "logging.s3.endpoint",
                    "expected http://HOST[:PORT] or https://HOST[:PORT]",
                ));
            }
        }
        let positive = |v: &Option<Spanned<u64>>, key: &str, default: u64| match v {
            Some(n) if *n.get_ref() == 0 => Err(at.at(n, key, "must be greater than 0")),
            Some(n) => Ok(*n.get_ref()),
            None => Ok(default),
        };
        let spool_max_bytes = positive(&s3.spool_max_bytes, "logging.s3.spool_max_bytes", 1 << 30)?;
        let segment_bytes = positive(&s3.segment_bytes, "logging.s3.segment_bytes", 8 << 20)?;
        if segment_bytes < MIN_SEGMENT_BYTES {
            return Err(at.err(
                s3.segment_bytes.as_ref().map(Spanned::span),
                "logging.s3.segment_bytes",
                format!("must be at least {MIN_SEGMENT_BYTES} bytes (a few records)"),
            ));
        }
        if spool_max_bytes < segment_bytes {
            return Err(at.err(
                s3.spool_max_bytes.as_ref().map(Spanned::span),
                "logging.s3.spool_max_bytes",
                format!(
                    "{spool_max_bytes} bytes cannot hold one segment of segment_bytes = {segment_bytes}; every record would be dropped"
                ),
            ));
        }
        out.s3 = Some(S3Log {
            bucket: bucket.clone(),
            prefix: s3.prefix.clone(),
            endpoint: s3.endpoint.as_ref().map(|e| e.get_ref().clone()),
            region: s3.region.as_ref().map(|r| r.get_ref().clone()),
            profile: s3.profile.clone(),
            spool_dir: dir.join(s3.spool_dir.as_deref().unwrap_or("meridian-spool")),
            spool_max_bytes,
            segment_bytes,
            flush_interval_ms: positive(
                &s3.flush_interval_ms,
                "logging.s3.flush_interval_ms",
                5000,
            )?,
        });
    }
    Ok(out)
}

/// `[[providers]]`: unique names, an http(s) base URL, a known region when
/// one is declared, and the models each serves.
fn validate_providers(
    at: &At,
    catalog: &Catalog,
    raw: &RawConfig,
) -> Result<Vec<crate::Provider>, ConfigError> {
    let mut out: Vec<crate::Provider> = Vec::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let key = format!("providers[{i}]");
        let name = p.name.get_ref();
        if name.is_empty() || out.iter().any(|o| &o.name == name) {
            return Err(at.at(
                &p.name,
                format!("{key}.name"),
                "expected a name no other provider has",
            ));
        }
        let url = p.base_url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(at.at(
                &p.base_url,
                format!("{key}.base_url"),
                "expected http(s)://HOST[:PORT]/v1 (the path before /chat/completions)",
            ));
        }
        if let Some(r) = &p.region
            && catalog.region(r.get_ref()).is_none()
        {
            return Err(at.at(
                r,
                format!("{key}.region"),
                unknown_region(catalog, r.get_ref()),
            ));
        }
        if p.models.get_ref().is_empty() {
            return Err(at.at(
                &p.models,
                format!("{key}.models"),
                "list the model names the provider serves (at least one)",
            ));
        }
        out.push(crate::Provider {
            name: name.clone(),
            base_url: url.clone(),
            api_key_env: p.api_key_env.as_ref().map(|e| e.get_ref().clone()),
            region: p.region.as_ref().map(|r| r.get_ref().clone()),
            models: p.models.get_ref().clone(),
        });
    }
    Ok(out)
}

/// A model's `provider`: a declared provider that serves `model`; no
/// provisioned throughput or service tiers with it (those are Bedrock's).
fn provider_of(
    at: &At,
    providers: &[crate::Provider],
    key: &str,
    m: &RawModel,
) -> Result<Option<String>, ConfigError> {
    let Some(name) = &m.provider else {
        return Ok(None);
    };
    let Some(p) = providers.iter().find(|p| &p.name == name.get_ref()) else {
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        return Err(at.at(
            name,
            format!("{key}.provider"),
            format!(
                "'{}' is not a [[providers]] entry (declared: {})",
                name.get_ref(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    if !p.models.contains(m.model.get_ref()) {
        return Err(at.at(
            &m.model,
            format!("{key}.model"),
            format!(
                "provider '{}' does not list '{}' (its models: {})",
                p.name,
                m.model.get_ref(),
                p.models.join(", ")
            ),
        ));
    }
    if let Some(t) = m.service_tiers.first() {
        return Err(at.at(
            t,
            format!("{key}.service_tiers"),
            "service tiers are Bedrock's; a provider model has none",
        ));
    }
    if let Some(pt) = m.provisioned.first() {
        return Err(at.at(
            &pt.arn,
            format!("{key}.provisioned"),
            "provisioned throughput is Bedrock's; a provider model has none",
        ));
    }
    Ok(Some(p.name.clone()))
}

/// A model's `provisioned` entries: provisioned-model ARNs in known
/// regions, each once, with a capacity.
fn provisioned_of(
    at: &At,
    catalog: &Catalog,
    key: &str,
    m: &RawModel,
) -> Result<Vec<crate::Provisioned>, ConfigError> {
    let mut out: Vec<crate::Provisioned> = Vec::new();
    for (i, p) in m.provisioned.iter().enumerate() {
        let key = format!("{key}.provisioned[{i}]");
        let arn = p.arn.get_ref();
        let parsed = Arn::parse(arn)
            .filter(|a| a.resource_type == "provisioned-model" && !a.resource_id.is_empty());
        let Some(parsed) = parsed else {
            return Err(at.at(
                &p.arn,
                format!("{key}.arn"),
                "expected an ARN like arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID",
            ));
        };
        if catalog.region(parsed.region).is_none() {
            return Err(at.at(
                &p.arn,
                format!("{key}.arn"),
                unknown_region(catalog, parsed.region),
            ));
        }
        if out.iter().any(|o| &o.arn == arn) {
            return Err(at.at(&p.arn, format!("{key}.arn"), "listed twice"));
        }
        if *p.model_units.get_ref() == 0 {
            return Err(at.at(
                &p.model_units,
                format!("{key}.model_units"),
                "expected at least 1",
            ));
        }
        if *p.tokens_per_minute_per_unit.get_ref() == 0 {
            return Err(at.at(
                &p.tokens_per_minute_per_unit,
                format!("{key}.tokens_per_minute_per_unit"),
                "expected the tokens per minute one model unit carries (at least 1)",
            ));
        }
        let usd_per_unit_hour = match &p.usd_per_unit_hour {
            Some(v) if !(v.get_ref().is_finite() && *v.get_ref() >= 0.0) => {
                return Err(at.at(
                    v,
                    format!("{key}.usd_per_unit_hour"),
                    "expected a price of 0 or more",
                ));
            }
            v => v.as_ref().map(|v| *v.get_ref()),
        };
        out.push(crate::Provisioned {
            arn: arn.clone(),
            region: parsed.region.to_string(),
            model_units: *p.model_units.get_ref(),
            tokens_per_minute_per_unit: *p.tokens_per_minute_per_unit.get_ref(),
            usd_per_unit_hour,
        });
    }
    Ok(out)
}

/// A model's `service_tiers`: known tiers, each once, offered by the model
/// when the catalog knows it.
fn service_tiers_of(
    at: &At,
    catalog: &Catalog,
    key: &str,
    m: &RawModel,
) -> Result<Vec<meridian_catalog::ServiceTier>, ConfigError> {
    use meridian_catalog::ServiceTier;
    let key = format!("{key}.service_tiers");
    let known = catalog
        .model(m.model.get_ref())
        .or_else(|| catalog.model_by_id(m.model.get_ref()));
    let mut out = Vec::new();
    for t in &m.service_tiers {
        let Some(tier) = ServiceTier::parse(t.get_ref()) else {
            return Err(at.at(
                t,
                key,
                format!(
                    "'{}' is not a service tier; Bedrock's are flex, default, priority and reserved",
                    t.get_ref()
                ),
            ));
        };
        if out.contains(&tier) {
            return Err(at.at(t, key, format!("'{}' is listed twice", t.get_ref())));
        }
        if let Some(model) = known
            && !model.offers_tier(tier)
        {
            return Err(at.at(
                t,
                key,
                format!(
                    "{} does not offer the {} tier on Bedrock (the catalog lists: default{})",
                    model.alias,
                    tier.name(),
                    model
                        .service_tiers
                        .iter()
                        .map(|t| format!(", {}", t.name()))
                        .collect::<String>()
                ),
            ));
        }
        out.push(tier);
    }
    Ok(out)
}
