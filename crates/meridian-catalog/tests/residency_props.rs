//! Property: whatever the policy, source region and model, no allowed target
//! may touch a region outside the policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use meridian_catalog::{Catalog, Policy, Resolver};
use proptest::prelude::*;

fn terms(c: &Catalog) -> Vec<String> {
    let mut t: Vec<String> = c.groups().into_iter().map(str::to_string).collect();
    t.extend(c.regions().iter().map(|r| r.code.clone()));
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn no_target_leaves_the_policy(
        allow_idx in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
        exclude_idx in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
        extra_idx in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
        src_idx in any::<proptest::sample::Index>(),
        model_idx in any::<proptest::sample::Index>(),
        profile_form in any::<bool>(),
    ) {
        let c = Catalog::builtin().unwrap();
        let all = terms(&c);
        let allow: Vec<&str> = allow_idx.iter().map(|i| all[i.index(all.len())].as_str()).collect();
        let exclude: Vec<&str> = exclude_idx.iter().map(|i| all[i.index(all.len())].as_str()).collect();
        let extra: Vec<&str> = extra_idx.iter().map(|i| all[i.index(all.len())].as_str()).collect();
        // Policies only narrow: check against the intersection of two.
        let policy = Policy::from_terms("a", &c, &allow, &exclude).unwrap()
            .intersect(&Policy::from_terms("b", &c, &extra, &[]).unwrap());
        let src = &c.regions()[src_idx.index(c.regions().len())].code;
        let model = &c.models()[model_idx.index(c.models().len())];
        let requested = if profile_form {
            // A raw profile ID for one of the model's prefixes, when it has one.
            model.routes.first().and_then(|r| c.route(r)).map(|r| format!("{}.{}", r.prefix, model.id))
                .unwrap_or_else(|| model.id.clone())
        } else {
            model.alias.clone()
        };
        let resolver = Resolver::new(&c, &[]);
        // The oracle: the targets the model has from `src` with no policy
        // that fit inside this one. A policy only takes targets away, so
        // when one of them fits, refusing the request is wrong.
        let inside: Vec<String> = resolver
            .resolve(&requested, src, &Policy::unrestricted())
            .map(|r| r.targets)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.regions_touched().all(|r| policy.allows(r)))
            .map(|t| t.model_id)
            .collect();
        match resolver.resolve(&requested, src, &policy) {
            Ok(res) => {
                prop_assert!(!res.targets.is_empty());
                for t in &res.targets {
                    for region in t.regions_touched() {
                        prop_assert!(policy.allows(region), "{} touches {} outside {:?}", t.model_id, region, policy);
                        prop_assert!(!policy.exclude.contains(region));
                        if let Some(a) = &policy.allow { prop_assert!(a.contains(region)); }
                    }
                }
            }
            // Refusing is right only when no target fits the policy: a
            // resolver that failed where it must not fails the property.
            Err(e) => {
                prop_assert!(inside.is_empty(), "{requested} from {src} refused ({e}) though {inside:?} fit {policy:?}");
                // And every target it names as rejected really touches a
                // region the policy does not allow.
                if let meridian_catalog::resolve::ResolveError::NoTarget { rejected, .. } = &e {
                    for r in rejected {
                        prop_assert!(!r.outside.is_empty());
                        prop_assert!(r.outside.iter().all(|x| !policy.allows(x)), "{r:?} rejected under {policy:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn intersection_only_narrows() {
    let c = Catalog::builtin().unwrap();
    let eu = Policy::from_terms("eu", &c, &["eu"], &["eu-west-2"]).unwrap();
    let paris = Policy::from_terms("paris", &c, &["eu-west-3", "us-east-1"], &[]).unwrap();
    let both = eu.intersect(&paris);
    assert!(both.allows("eu-west-3"));
    assert!(!both.allows("us-east-1"));
    assert!(!both.allows("eu-west-2"));
    assert!(!both.allows("eu-west-1"));
    assert_eq!(Policy::unrestricted().intersect(&eu), eu);
}
