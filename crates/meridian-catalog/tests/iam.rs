//! The generated IAM policy must allow the foundation model in every
//! destination region of every profile Meridian may call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use meridian_catalog::arn::foundation_model_arn;
use meridian_catalog::iam::policy_document;
use meridian_catalog::{Catalog, Policy, Resolver, TargetKind};

#[test]
fn every_destination_region_is_allowed() {
    let c = Catalog::builtin().unwrap();
    let res = Resolver::new(&c, &[]);
    for src in [
        "us-east-1",
        "eu-west-3",
        "ap-northeast-1",
        "ca-central-1",
        "us-gov-west-1",
    ] {
        let mut targets = Vec::new();
        for m in c.models() {
            if let Ok(r) = res.resolve(&m.alias, src, &Policy::unrestricted()) {
                targets.extend(r.targets);
            }
        }
        assert!(!targets.is_empty(), "{src}");
        let doc = policy_document(&targets, "123456789012");
        let text = serde_json::to_string(&doc).unwrap();
        let stmts = doc["Statement"].as_array().unwrap();
        let resources: Vec<&str> = stmts
            .iter()
            .flat_map(|s| match &s["Resource"] {
                serde_json::Value::Array(a) => {
                    a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>()
                }
                v => v.as_str().into_iter().collect(),
            })
            .collect();
        for t in &targets {
            let base = t.base_model_id.as_ref().unwrap();
            // The profile itself (or the in-region model for on-demand targets).
            if t.kind == TargetKind::OnDemand {
                assert!(
                    resources.contains(&foundation_model_arn(&t.endpoint_region, base).as_str())
                );
            } else {
                let profile = format!(
                    "arn:{}:bedrock:{}:123456789012:inference-profile/{}",
                    if t.endpoint_region.starts_with("us-gov") {
                        "aws-us-gov"
                    } else {
                        "aws"
                    },
                    t.endpoint_region,
                    t.model_id
                );
                assert!(
                    resources.contains(&profile.as_str()),
                    "{src}: missing {profile}"
                );
            }
            // The foundation model in every destination region, checked against the catalog.
            let route_sets: Vec<_> = c
                .model_by_id(base)
                .unwrap()
                .routes
                .iter()
                .filter_map(|id| c.route(id))
                .filter(|r| Some(&r.prefix) == t.prefix.as_ref())
                .filter_map(|r| r.destinations(&t.endpoint_region))
                .collect();
            for set in route_sets {
                for region in set {
                    let arn = foundation_model_arn(region, base);
                    assert!(
                        resources.contains(&arn.as_str()),
                        "{src}: {} needs {arn}",
                        t.model_id
                    );
                }
            }
        }
        for action in [
            "bedrock:InvokeModel",
            "bedrock:InvokeModelWithResponseStream",
            "bedrock:GetInferenceProfile",
            "bedrock:ListInferenceProfiles",
            "bedrock:ListFoundationModels",
        ] {
            assert!(text.contains(action), "{action}");
        }
        assert_eq!(doc["Version"], "2012-10-17");
    }
}

#[test]
fn global_profiles_add_the_region_less_model_arn() {
    let c = Catalog::builtin().unwrap();
    let r = Resolver::new(&c, &[])
        .resolve("claude-sonnet-4-5", "ca-central-1", &Policy::unrestricted())
        .unwrap();
    let doc = policy_document(&r.targets[..1], "*");
    let text = serde_json::to_string(&doc).unwrap();
    assert!(
        text.contains(
            "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"
        )
    );
    assert!(text.contains("\"aws:RequestedRegion\":\"unspecified\""));
    assert!(text.contains("arn:aws:bedrock:ca-central-1:*:inference-profile/global.anthropic"));
}
