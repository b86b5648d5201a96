//! `meridian catalog diff`: what Bedrock's control plane says, against the
//! compiled catalog, for every region this config may call; `meridian
//! catalog models`: every model and where its facts came from.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_catalog::discovered::{Discovered, Finding, Verdict, diff};
use meridian_config::Config;
use meridian_gateway::catalog_refresh::discover;
use meridian_gateway::{AppState, UpstreamInfo};

use super::{emit, emit_json, source_region};
use crate::table::Table;

fn set(s: Option<&std::collections::BTreeSet<String>>) -> String {
    s.map_or("-".into(), |s| {
        s.iter().cloned().collect::<Vec<_>>().join(",")
    })
}

/// What one catalog refresh would read now, as `serve` would read it.
pub(crate) struct Reading {
    pub upstream: UpstreamInfo,
    pub found: Discovered,
    pub errors: Vec<String>,
    pub findings: Vec<Finding>,
}

impl Reading {
    /// Findings that contradict the compiled catalog.
    pub fn contradictions(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.verdict.is_contradiction())
            .count()
    }
}

/// Reads the control plane once with the config's upstream accounts (a
/// simulated fleet, started and stopped here, without AWS credentials).
pub(crate) async fn read_now(
    config: Config,
    catalog: Catalog,
    region: String,
    step: Step,
) -> anyhow::Result<Reading> {
    let (accounts, info, fleet) = super::serve::upstream(&config, &catalog, &region, 0).await?;
    let state = AppState::with_accounts(config, catalog, region, step, accounts, info);
    let (found, errors) = discover(&state).await;
    let findings = diff(&state.catalog, &state.config.app_profiles, &found);
    if let Some(f) = fleet {
        f.shutdown().await;
    }
    Ok(Reading {
        upstream: state.upstream_info.clone(),
        found,
        errors,
        findings,
    })
}

pub async fn diff_cmd(config: Option<&Path>, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let (region, step) = source_region(None, &loaded.config).await;
    let reading = read_now(loaded.config, loaded.catalog, region, step).await?;
    let contradictions = reading.contradictions();
    let Reading {
        upstream,
        found,
        errors,
        findings,
    } = reading;
    if json {
        emit_json(&serde_json::json!({
            "upstream": upstream,
            "regions_read": found.regions,
            "errors": errors,
            "findings": findings,
        }))?;
    } else {
        let mut out = format!(
            "{} ({}): read {} region(s): {}\n\n",
            upstream.mode,
            upstream.detail,
            found.regions.len(),
            found.regions.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let mut t = Table::new(&[
            "VERDICT",
            "PROFILE",
            "CALLED IN",
            "COMPILED",
            "BEDROCK SAYS",
        ]);
        let mut confirmed = 0;
        for f in &findings {
            if f.verdict == Verdict::Confirmed && !all {
                confirmed += 1;
                continue;
            }
            t.row(vec![
                format!("{:?}", f.verdict).to_lowercase(),
                format!("{:?}", f.kind).to_lowercase(),
                f.profile.clone(),
                f.source.clone(),
                set(f.compiled.as_ref()),
                set(f.discovered.as_ref()),
            ]);
        }
        out.push_str(&t.render());
        if confirmed > 0 {
            out.push_str(&format!("\n{confirmed} confirmed (--all lists them)\n"));
        }
        for e in &errors {
            out.push_str(&format!("\nnot read: {e}"));
        }
        emit(&out)?;
    }
    Ok(if found.regions.is_empty() {
        ExitCode::from(2)
    } else if contradictions > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn models_cmd(
    config: Option<&Path>,
    refresh: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let mut catalog = loaded.catalog.clone();
    let mut errors = Vec::new();
    if refresh {
        let (region, step) = source_region(None, &loaded.config).await;
        let reading = read_now(loaded.config, loaded.catalog, region, step).await?;
        errors = reading.errors;
        catalog = catalog.with_discovered(std::sync::Arc::new(reading.found));
    }
    let models = catalog.models();
    if json {
        emit_json(&serde_json::json!({"models": models, "errors": errors}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "ALIAS",
        "MODEL ID",
        "PROFILES",
        "ON DEMAND",
        "PRICE IN/OUT",
        "SOURCE",
    ]);
    for m in models {
        let prefixes: Vec<String> = m
            .routes
            .iter()
            .filter_map(|id| catalog.route(id))
            .map(|r| r.prefix.clone())
            .collect();
        let price = m
            .price
            .for_prefix("us")
            .or(m.price.global)
            .or(m.price.in_region())
            .map_or("unknown".to_string(), |p| {
                format!("${}/${}", p.input_per_mtok, p.output_per_mtok)
            });
        let source = if m.checked.is_empty() {
            m.source.clone()
        } else {
            format!("{} ({})", m.source, m.checked)
        };
        t.row(vec![
            m.alias.clone(),
            m.id.clone(),
            if prefixes.is_empty() {
                "-".into()
            } else {
                prefixes.join(",")
            },
            if m.on_demand.is_empty() {
                "-".into()
            } else {
                m.on_demand.len().to_string() + " regions"
            },
            price,
            source.chars().take(100).collect(),
        ]);
    }
    let mut out = t.render();
    for e in &errors {
        out.push_str(&format!("\nnot read: {e}"));
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
