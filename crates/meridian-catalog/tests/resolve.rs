//! Resolution as an operator sees it: which target comes first, from where.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use meridian_catalog::resolve::ResolveError;
use meridian_catalog::{AppProfile, Catalog, Policy, Resolver, TargetKind};

fn catalog() -> Catalog {
    Catalog::builtin().expect("built-in catalog is valid")
}

fn policy(c: &Catalog, allow: &[&str]) -> Policy {
    Policy::from_terms("test", c, allow, &[]).expect("valid terms")
}

#[test]
fn paris_prefers_the_eu_profile() {
    let c = catalog();
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "eu-west-3", &Policy::unrestricted())
        .unwrap();
    let first = &r.targets[0];
    assert_eq!(
        first.model_id,
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    assert_eq!(first.endpoint_region, "eu-west-3");
    assert_eq!(first.kind, TargetKind::GeoProfile);
    assert!(first.destinations.iter().all(|d| d.starts_with("eu-")));
    // Geo profiles of 4.5-era models cost 1.1x global.
    assert_eq!(first.price.unwrap().input_per_mtok, 3.3);
}

#[test]
fn eu_only_never_lists_global() {
    let c = catalog();
    let p = policy(&c, &["eu"]);
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "eu-west-3", &p)
        .unwrap();
    assert!(!r.targets.is_empty());
    for t in &r.targets {
        assert!(!t.model_id.starts_with("global."), "{t:?}");
        assert!(t.regions_touched().all(|d| d.starts_with("eu-")), "{t:?}");
    }
    assert!(
        r.rejected
            .iter()
            .any(|x| x.target.kind == TargetKind::GlobalProfile)
    );
}

#[test]
fn us_east_1_prefers_the_us_profile() {
    let c = catalog();
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "us-east-1", &Policy::unrestricted())
        .unwrap();
    assert!(
        r.targets[0].model_id.starts_with("us."),
        "{:?}",
        r.targets[0]
    );
    assert_eq!(r.targets[0].endpoint_region, "us-east-1");
}

#[test]
fn tokyo_prefers_the_jp_profile() {
    let c = catalog();
    for model in ["claude-sonnet-4-5", "claude-haiku-4-5"] {
        let r = Resolver::new(&c, &[])
            .resolve(model, "ap-northeast-1", &Policy::unrestricted())
            .unwrap();
        assert!(
            r.targets[0].model_id.starts_with("jp."),
            "{model}: {:?}",
            r.targets[0]
        );
        assert_eq!(
            r.targets[0]
                .destinations
                .iter()
                .cloned()
                .collect::<Vec<_>>(),
            ["ap-northeast-1", "ap-northeast-3"]
        );
    }
}

#[test]
fn canada_falls_back_to_global_and_errors_when_pinned() {
    let c = catalog();
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "ca-central-1", &Policy::unrestricted())
        .unwrap();
    assert!(
        r.targets[0].model_id.starts_with("global."),
        "{:?}",
        r.targets[0]
    );
    assert_eq!(r.targets[0].endpoint_region, "ca-central-1");

    let pinned = policy(&c, &["ca-central-1"]);
    let err = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "ca-central-1", &pinned)
        .unwrap_err();
    let ResolveError::NoTarget {
        rejected, policy, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(policy.contains("test"));
    assert!(
        rejected
            .iter()
            .any(|r| r.target.model_id.starts_with("global."))
    );
    assert!(err.to_string().contains("outside the policy"), "{err}");
}

