//! Planning: which candidates a request gets, from plain data. The catalog
//! resolved the targets under the residency policy; this multiplies them by
//! the accounts allowed in each called region and by the service tiers
//! asked for, and gives each candidate its tier of precedence. It never
//! adds a target.

use std::collections::BTreeSet;

use meridian_catalog::{ServiceTier, Target, TargetKind};

use crate::key::Surface;
use crate::route::Candidate;

/// An upstream account as planning sees it.
pub trait Account {
    /// Its name (part of every candidate key).
    fn name(&self) -> &str;
    /// Whether it may be called in `region`.
    fn serves(&self, region: &str) -> bool;
}

/// How the accounts relate to one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounts {
    /// Each account after the first is a passive backup of the ones before.
    Tiered,
    /// Every account is tried alongside the others.
    Pooled,
}

/// The candidates for `models`' targets (the requested model first, then
/// its fallbacks), in precedence tiers: a fallback model after every
/// candidate of the models before it, a tiered account after the accounts
/// before it, a service tier after the service tiers before it.
///
/// A target that `provider_of` names a provider for is one candidate of
/// that provider, kept only when `provider_serves` (asked at most once per
/// call site, lazily) says the provider can answer the request.
pub fn candidates<'a, A: Account>(
    models: impl IntoIterator<Item = (&'a str, &'a [Target])>,
    accounts: &[A],
    mode: Accounts,
    per_tier: &[Option<ServiceTier>],
    provider_of: impl Fn(&str, &Target) -> Option<&'a str>,
    mut provider_serves: impl FnMut() -> bool,
) -> Vec<Candidate> {
    let n_accounts = accounts.len().max(1);
    let n_tiers = per_tier.len().max(1);
    let mut out = Vec::new();
    for (m, (model, targets)) in models.into_iter().enumerate() {
        for t in targets {
            if let Some(p) = provider_of(model, t) {
                if provider_serves() {
                    out.push(Candidate::new(
                        p.to_string(),
                        m * n_accounts * n_tiers,
                        model.to_string(),
                        t.clone(),
                        None,
                    ));
                }
                continue;
            }
            for (a, acct) in accounts.iter().enumerate() {
                if !acct.serves(&t.endpoint_region) {
                    continue;
                }
                let tier = match mode {
                    Accounts::Tiered => a,
                    Accounts::Pooled => 0,
                };
                for (s, service_tier) in per_tier.iter().enumerate() {
                    out.push(Candidate::new(
                        acct.name().to_string(),
                        (m * n_accounts + tier) * n_tiers + s,
                        model.to_string(),
                        t.clone(),
                        *service_tier,
                    ));
                }
            }
        }
    }
    out
}

/// Bedrock's native Messages surfaces for an Anthropic Messages request,
/// which they take whole (no translation). Each runtime candidate whose
/// model `native` says is served there — called by model or system profile
/// ID, on no service tier — is preceded by the same call on runtime
/// Messages, then by Mantle in its called region: the base ID, processed in
/// that region, so only where `allows` says the policy admits the region and
/// `mantle` says the account calls Mantle there for that base ID (once per
/// account and region). The runtime candidates (InvokeModel, the legacy integration)
/// follow as the last resort, in their order. Nothing outside the policy
/// is added: a runtime Messages candidate touches the regions its runtime
/// twin does, a Mantle one only its called region.
pub fn with_messages_surfaces(
    planned: Vec<Candidate>,
    native: impl Fn(&Candidate) -> bool,
    mantle: impl Fn(&str, &str, &str) -> bool,
    allows: impl Fn(&str) -> bool,
) -> Vec<Candidate> {
    let eligible = |c: &Candidate| {
        c.surface == Surface::Runtime
            && c.service_tier.is_none()
            && matches!(
                c.target.kind,
                TargetKind::GeoProfile | TargetKind::GlobalProfile | TargetKind::OnDemand
            )
            && native(c)
    };
    if !planned.iter().any(eligible) {
        return planned;
    }
    let mut out = Vec::with_capacity(planned.len() * 3);
    let mut mantled: BTreeSet<(&str, &str)> = BTreeSet::new();
    for c in planned.iter().filter(|c| eligible(c)) {
        out.push(c.on(Surface::RuntimeMessages, c.target.clone()));
        let region = c.target.endpoint_region.as_str();
        let base = c
            .target
            .base_model_id
            .as_deref()
            .filter(|_| c.target.kind != TargetKind::OnDemand)
            .unwrap_or(&c.target.model_id);
        if allows(region)
            && mantle(&c.account, region, base)
            && mantled.insert((c.account.as_str(), region))
        {
            let target = Target {
                model_id: base.to_string(),
                kind: TargetKind::Mantle,
                prefix: None,
                base_model_id: Some(base.to_string()),
                destinations: BTreeSet::from([region.to_string()]),
                capacity_tpm: None,
                ..c.target.clone()
            };
            out.push(c.on(Surface::MantleMessages, target));
        }
    }
    out.extend(planned);
    out
}

