//! What a config change would do to the inbound security posture. A hot
//! reload may tighten it but never lowers it on its own: a half-written or
//! emptied file parses as a valid config without tenants, and applying it
//! would switch authentication off. Each weakening found here makes the
//! reload wait for a restart (or an operator's explicit switch).

use meridian_catalog::{Catalog, Policy};

use crate::Config;

/// The ways `new` is weaker than `old`, each said in a sentence; empty when
/// `new` keeps every protection `old` had. Residency is compared region by
/// region over the catalog's regions.
pub fn weakenings(old: &Config, new: &Config, catalog: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    let regions: Vec<&str> = catalog.regions().iter().map(|r| r.code.as_str()).collect();
    let tenants_on = |c: &Config| !c.tenants.is_empty();
    if tenants_on(old) && !tenants_on(new) {
        out.push(
            "every [tenants] entry is gone: callers would no longer need a tenant key".to_string(),
        );
    }
    if old.auth.is_enforced() && !new.auth.is_enforced() && !tenants_on(new) {
        out.push("[auth] has no credentials or keys left: callers would go unverified".into());
    }
    if old.admin_key.is_some() && new.admin_key.is_none() {
        out.push("[admin] key_hash is gone: /admin and /ui would lose their key".into());
    }
    if old.strict_residency && !new.strict_residency {
        out.push("strict_residency was turned off".into());
    }
    if let Some(w) = widened(
        "default_policy",
        &old.default_policy,
        &new.default_policy,
        &regions,
    ) {
        out.push(w);
    }
    for (name, before) in &old.policies {
        if let Some(after) = new.policies.get(name)
            && let Some(w) = widened(&format!("policies.{name}"), before, after, &regions)
        {
            out.push(w);
        }
    }
    for before in &old.models {
        let Some(after) = new.model(&before.name) else {
            continue;
        };
        let what = format!("models.{}", before.name);
        if let Some(w) = widened(&what, &before.policy, &after.policy, &regions) {
            out.push(w);
        }
        if before.guard.is_some() && after.guard.is_none() {
            out.push(format!("{what} lost its guard"));
        }
    }
    for before in &old.tenants {
        let Some(after) = new.tenants.iter().find(|t| t.name == before.name) else {
            continue;
        };
        let what = format!("tenants.{}", before.name);
        let unrestricted = Policy::unrestricted();
        if let Some(b) = &before.residency
            && let Some(w) = widened(
                &format!("{what}.residency"),
                b,
                after.residency.as_ref().unwrap_or(&unrestricted),
                &regions,
            )
        {
            out.push(w);
        }
        if before.guard.is_some() && after.guard.is_none() {
            out.push(format!("{what} lost its guard"));
        }
    }
    out
}

/// The sentence for a policy that now allows regions it did not.
fn widened(what: &str, before: &Policy, after: &Policy, regions: &[&str]) -> Option<String> {
    let added: Vec<&str> = regions
        .iter()
        .copied()
        .filter(|r| after.allows(r) && !before.allows(r))
        .collect();
    if added.is_empty() {
        return None;
    }
    let shown = if added.len() > 4 {
        format!("{} and {} more", added[..4].join(", "), added.len() - 4)
    } else {
        added.join(", ")
    };
    Some(format!(
        "{what} would newly allow {shown} (was {before}, would be {after})"
    ))
}