#[test]
fn on_demand_models_stay_in_region_and_come_after_geo_profiles() {
    let c = catalog();
    let r = Resolver::new(&c, &[])
        .resolve("claude-3-haiku", "eu-west-3", &Policy::unrestricted())
        .unwrap();
    assert!(r.targets[0].model_id.starts_with("eu."));
    let od = &r.targets[1];
    assert_eq!(od.kind, TargetKind::OnDemand);
    assert_eq!(od.model_id, "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(od.destinations.iter().collect::<Vec<_>>(), ["eu-west-3"]);
}

#[test]
fn remote_targets_follow_local_ones_nearest_first() {
    let c = catalog();
    // Meridian in us-east-1 serving an EU-only tenant calls the EU profile from an EU region.
    let p = policy(&c, &["eu"]);
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "us-east-1", &p)
        .unwrap();
    assert!(r.targets.iter().all(|t| !t.is_local()));
    assert!(r.targets[0].model_id.starts_with("eu."));
    assert!(r.targets[0].endpoint_region.starts_with("eu-"));
    // GovCloud is another partition: never a candidate from a commercial region.
    let open = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "us-east-1", &Policy::unrestricted())
        .unwrap();
    assert!(
        open.targets
            .iter()
            .all(|t| !t.endpoint_region.starts_with("us-gov"))
    );
    let distances: Vec<u32> = open.targets.iter().map(|t| t.distance_km).collect();
    let mut sorted = distances.clone();
    sorted.sort();
    assert_eq!(distances, sorted);
}

