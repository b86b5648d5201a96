//! `meridian config check`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::{emit, emit_json};

pub fn run(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match meridian_config::load(Some(file)) {
        Ok(l) => l,
        Err(e) if json => {
            emit_json(&json!({"file": file, "ok": false, "error": {
                "line": e.line, "key": e.key, "message": e.message}}))?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let c = &loaded.config;
    if json {
        emit_json(&json!({
            "file": file, "ok": true,
            "models": c.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
            "residency_policies": c.policies.keys().collect::<Vec<_>>(),
            "application_profiles": c.app_profiles.len(),
        }))?;
    } else {
        emit(&format!(
            "{}: ok ({} models, {} residency policies, {} application profiles)\n",
            file.display(),
            c.models.len(),
            c.policies.len(),
            c.app_profiles.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
