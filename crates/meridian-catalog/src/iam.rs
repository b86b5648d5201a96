//! Least-privilege IAM policies for the targets Meridian will call.
//!
//! Calling an inference profile needs permission on the profile *and* on the
//! foundation model in every region the profile may route to; missing one
//! destination region is the most common cross-region failure. Converse and
//! ConverseStream are governed by InvokeModel and InvokeModelWithResponseStream.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::arn::{foundation_model_arn, inference_profile_arn, partition_of};
use crate::resolve::{Target, TargetKind};

/// Actions that govern every runtime call Meridian makes.
pub const INVOKE_ACTIONS: [&str; 2] = [
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
];

/// Actions the background catalog refresh needs.
pub const CATALOG_ACTIONS: [&str; 3] = [
    "bedrock:GetInferenceProfile",
    "bedrock:ListInferenceProfiles",
    "bedrock:ListFoundationModels",
];

/// The resource ARNs a set of targets needs, split by statement.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Inference-profile, application-profile and other passed-through ARNs.
    pub profiles: BTreeSet<String>,
    /// Foundation-model ARNs, one per destination region.
    pub foundation_models: BTreeSet<String>,
    /// Region-less foundation-model ARNs that `global.` profiles need.
    pub global_models: BTreeSet<String>,
}

/// Collects the ARNs `targets` need. `account` fills the account field of
/// profile ARNs (`*` when unknown).
pub fn resources(targets: &[Target], account: &str) -> Resources {
    let mut r = Resources::default();
    for t in targets {
        match t.kind {
            TargetKind::GeoProfile | TargetKind::GlobalProfile => {
                if t.model_id.starts_with("arn:") {
                    r.profiles.insert(t.model_id.clone());
                } else {
                    r.profiles.insert(inference_profile_arn(
                        &t.endpoint_region,
                        account,
                        &t.model_id,
                    ));
                }
            }
            TargetKind::AppProfile | TargetKind::PassThrough => {
                r.profiles.insert(t.model_id.clone());
            }
            // Invoking provisioned throughput needs the provisioned-model
            // ARN only; it never reaches a foundation model elsewhere.
            TargetKind::Provisioned => {
                r.profiles.insert(t.model_id.clone());
                continue;
            }
            // Not Bedrock: nothing for IAM to allow.
            TargetKind::Provider => continue,
            // Mantle's IAM actions are not Bedrock Runtime's; the foundation
            // model below is what it may reach.
            TargetKind::OnDemand | TargetKind::Mantle => {}
        }
        let Some(base) = &t.base_model_id else {
            continue;
        };
        for region in &t.destinations {
            r.foundation_models
                .insert(foundation_model_arn(region, base));
        }
        if t.kind == TargetKind::GlobalProfile {
            r.global_models.insert(format!(
                "arn:{}:bedrock:::foundation-model/{base}",
                partition_of(&t.endpoint_region)
            ));
        }
    }
    r
}

/// An IAM policy document allowing exactly what `targets` need, plus catalog refresh.
pub fn policy_document(targets: &[Target], account: &str) -> Value {
    let r = resources(targets, account);
    let mut statements = Vec::new();
    if !r.profiles.is_empty() {
        statements.push(json!({
            "Sid": "InvokeInferenceProfiles",
            "Effect": "Allow",
            "Action": INVOKE_ACTIONS,
            "Resource": r.profiles,
        }));
    }
    if !r.foundation_models.is_empty() {
        statements.push(json!({
            "Sid": "InvokeFoundationModelsInDestinationRegions",
            "Effect": "Allow",
            "Action": INVOKE_ACTIONS,
            "Resource": r.foundation_models,
        }));
    }
    if !r.global_models.is_empty() {
        // Global profiles route to "unspecified" regions; AWS asks for the
        // region-less model ARN under this condition (and SCPs must allow it).
        statements.push(json!({
            "Sid": "InvokeFoundationModelsViaGlobalProfiles",
            "Effect": "Allow",
            "Action": INVOKE_ACTIONS,
            "Resource": r.global_models,
            "Condition": {"StringEquals": {"aws:RequestedRegion": "unspecified"}},
        }));
    }
    statements.push(json!({
        "Sid": "RefreshCatalog",
        "Effect": "Allow",
        "Action": CATALOG_ACTIONS,
        "Resource": "*",
    }));
    json!({"Version": "2012-10-17", "Statement": statements})
}
