//! `meridian plan-migration --to REGION`: what changes when the same config
//! is served from another region. Exit 1 when a model would become
//! unservable there, or (with `strict_residency`) a policy would be served
//! from a region it does not allow.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::arn::partition_of;
use meridian_catalog::iam::resources;
use meridian_catalog::{Catalog, Target};
use serde::Serialize;

use super::{emit, emit_json, source_region};
use crate::table::Table;

/// Where a model is called from one gateway region.
#[derive(Debug, Serialize)]
struct Side {
    call_in: String,
    model_id: String,
    kind: &'static str,
    processed_in: Vec<String>,
    /// Called in the gateway's own region.
    in_region: bool,
    /// Called in another geography than the gateway's.
    crosses_geography: bool,
    distance_km: u32,
    usd_per_mtok_in: Option<f64>,
    usd_per_mtok_out: Option<f64>,
}

/// One exposed model, before and after.
#[derive(Debug, Serialize)]
struct ModelPlan {
    model: String,
    policy: String,
    before: Option<Side>,
    after: Option<Side>,
    /// Why the model cannot be served from the new region.
    unservable: Option<String>,
    /// Regions the first-choice target processes in after the move and not
    /// before, and the other way round.
    destinations_gained: Vec<String>,
    destinations_lost: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Serialize)]
struct Plan {
    from: String,
    to: String,
    partition_from: &'static str,
    partition_to: &'static str,
    strict_residency: bool,
    models: Vec<ModelPlan>,
    /// Policies the new region is outside of (refused in strict mode).
    policies_outside: Vec<String>,
    iam_arns_added: Vec<String>,
    iam_arns_removed: Vec<String>,
    notes: Vec<String>,
    ok: bool,
}

fn side(catalog: &Catalog, gateway: &str, t: &Target) -> Side {
    let geo = |r: &str| catalog.region(r).map(|x| x.geography.clone());
    Side {
        call_in: t.endpoint_region.clone(),
        model_id: t.model_id.clone(),
        kind: super::resolve::kind(t),
        processed_in: t.destinations.iter().cloned().collect(),
        in_region: t.endpoint_region == gateway,
        crosses_geography: geo(&t.endpoint_region) != geo(gateway),
        distance_km: t.distance_km,
        usd_per_mtok_in: t.price.map(|p| p.input_per_mtok),
        usd_per_mtok_out: t.price.map(|p| p.output_per_mtok),
    }
}

fn arns(targets: &[Target]) -> BTreeSet<String> {
    let r = resources(targets, "*");
    r.profiles
        .into_iter()
        .chain(r.foundation_models)
        .chain(r.global_models)
        .collect()
}

