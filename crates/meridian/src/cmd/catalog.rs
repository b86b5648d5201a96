//! `meridian catalog diff`: what Bedrock's control plane says, against the
//! compiled catalog, for every region this config may call.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::discovered::{Verdict, diff};
use meridian_gateway::AppState;
use meridian_gateway::catalog_refresh::discover;

use super::{emit, emit_json, source_region};
use crate::table::Table;

fn set(s: Option<&std::collections::BTreeSet<String>>) -> String {
    s.map_or("-".into(), |s| {
        s.iter().cloned().collect::<Vec<_>>().join(",")
    })
}

pub async fn diff_cmd(config: Option<&Path>, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let (region, step) = source_region(None, &loaded.config).await;
    let (accounts, info, fleet) =
        super::serve::upstream(&loaded.config, &loaded.catalog, &region, 0).await?;
    let state =
        AppState::with_accounts(loaded.config, loaded.catalog, region, step, accounts, info);
    let (found, errors) = discover(&state).await;
    let findings = diff(&state.catalog, &state.config.app_profiles, &found);
    if let Some(f) = fleet {
        f.shutdown().await;
    }
    let contradictions = findings
        .iter()
        .filter(|f| f.verdict.is_contradiction())
        .count();
    if json {
        emit_json(&serde_json::json!({
            "upstream": state.upstream_info,
            "regions_read": found.regions,
            "errors": errors,
            "findings": findings,
        }))?;
    } else {
        let mut out = format!(
            "{} ({}): read {} region(s): {}\n\n",
            state.upstream_info.mode,
            state.upstream_info.detail,
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
