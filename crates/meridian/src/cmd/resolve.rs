//! `meridian resolve`.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::resolve::short_list;
use meridian_catalog::{Policy, Target, TargetKind};

use super::{emit, emit_json, source_region};
use crate::table::Table;

pub async fn run(
    model: &str,
    region: Option<String>,
    allow: &[String],
    exclude: &[String],
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let (source, _) = source_region(region, &loaded.config).await;
    let narrow = if allow.is_empty() && exclude.is_empty() {
        None
    } else {
        Some(Policy::from_terms(
            "--allow/--exclude",
            &loaded.catalog,
            allow,
            exclude,
        )?)
    };
    let res = loaded
        .config
        .resolve(&loaded.catalog, model, &source, narrow.as_ref())?;
    if json {
        emit_json(&res)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{} from {} under residency policy {}\n\n",
        res.requested, res.source_region, res.policy
    );
    let mut t = Table::new(&[
        "#",
        "CALL IN",
        "MODEL ID",
        "KIND",
        "PROCESSED IN",
        "$/MTOK IN",
        "$/MTOK OUT",
        "NOTE",
    ]);
    for (i, target) in res.targets.iter().enumerate() {
        let (pin, pout) = match target.price {
            Some(p) => (
                format!("{:.2}", p.input_per_mtok),
                format!("{:.2}", p.output_per_mtok),
            ),
            None => ("-".into(), "-".into()),
        };
        t.row(vec![
            (i + 1).to_string(),
            target.endpoint_region.clone(),
            target.model_id.clone(),
            kind(target).into(),
            regions(target),
            pin,
            pout,
            note(target),
        ]);
    }
    out.push_str(&t.render());
    if !res.rejected.is_empty() {
        out.push_str("\nrejected by the policy:\n");
        for r in &res.rejected {
            out.push_str(&format!(
                "  {} via {}: processes outside the policy in {}\n",
                r.target.model_id,
                r.target.endpoint_region,
                short_list(&r.outside)
            ));
        }
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// A target's kind, as the tables name it.
pub(super) fn kind(t: &Target) -> &'static str {
    match t.kind {
        TargetKind::GeoProfile => "geo-profile",
        TargetKind::GlobalProfile => "global-profile",
        TargetKind::OnDemand => "in-region",
        TargetKind::AppProfile => "app-profile",
        TargetKind::Provisioned => "provisioned",
        TargetKind::PassThrough => "pass-through",
        TargetKind::Provider => "provider",
        TargetKind::Mantle => "mantle",
    }
}

fn regions(t: &Target) -> String {
    let list: Vec<String> = t.destinations.iter().cloned().collect();
    short_list(&list)
}

fn note(t: &Target) -> String {
    let mut notes = Vec::new();
    if !t.is_local() {
        notes.push(format!("remote, {} km", t.distance_km));
    }
    if !t.confirmed {
        notes.push("unconfirmed set".into());
    }
    notes.join("; ")
}
