//! Control-plane reads on the runtime host (LangChain calls them there),
//! describing what this Meridian exposes.

use std::collections::BTreeSet;

use axum::response::Response;
use meridian_catalog::TargetKind;
use meridian_catalog::arn::{foundation_model_arn, inference_profile_arn};
use meridian_wire::control::{self, app_profile_summary, catalog_model_summary, profile_summary};
use meridian_wire::{BedrockError, Operation};
use serde_json::Value;

use crate::respond;
use crate::state::AppState;

/// Answers a control-plane read, or the Bedrock error for it.
pub fn answer(state: &AppState, op: &Operation, query: &str) -> Result<Response, BedrockError> {
    // Exposed aliases work as foundation-model identifiers too.
    let aliased = match op {
        Operation::GetFoundationModel { id } => state
            .catalog
            .model(id)
            .map(|m| Operation::GetFoundationModel { id: m.id.clone() }),
        _ => None,
    };
    let missing = |what: &str, id: &str| {
        let id = match op {
            Operation::GetFoundationModel { id } => id.as_str(),
            _ => id,
        };
        match what {
            "profile" => format!("Inference profile {id} is not exposed by this Meridian."),
            _ => format!("Foundation model {id} is not exposed by this Meridian."),
        }
    };
    control::answer(
        aliased.as_ref().unwrap_or(op),
        query,
        profiles(state),
        models(state),
        missing,
    )
    .map(|v| respond::json(&v))
}

/// System profiles the exposed models resolve to, then declared application profiles.
fn profiles(state: &AppState) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for m in &state.config.models {
        let Ok(res) = state.resolve(&m.name, None) else {
            continue;
        };
        for t in res
            .targets
            .iter()
            .filter(|t| matches!(t.kind, TargetKind::GeoProfile | TargetKind::GlobalProfile))
        {
            let Some(base) = &t.base_model_id else {
                continue;
            };
            if t.model_id.starts_with("arn:") || !seen.insert(t.model_id.clone()) {
                continue;
            }
            let name = state
                .catalog
                .model_by_id(base)
                .map_or(base.clone(), |c| c.name.clone());
            let prefix = t.prefix.clone().unwrap_or_default().to_ascii_uppercase();
            let arns: Vec<String> = t
                .destinations
                .iter()
                .map(|d| foundation_model_arn(d, base))
                .collect();
            out.push(profile_summary(
                &t.model_id,
                &inference_profile_arn(&t.endpoint_region, &state.account_id, &t.model_id),
                &format!("{prefix} {name}"),
                "SYSTEM_DEFINED",
                &arns,
                &format!(
                    "Routes requests for {name} to {} regions",
                    t.destinations.len()
                ),
            ));
        }
    }
    for p in &state.config.app_profiles {
        out.push(app_profile_summary(
            p,
            "application inference profile declared in meridian.toml",
        ));
    }
    out
}

/// Base models of the exposed models.
fn models(state: &AppState) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    state
        .config
        .models
        .iter()
        .filter_map(|m| {
            state
                .catalog
                .model(&m.model)
                .or_else(|| state.catalog.model_by_id(&m.model))
        })
        .filter(|m| seen.insert(m.id.clone()))
        .map(|m| catalog_model_summary(m, &state.region))
        .collect()
}