#[test]
fn raw_ids_and_arns_pass_through_but_are_checked() {
    let c = catalog();
    let eu = policy(&c, &["eu"]);
    let res = Resolver::new(&c, &[]);
    let r = res
        .resolve(
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu-west-1",
            &eu,
        )
        .unwrap();
    assert_eq!(
        r.targets[0].model_id,
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    // A profile that processes outside the policy is never called: the same
    // model is served on its targets inside the policy, and the record of the
    // decision names the profile that was refused.
    let moved = res
        .resolve(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us-east-1",
            &eu,
        )
        .unwrap();
    assert!(!moved.targets.is_empty());
    for t in &moved.targets {
        assert!(t.model_id.starts_with("eu."), "{}", t.model_id);
        assert!(t.regions_touched().all(|r| r.starts_with("eu-")), "{t:?}");
    }
    assert!(
        moved
            .rejected
            .iter()
            .any(|r| format!("{r:?}").contains("us.anthropic.claude-sonnet-4-5")),
        "{:?}",
        moved.rejected
    );
    // A profile of a model the catalog does not know stays refused.
    assert!(
        res.resolve("us.anthropic.claude-unknown-9", "us-east-1", &eu)
            .is_err()
    );
    let arn = "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0";
    let err = res.resolve(arn, "eu-west-1", &eu).unwrap_err();
    assert!(matches!(err, ResolveError::NoTarget { .. }), "{err}");
    let ok = res
        .resolve(arn, "eu-west-1", &Policy::unrestricted())
        .unwrap();
    assert_eq!(ok.targets[0].endpoint_region, "us-west-2");
    assert_eq!(ok.targets[0].model_id, arn);
}

#[test]
fn application_profiles_come_from_config() {
    let c = catalog();
    let arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123def456";
    let res = Resolver::new(&c, &[]);
    assert!(matches!(
        res.resolve(arn, "eu-west-1", &Policy::unrestricted()),
        Err(ResolveError::UnknownAppProfile { .. })
    ));
    let profiles = [AppProfile {
        arn: arn.into(),
        region: "eu-west-1".into(),
        model_id: "anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
        destinations: ["eu-west-1".to_string(), "eu-central-1".to_string()].into(),
    }];
    let res = Resolver::new(&c, &profiles);
    let r = res.resolve(arn, "eu-west-3", &policy(&c, &["eu"])).unwrap();
    assert_eq!(r.targets[0].kind, TargetKind::AppProfile);
    assert!(
        res.resolve(arn, "eu-west-3", &policy(&c, &["eu-west-1"]))
            .is_err()
    );
}

#[test]
fn bad_input_names_what_is_valid() {
    let c = catalog();
    let res = Resolver::new(&c, &[]);
    let err = res
        .resolve("claude-sonet-4-5", "us-east-1", &Policy::unrestricted())
        .unwrap_err();
    let ResolveError::UnknownModel { suggestions, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(suggestions[0], "claude-sonnet-4-5");
    let err = res
        .resolve("claude-sonnet-4-5", "mars-north-1", &Policy::unrestricted())
        .unwrap_err();
    assert!(err.to_string().contains("eu-west-3"), "{err}");
    let err = Policy::from_terms("p", &c, &["europe"], &[]).unwrap_err();
    assert!(err.to_string().contains("eu"), "{err}");
}

#[test]
fn auckland_au_profile_leaves_australia() {
    let c = catalog();
    let au = policy(&c, &["au"]);
    // From Auckland the au. set includes Auckland itself, so an Australia-only
    // policy must call the profile from an Australian region instead.
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "ap-southeast-6", &au)
        .unwrap();
    let t = &r.targets[0];
    assert!(t.model_id.starts_with("au."));
    assert_ne!(t.endpoint_region, "ap-southeast-6");
    assert!(
        t.regions_touched()
            .all(|d| d == "ap-southeast-2" || d == "ap-southeast-4")
    );
}

#[test]
fn anthropic_api_names_resolve_to_their_models() {
    let c = catalog();
    for (name, alias) in [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-6", "claude-opus-4-6"),
    ] {
        assert_eq!(
            c.model(name).map(|m| m.alias.as_str()),
            Some(alias),
            "{name}"
        );
        let r = Resolver::new(&c, &[])
            .resolve(name, "us-east-1", &Policy::unrestricted())
            .unwrap();
        assert!(!r.targets.is_empty(), "{name}");
    }
    assert!(c.model("claude-sonnet-4-5-2025").is_none());
    assert!(
        c.model("nova-pro-v1").is_none(),
        "only Anthropic's naming rule is known"
    );
}

#[test]
fn discovered_facts_tighten_residency_and_add_profiles() {
    use meridian_catalog::discovered::Discovered;
    use std::sync::Arc;

    let c = catalog();
    let eu = policy(&c, &["eu"]);
    let before = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "eu-west-1", &eu)
        .unwrap();
    let eu_profile = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0";
    assert!(before.targets.iter().any(|t| t.model_id == eu_profile));

    let summary = |id: &str, base: &str, dests: &[&str]| {
        let models: Vec<_> = dests
            .iter()
            .map(|d| serde_json::json!({"modelArn": format!("arn:aws:bedrock:{d}::foundation-model/{base}")}))
            .collect();
        serde_json::json!({"inferenceProfileId": id, "type": "SYSTEM_DEFINED", "models": models})
    };
    let mut found = Discovered::default();
    let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    let mut widened: Vec<String> = c
        .compiled_destinations(eu_profile, "eu-west-1")
        .unwrap()
        .into_iter()
        .collect();
    widened.push("us-east-1".into());
    let widened: Vec<&str> = widened.iter().map(String::as_str).collect();
    found.add_region(
        "eu-west-1",
        &[
            summary(eu_profile, sonnet, &widened),
            summary(
                "eu.anthropic.claude-opus-4-7-v1",
                "anthropic.claude-opus-4-7-v1",
                &["eu-west-1", "eu-central-1"],
            ),
        ],
    );
    let c2 = c.with_discovered(Arc::new(found));
    let after = Resolver::new(&c2, &[])
        .resolve("claude-sonnet-4-5", "eu-west-1", &eu)
        .unwrap();
    assert!(
        !after
            .targets
            .iter()
            .any(|t| t.endpoint_region == "eu-west-1" && t.model_id == eu_profile),
        "the widened profile left the EU policy's candidates"
    );
    assert!(
        after
            .rejected
            .iter()
            .any(|r| r.outside.iter().any(|o| o == "us-east-1"))
    );
    // Unrestricted, it is still a target, with the wider set.
    let open = Resolver::new(&c2, &[])
        .resolve(eu_profile, "eu-west-1", &Policy::unrestricted())
        .unwrap();
    assert!(open.targets[0].destinations.contains("us-east-1") && open.targets[0].confirmed);

    // A profile only the refresh knows becomes callable, with its own set.
    let added = Resolver::new(&c2, &[])
        .resolve("eu.anthropic.claude-opus-4-7-v1", "eu-west-1", &eu)
        .unwrap();
    let t = &added.targets[0];
    assert_eq!(t.endpoint_region, "eu-west-1");
    assert_eq!(
        t.destinations
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["eu-central-1", "eu-west-1"]
    );
    assert!(
        Resolver::new(&c, &[])
            .resolve("eu.anthropic.claude-opus-4-7-v1", "eu-west-1", &eu)
            .map(|r| r.targets[0].destinations.len() > 2)
            .unwrap_or(true),
        "without the refresh, the widest eu set is assumed"
    );
}