pub async fn run(
    to: &str,
    from: Option<String>,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = meridian_config::load(config)?;
    let (from, _) = source_region(from, &loaded.config).await;
    let catalog = &loaded.catalog;
    let cfg = &loaded.config;
    let Some(target_region) = catalog.region(to) else {
        anyhow::bail!("'{to}' is not a known region; `meridian regions` lists them");
    };
    if !target_region.bedrock {
        anyhow::bail!(
            "{to} does not serve Bedrock; `meridian regions --bedrock` lists those that do"
        );
    }
    let mut models = Vec::new();
    let (mut before_targets, mut after_targets) = (Vec::new(), Vec::new());
    for m in &cfg.models {
        let before = cfg.resolve(catalog, &m.name, &from, None);
        let after = cfg.resolve(catalog, &m.name, to, None);
        // Where the first-choice target processes requests, before and after.
        let dests = |r: &Result<meridian_catalog::Resolution, _>| -> BTreeSet<String> {
            r.as_ref()
                .ok()
                .and_then(|r| r.targets.first())
                .map(|t| t.destinations.iter().cloned().collect())
                .unwrap_or_default()
        };
        let (db, da) = (dests(&before), dests(&after));
        models.push(ModelPlan {
            model: m.name.clone(),
            policy: m.policy.name.clone(),
            before: before
                .as_ref()
                .ok()
                .and_then(|r| r.targets.first())
                .map(|t| side(catalog, &from, t)),
            after: after
                .as_ref()
                .ok()
                .and_then(|r| r.targets.first())
                .map(|t| side(catalog, to, t)),
            unservable: after.as_ref().err().map(ToString::to_string),
            destinations_gained: da.difference(&db).cloned().collect(),
            destinations_lost: db.difference(&da).cloned().collect(),
        });
        if let Ok(r) = before {
            before_targets.extend(r.targets);
        }
        if let Ok(r) = after {
            after_targets.extend(r.targets);
        }
    }
    let policies_outside: Vec<String> = cfg
        .transit_policies(to)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let (ab, aa) = (arns(&before_targets), arns(&after_targets));
    let mut notes = Vec::new();
    let (pf, pt) = (partition_of(&from), partition_of(to));
    if pf != pt {
        notes.push(format!(
            "partition changes from {pf} to {pt}: credentials, accounts, ARNs and endpoints are separate; \
             nothing is shared across partitions"
        ));
    }
    if let Some(s3) = &cfg.logging.s3 {
        match &s3.region {
            Some(b) if partition_of(b) != pt => notes.push(format!(
                "the invocation-log bucket {} is in {b} ({}): a gateway in {pt} cannot write to it; \
                 create a bucket in the new partition",
                s3.bucket,
                partition_of(b)
            )),
            Some(b) if b != to => notes.push(format!(
                "the invocation-log bucket {} is in {b}: from {to} every export crosses regions \
                 (transfer cost, and a residency question for the records)",
                s3.bucket
            )),
            Some(_) => {}
            None => notes.push(format!(
                "the invocation-log bucket {} has no region in the config: Meridian detects it at start-up; \
                 check it is where the records may live",
                s3.bucket
            )),
        }
    }
    if let meridian_config::RegionSetting::Fixed(r) = &cfg.region {
        notes.push(format!(
            "the config fixes region = \"{r}\": change it to \"{to}\" (or \"auto\") when moving"
        ));
    }
    let unservable = models.iter().any(|m| m.unservable.is_some());
    let strict_refused = cfg.strict_residency && !policies_outside.is_empty();
    let plan = Plan {
        from: from.clone(),
        to: to.to_string(),
        partition_from: pf,
        partition_to: pt,
        strict_residency: cfg.strict_residency,
        models,
        policies_outside,
        iam_arns_added: aa.difference(&ab).cloned().collect(),
        iam_arns_removed: ab.difference(&aa).cloned().collect(),
        notes,
        ok: !unservable && !strict_refused,
    };
    if json {
        emit_json(&plan)?;
    } else {
        emit(&render(&plan))?;
    }
    Ok(if plan.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render(p: &Plan) -> String {
    let mut out = format!(
        "Serving this config from {} instead of {} ({} → {})\n\n",
        p.to, p.from, p.partition_from, p.partition_to
    );
    let mut t = Table::new(&[
        "MODEL",
        "POLICY",
        "NOW CALLED IN",
        "THEN CALLED IN",
        "THEN",
        "KM",
        "$/MTOK IN",
        "DESTINATIONS",
    ]);
    let price = |s: &Option<Side>| {
        s.as_ref()
            .and_then(|s| s.usd_per_mtok_in)
            .map_or("-".to_string(), |p| format!("{p:.2}"))
    };
    for m in &p.models {
        let now = m
            .before
            .as_ref()
            .map_or("-".into(), |s| format!("{} ({})", s.call_in, s.kind));
        let (then, how, km) = match (&m.after, &m.unservable) {
            (Some(s), _) => (
                format!("{} ({})", s.call_in, s.kind),
                if s.in_region {
                    "in-region".to_string()
                } else if s.crosses_geography {
                    "crosses geography".to_string()
                } else {
                    "same geography".to_string()
                },
                s.distance_km.to_string(),
            ),
            (None, Some(_)) => ("UNSERVABLE".into(), "-".into(), "-".into()),
            (None, None) => ("-".into(), "-".into(), "-".into()),
        };
        let mut d = Vec::new();
        if !m.destinations_gained.is_empty() {
            d.push(format!("+{}", m.destinations_gained.join(" +")));
        }
        if !m.destinations_lost.is_empty() {
            d.push(format!("-{}", m.destinations_lost.join(" -")));
        }
        t.row(vec![
            m.model.clone(),
            m.policy.clone(),
            now,
            then,
            how,
            km,
            format!("{} → {}", price(&m.before), price(&m.after)),
            if d.is_empty() {
                "same".into()
            } else {
                d.join(" ")
            },
        ]);
    }
    out.push_str(&t.render());
    for m in &p.models {
        if let Some(why) = &m.unservable {
            out.push_str(&format!(
                "\n{} cannot be served from {}: {why}\n",
                m.model, p.to
            ));
        }
    }
    if !p.policies_outside.is_empty() {
        out.push_str(&format!(
            "\n{} does not allow {} itself: {}\n",
            p.policies_outside.join(", "),
            p.to,
            if p.strict_residency {
                "refused (strict_residency: the gateway must run inside every policy it serves)"
            } else {
                "prompts would transit the gateway outside the policy (allowed: strict_residency is off)"
            }
        ));
    }
    out.push_str(&format!(
        "\nIAM: {} resource ARNs added, {} removed (`meridian iam-policy --region {}` prints the new policy)\n",
        p.iam_arns_added.len(),
        p.iam_arns_removed.len(),
        p.to
    ));
    const SHOWN: usize = 12;
    for (sign, list) in [("+", &p.iam_arns_added), ("-", &p.iam_arns_removed)] {
        for a in list.iter().take(SHOWN) {
            out.push_str(&format!("  {sign} {a}\n"));
        }
        if list.len() > SHOWN {
            out.push_str(&format!(
                "  {sign} … and {} more (--json lists them all)\n",
                list.len() - SHOWN
            ));
        }
    }
    for n in &p.notes {
        out.push_str(&format!("\nnote: {n}\n"));
    }
    out.push_str(if p.ok {
        "\nverdict: every model can be served from the new region\n"
    } else {
        "\nverdict: NOT ready — see above\n"
    });
    out
}
