//! `meridian detect`.

use std::process::ExitCode;

use meridian_catalog::detect::{DetectOptions, detect};
use meridian_catalog::env::ProcessEnv;

use super::{emit, emit_json};
use crate::table::Table;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let d = detect(&ProcessEnv, &DetectOptions::default()).await;
    if json {
        emit_json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["STEP", "RESULT", "DETAIL"]);
    for a in &d.attempts {
        t.row(vec![
            a.step.label().into(),
            a.region.clone().unwrap_or_else(|| "-".into()),
            a.detail.clone(),
        ]);
    }
    emit(&format!(
        "region {} (from {})\n\n{}",
        d.region,
        d.step.label(),
        t.render()
    ))?;
    Ok(ExitCode::SUCCESS)
}
