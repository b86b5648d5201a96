//! `meridian regions`.

use std::process::ExitCode;

use meridian_catalog::Catalog;

use super::{emit, emit_json};
use crate::table::Table;

pub fn run(geo: Option<&str>, bedrock_only: bool, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    if let Some(g) = geo
        && !catalog.groups().contains(g)
    {
        let groups: Vec<&str> = catalog.groups().into_iter().collect();
        anyhow::bail!(
            "unknown geography '{g}'; expected one of {}",
            groups.join(", ")
        );
    }
    let regions: Vec<_> = catalog
        .regions()
        .iter()
        .filter(|r| geo.is_none_or(|g| r.in_group(g)))
        .filter(|r| !bedrock_only || r.bedrock)
        .collect();
    if json {
        emit_json(&regions)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["REGION", "NAME", "GEOGRAPHY", "PARTITION", "BEDROCK"]);
    for r in &regions {
        let mut geo = r.geography.clone();
        for z in &r.zones {
            geo.push_str(&format!(" ({z})"));
        }
        let bedrock = match (r.bedrock, r.bedrock_confirmed) {
            (true, true) => "yes",
            (true, false) => "yes (unconfirmed)",
            (false, _) => "no",
        };
        t.row(vec![
            r.code.clone(),
            r.name.clone(),
            geo,
            r.partition.clone(),
            bedrock.into(),
        ]);
    }
    emit(&t.render())?;
    Ok(ExitCode::SUCCESS)
}