#[test]
fn a_model_found_on_demand_in_a_region_becomes_callable_there() {
    use meridian_catalog::discovered::{Discovered, Kind, Verdict, diff};
    use std::sync::Arc;

    let c = catalog();
    let haiku = "anthropic.claude-3-haiku-20240307-v1:0";
    let here = policy(&c, &["eu-north-1"]);
    assert!(
        Resolver::new(&c, &[])
            .resolve("claude-3-haiku", "eu-north-1", &here)
            .is_err(),
        "the compiled catalog has no in-region claude-3-haiku in eu-north-1"
    );
    let mut found = Discovered::default();
    found.add_models(
        "eu-north-1",
        &[serde_json::json!({"modelId": haiku, "inferenceTypesSupported": ["ON_DEMAND"]})],
    );
    let findings = diff(&c, &[], &found);
    let f = findings
        .iter()
        .find(|f| f.kind == Kind::OnDemand && f.profile == haiku)
        .unwrap();
    assert_eq!(f.verdict, Verdict::Added);
    let c2 = c.with_discovered(Arc::new(found));
    let r = Resolver::new(&c2, &[])
        .resolve("claude-3-haiku", "eu-north-1", &here)
        .unwrap();
    let t = &r.targets[0];
    assert_eq!(
        (t.endpoint_region.as_str(), t.kind),
        ("eu-north-1", TargetKind::OnDemand)
    );
    assert!(t.confirmed);
}

#[test]
fn every_compiled_model_cites_its_source_and_date() {
    let c = catalog();
    assert!(c.models().len() >= 28, "{}", c.models().len());
    for m in c.models() {
        assert!(m.source.len() > 20, "{} cites no source", m.alias);
        let d = m.checked.as_bytes();
        assert!(
            d.len() == 10
                && d[4] == b'-'
                && d[7] == b'-'
                && m.checked
                    .replace('-', "")
                    .bytes()
                    .all(|b| b.is_ascii_digit()),
            "{}: checked = {:?} is not YYYY-MM-DD",
            m.alias,
            m.checked
        );
    }
}

#[test]
fn newer_models_resolve_where_their_sources_place_them() {
    let c = catalog();
    let unrestricted = Policy::unrestricted();
    // Opus 4.7 is profile-only; from Frankfurt an EU policy gets the eu. profile.
    let eu = policy(&c, &["eu"]);
    let r = Resolver::new(&c, &[])
        .resolve("claude-opus-4-7", "eu-central-1", &eu)
        .unwrap();
    assert_eq!(r.targets[0].model_id, "eu.anthropic.claude-opus-4-7");
    assert!(r.targets.iter().all(|t| t.kind != TargetKind::OnDemand));
    // gpt-oss is on demand in us-west-2, called there from us-east-1.
    let r = Resolver::new(&c, &[])
        .resolve("gpt-oss-120b", "us-east-1", &unrestricted)
        .unwrap();
    assert!(
        r.targets
            .iter()
            .any(|t| t.model_id == "openai.gpt-oss-120b-1:0" && t.endpoint_region == "us-west-2")
    );
    // DeepSeek V3.2 from Stockholm: the eu. profile, then on demand in
    // Stockholm, nothing outside the EU.
    let r = Resolver::new(&c, &[])
        .resolve("deepseek-v3-2", "eu-north-1", &eu)
        .unwrap();
    assert_eq!(r.targets[0].endpoint_region, "eu-north-1");
    assert!(
        r.targets
            .iter()
            .any(|t| t.model_id == "deepseek.v3.2" && t.endpoint_region == "eu-north-1")
    );
    assert!(
        r.targets
            .iter()
            .all(|t| t.destinations.iter().all(|d| d.starts_with("eu-")))
    );
}

