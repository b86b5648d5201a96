//! `meridian iam-policy`.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::iam::policy_document;

use super::{emit_json, source_region};

pub async fn run(
    region: Option<String>,
    account: &str,
    config: Option<&Path>,
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
    emit_json(&policy_document(&targets, account))?;
    Ok(ExitCode::SUCCESS)
}