/// The guardrail stage's filter: a model that maps Bedrock guardrails (by
/// region, `mapped`) is called only in regions where one is mapped, and never
/// through a provider (which has none) or Mantle, exactly as a region outside the
/// policy is not called. Candidates of models that map none are kept.
/// Returns each (model, region, guardrail) the remaining candidates use.
pub fn keep_guardrailed<'g, G: Clone + 'g>(
    candidates: &mut Vec<Candidate>,
    mapped: impl Fn(&str) -> Option<&'g std::collections::BTreeMap<String, G>>,
) -> Vec<(String, String, G)> {
    let mut used: Vec<(String, String, G)> = Vec::new();
    candidates.retain(|c| {
        let Some(map) = mapped(&c.model) else {
            return true;
        };
        // Guardrails are applied by Bedrock Runtime; a provider has none,
        // and Mantle is not where they are mapped.
        if matches!(c.target.kind, TargetKind::Provider | TargetKind::Mantle) {
            return false;
        }
        let Some(g) = map.get(&c.target.endpoint_region) else {
            return false;
        };
        if !used
            .iter()
            .any(|(m, r, _)| *m == c.model && *r == c.target.endpoint_region)
        {
            used.push((c.model.clone(), c.target.endpoint_region.clone(), g.clone()));
        }
        true
    });
    used
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use meridian_catalog::TargetKind;

    use super::*;
    use crate::key::Surface;

    struct Acct(&'static str, &'static [&'static str]);

    impl Account for Acct {
        fn name(&self) -> &str {
            self.0
        }
        fn serves(&self, region: &str) -> bool {
            self.1.is_empty() || self.1.contains(&region)
        }
    }

    fn target(region: &str, model: &str, kind: TargetKind) -> Target {
        Target {
            endpoint_region: region.into(),
            model_id: model.into(),
            kind,
            prefix: None,
            base_model_id: None,
            destinations: BTreeSet::from([region.to_string()]),
            price: None,
            confirmed: true,
            distance_km: 0,
            capacity_tpm: None,
        }
    }

    fn summary(c: &[Candidate]) -> Vec<String> {
        c.iter()
            .map(|c| {
                let k = c.key().key();
                format!(
                    "{} {} {} {} {}",
                    c.tier,
                    k.account,
                    k.region,
                    k.surface.name(),
                    k.tier.map_or("-", ServiceTier::name)
                )
            })
            .collect()
    }

    /// Residency is the catalog's resolution; planning never widens it:
    /// every candidate calls one of the targets it was given.
    #[test]
    fn planning_never_adds_a_target() {
        let given = [
            target("eu-west-1", "eu.m", TargetKind::GeoProfile),
            target("eu-central-1", "eu.m", TargetKind::GeoProfile),
            target("eu-west-3", "byo", TargetKind::Provider),
        ];
        let accounts = [
            Acct("main", &[]),
            Acct("eu", &["eu-west-1"]),
            Acct("us", &["us-east-1"]),
        ];
        for mode in [Accounts::Tiered, Accounts::Pooled] {
            for tiers in [
                &[None][..],
                &[Some(ServiceTier::Flex), Some(ServiceTier::Default)],
            ] {
                let c = candidates(
                    [("chat", &given[..])],
                    &accounts,
                    mode,
                    tiers,
                    |_, t| (t.kind == TargetKind::Provider).then_some("byo"),
                    || true,
                );
                assert!(!c.is_empty());
                for c in &c {
                    assert!(given.contains(&c.target), "{:?} was not given", c.target);
                    assert_ne!(
                        &*c.key().key().account,
                        "us",
                        "an account outside its regions"
                    );
                }
            }
        }
    }

    #[test]
    fn a_model_with_guardrails_is_called_only_where_one_is_mapped() {
        let t = [
            target("us-east-1", "us.m", TargetKind::GeoProfile),
            target("us-west-2", "us.m", TargetKind::GeoProfile),
            target("eu-west-3", "byo", TargetKind::Provider),
        ];
        let other = [target("us-west-2", "small", TargetKind::OnDemand)];
        let mut c = candidates(
            [("chat", &t[..]), ("small", &other[..])],
            &[Acct("main", &[])],
            Accounts::Pooled,
            &[None],
            |_, t| (t.kind == TargetKind::Provider).then_some("byo"),
            || true,
        );
        let guarded = std::collections::BTreeMap::from([("us-west-2".to_string(), "g1:3")]);
        let used = keep_guardrailed(&mut c, |m| (m == "chat").then_some(&guarded));
        assert_eq!(
            summary(&c),
            ["0 main us-west-2 runtime -", "1 main us-west-2 runtime -"],
            "chat only where its guardrail is, never through the provider; small untouched"
        );
        assert_eq!(
            used,
            [("chat".to_string(), "us-west-2".to_string(), "g1:3")]
        );
    }

    #[test]
    fn accounts_are_kept_to_their_regions_and_tiered_accounts_come_after() {
        let primary = [
            target("us-east-1", "m", TargetKind::OnDemand),
            target("us-west-2", "m", TargetKind::OnDemand),
        ];
        let accounts = [Acct("main", &[]), Acct("backup", &["us-west-2"])];
        let c = candidates(
            [("chat", &primary[..])],
            &accounts,
            Accounts::Tiered,
            &[None],
            |_, _| None,
            || unreachable!("no provider target"),
        );
        assert_eq!(
            summary(&c),
            [
                "0 main us-east-1 runtime -",
                "0 main us-west-2 runtime -",
                "1 backup us-west-2 runtime -"
            ]
        );
        let pooled = candidates(
            [("chat", &primary[..])],
            &accounts,
            Accounts::Pooled,
            &[None],
            |_, _| None,
            || true,
        );
        assert!(pooled.iter().all(|c| c.tier == 0));
    }

    #[test]
    fn service_tiers_are_candidates_of_their_own_tried_in_order() {
        let t = [target("us-east-1", "m", TargetKind::OnDemand)];
        let c = candidates(
            [("chat", &t[..])],
            &[Acct("main", &[])],
            Accounts::Tiered,
            &[Some(ServiceTier::Flex), Some(ServiceTier::Default)],
            |_, _| None,
            || true,
        );
        assert_eq!(
            summary(&c),
            [
                "0 main us-east-1 runtime flex",
                "1 main us-east-1 runtime default"
            ]
        );
        assert_ne!(c[0].key(), c[1].key(), "a tier has its own breaker");
    }

    #[test]
    fn fallback_models_come_after_every_candidate_of_the_models_before() {
        let primary = [target("us-east-1", "big", TargetKind::OnDemand)];
        let fallback = [target("us-west-2", "small", TargetKind::OnDemand)];
        let accounts = [Acct("main", &[]), Acct("backup", &[])];
        let c = candidates(
            [("chat", &primary[..]), ("small", &fallback[..])],
            &accounts,
            Accounts::Tiered,
            &[Some(ServiceTier::Flex), Some(ServiceTier::Default)],
            |_, _| None,
            || true,
        );
        let last_primary = c.iter().filter(|c| c.model == "chat").map(|c| c.tier).max();
        let first_fallback = c
            .iter()
            .filter(|c| c.model == "small")
            .map(|c| c.tier)
            .min();
        assert_eq!((last_primary, first_fallback), (Some(3), Some(4)));
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn a_provider_target_is_one_candidate_of_the_provider_when_it_can_serve() {
        let t = [
            target("us-east-1", "m", TargetKind::OnDemand),
            target("eu-west-1", "local-llm", TargetKind::Provider),
        ];
        let provider = |_: &str, t: &Target| (t.kind == TargetKind::Provider).then_some("vllm");
        let mut asked = 0;
        let c = candidates(
            [("chat", &t[..])],
            &[Acct("main", &[]), Acct("backup", &[])],
            Accounts::Pooled,
            &[Some(ServiceTier::Flex)],
            provider,
            || {
                asked += 1;
                true
            },
        );
        assert_eq!(asked, 1);
        assert_eq!(
            summary(&c),
            [
                "0 main us-east-1 runtime flex",
                "0 backup us-east-1 runtime flex",
                "0 vllm eu-west-1 provider -"
            ]
        );
        assert_eq!(c[2].key().key().surface, Surface::Provider);
        let without = candidates(
            [("chat", &t[..])],
            &[Acct("main", &[])],
            Accounts::Pooled,
            &[None],
            provider,
            || false,
        );
        assert_eq!(summary(&without), ["0 main us-east-1 runtime -"]);
    }

    /// An Anthropic Messages request: runtime Messages before each runtime
    /// candidate's InvokeModel twin, Mantle in the called region only where
    /// the policy admits that region and the account calls Mantle there, and
    /// nothing for a tier, an ARN target or a model not on those surfaces.
    #[test]
    fn messages_surfaces_precede_the_runtime_and_stay_inside_the_policy() {
        let mut jp = target("ap-northeast-1", "jp.anthropic.m", TargetKind::GeoProfile);
        jp.base_model_id = Some("anthropic.m".into());
        jp.destinations = BTreeSet::from(["ap-northeast-1".into(), "ap-northeast-3".into()]);
        let mut global = target("us-east-1", "global.anthropic.m", TargetKind::GlobalProfile);
        global.base_model_id = Some("anthropic.m".into());
        let legacy = target("us-west-2", "anthropic.old-v1:0", TargetKind::OnDemand);
        let app = target(
            "ap-northeast-1",
            "arn:aws:bedrock:app",
            TargetKind::AppProfile,
        );
        let planned: Vec<Candidate> = [jp, global, legacy, app]
            .into_iter()
            .map(|t| Candidate::new("main".into(), 0, "m".into(), t, None))
            .collect();
        let native = |c: &Candidate| !c.target.model_id.contains("old");
        // Mantle in Tokyo and Virginia; the policy admits Tokyo only.
        let mantle = |_: &str, r: &str, id: &str| {
            (r == "ap-northeast-1" || r == "us-east-1") && id == "anthropic.m"
        };
        let allows = |r: &str| r.starts_with("ap-");
        let c = with_messages_surfaces(planned.clone(), native, mantle, allows);
        let got: Vec<String> = c
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c.surface.name(),
                    c.target.endpoint_region,
                    c.target.model_id
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "runtime-messages ap-northeast-1 jp.anthropic.m",
                "mantle-messages ap-northeast-1 anthropic.m",
                "runtime-messages us-east-1 global.anthropic.m",
                "runtime ap-northeast-1 jp.anthropic.m",
                "runtime us-east-1 global.anthropic.m",
                "runtime us-west-2 anthropic.old-v1:0",
                "runtime ap-northeast-1 arn:aws:bedrock:app",
            ]
        );
        // Mantle processes where it is called, nowhere else.
        assert_eq!(
            c[1].target.destinations,
            BTreeSet::from(["ap-northeast-1".to_string()])
        );
        // Each surface has its own breaker and quota key.
        assert_ne!(c[0].key(), c[3].key());
        // A model on no native surface: the plan is unchanged.
        let none = with_messages_surfaces(planned.clone(), |_| false, mantle, allows);
        assert_eq!(none, planned);
        // A service tier stays on the runtime.
        let tiered: Vec<Candidate> = planned
            .iter()
            .map(|c| {
                Candidate::new(
                    "main".into(),
                    0,
                    "m".into(),
                    c.target.clone(),
                    Some(ServiceTier::Flex),
                )
            })
            .collect();
        assert_eq!(
            with_messages_surfaces(tiered.clone(), native, mantle, allows),
            tiered
        );
    }
}