#[test]
fn a_model_bedrock_lists_that_the_catalog_lacks_is_servable_under_all_its_names() {
    use meridian_catalog::discovered::Discovered;
    use std::sync::Arc;

    let c = catalog();
    let new = "anthropic.claude-opus-6";
    let res = Resolver::new(&c, &[]);
    assert!(
        res.resolve("claude-opus-6", "us-east-1", &Policy::unrestricted())
            .is_err()
    );

    // One refresh: ListFoundationModels lists it (profiles only), and its
    // us. and eu. profiles are listed from where they are called.
    let mut found = Discovered::default();
    for region in ["us-east-1", "eu-west-1"] {
        found.add_models(
            region,
            &[serde_json::json!({"modelId": new, "modelName": "Claude Opus 6", "providerName": "Anthropic",
                "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"],
                "responseStreamingSupported": true, "inferenceTypesSupported": ["INFERENCE_PROFILE"]})],
        );
    }
    let profile = |id: &str, dests: &[&str]| {
        let models: Vec<serde_json::Value> = dests
            .iter()
            .map(|d| serde_json::json!({"modelArn": format!("arn:aws:bedrock:{d}::foundation-model/{new}")}))
            .collect();
        serde_json::json!({"inferenceProfileId": id, "type": "SYSTEM_DEFINED", "models": models})
    };
    found.add_region(
        "us-east-1",
        &[profile(
            "us.anthropic.claude-opus-6",
            &["us-east-1", "us-east-2", "us-west-2"],
        )],
    );
    found.add_region(
        "eu-west-1",
        &[profile(
            "eu.anthropic.claude-opus-6",
            &["eu-west-1", "eu-west-3", "eu-central-1"],
        )],
    );
    let c2 = c.with_discovered(Arc::new(found));
    let m = c2
        .model("claude-opus-6")
        .expect("named by Anthropic's rule");
    assert_eq!((m.id.as_str(), m.name.as_str()), (new, "Claude Opus 6"));
    assert!(
        m.price.for_prefix("us").is_none(),
        "an unknown price is unknown, not zero"
    );
    assert!(m.source.starts_with("discovered"), "{}", m.source);

    let res = Resolver::new(&c2, &[]);
    // The Anthropic name, the base (Mantle) ID and the profile ID all name it.
    for name in ["claude-opus-6", new, "us.anthropic.claude-opus-6"] {
        let r = res
            .resolve(name, "us-east-1", &Policy::unrestricted())
            .unwrap();
        assert_eq!(
            r.targets[0].model_id, "us.anthropic.claude-opus-6",
            "{name}"
        );
        assert!(r.targets[0].price.is_none());
        assert!(r.targets[0].confirmed);
    }
    // Residency from its profiles' destination sets, as for any model.
    let eu = policy(&c2, &["eu"]);
    let r = res.resolve("claude-opus-6", "us-east-1", &eu).unwrap();
    for t in &r.targets {
        assert!(t.regions_touched().all(|x| x.starts_with("eu-")), "{t:?}");
    }
    let us = policy(&c2, &["us"]);
    assert!(
        res.resolve("eu.anthropic.claude-opus-6", "eu-west-1", &us)
            .unwrap()
            .targets
            .iter()
            .all(|t| t.model_id.starts_with("us."))
    );
    // The compiled entry wins over a listing of the same ID.
    let mut again = Discovered::default();
    again.add_models(
        "us-east-1",
        &[serde_json::json!({"modelId": "anthropic.claude-opus-5-5", "modelName": "x", "inferenceTypesSupported": ["INFERENCE_PROFILE"]})],
    );
    let c3 = c.with_discovered(Arc::new(again));
    assert_eq!(c3.model("claude-opus-5-5").unwrap().name, "Claude Opus 5.5");
    assert_eq!(c3.models().len(), c.models().len());
}
