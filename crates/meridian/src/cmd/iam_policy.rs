//! `meridian iam-policy`.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::iam::policy_document;
use serde_json::json;

use crate::cli::PolicyFormat;

use super::{emit_json, source_region};

pub async fn run(
    region: Option<String>,
    account: &str,
    config: Option<&Path>,
    format: PolicyFormat,
) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let (source, _) = source_region(region, &loaded.config).await;
    let mut targets = Vec::new();
    for m in &loaded.config.models {
        // A model with no allowed target needs no permission; doctor reports it.
        if let Ok(res) = loaded
            .config
            .resolve(&loaded.catalog, &m.name, &source, None)
        {
            targets.extend(res.targets);
        }
    }
    if targets.is_empty() {
        anyhow::bail!("no exposed model resolves from {source}; run `meridian doctor` to see why");
    }
    let document = policy_document(&targets, account);
    match format {
        PolicyFormat::Json => emit_json(&document)?,
        // The targets depend on the region Meridian runs in: the name says
        // which one, and the template refuses to deploy anywhere else.
        PolicyFormat::Cloudformation => emit_json(&json!({
            "PolicyName": format!("meridian-bedrock-{source}"),
            "PolicyDocument": document,
        }))?,
    }
    Ok(ExitCode::SUCCESS)
}
