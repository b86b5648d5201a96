//! Bedrock control-plane shapes (ListInferenceProfiles, ListFoundationModels),
//! built from plain values so the fleet and the gateway can both describe
//! what they serve.

use serde_json::{Value, json};

/// An `InferenceProfileSummary`.
pub fn profile_summary(
    id: &str,
    arn: &str,
    name: &str,
    kind: &str,
    model_arns: &[String],
    description: &str,
) -> Value {
    json!({
        "inferenceProfileName": name,
        "description": description,
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:00Z",
        "inferenceProfileArn": arn,
        "inferenceProfileId": id,
        "models": model_arns.iter().map(|a| json!({"modelArn": a})).collect::<Vec<_>>(),
        "status": "ACTIVE",
        "type": kind,
    })
}

/// A `FoundationModelSummary`.
#[allow(clippy::too_many_arguments)] // mirrors the service shape field by field
pub fn model_summary(
    arn: &str,
    id: &str,
    name: &str,
    provider: &str,
    input: &[String],
    output: &[String],
    streaming: bool,
    inference_types: &[&str],
    legacy: bool,
) -> Value {
    let upper = |v: &[String]| v.iter().map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>();
    json!({
        "modelArn": arn,
        "modelId": id,
        "modelName": name,
        "providerName": provider,
        "inputModalities": upper(input),
        "outputModalities": upper(output),
        "responseStreamingSupported": streaming,
        "customizationsSupported": [],
        "inferenceTypesSupported": inference_types,
        "modelLifecycle": {"status": if legacy { "LEGACY" } else { "ACTIVE" }},
    })
}

/// Pages `items`: `nextToken` is the decimal offset of the next page.
pub fn page(
    items: Vec<Value>,
    max_results: Option<usize>,
    next_token: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let start = next_token
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(items.len());
    let size = max_results.unwrap_or(1000).clamp(1, 1000);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (items[start..end].to_vec(), next)
}

/// Reads one parameter from a raw query string (percent-decoded).
pub fn query_param(raw_query: &str, name: &str) -> Option<String> {
    raw_query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| crate::operation::decode_label(v).unwrap_or_else(|_| v.to_string()))
    })
}

/// Answers a control-plane read from the summaries a server describes itself
/// with: type filter and paging for profiles, lookup by ID or ARN, provider
/// filter for models. `missing(what, id)` words the not-found message.
pub fn answer(
    op: &crate::Operation,
    query: &str,
    profiles: Vec<Value>,
    models: Vec<Value>,
    missing: impl Fn(&str, &str) -> String,
) -> Result<Value, crate::BedrockError> {
    use crate::{BedrockError, ErrorKind, Operation};
    let not_found =
        |what: &str, id: &str| BedrockError::new(ErrorKind::ResourceNotFound, missing(what, id));
    match op {
        Operation::ListInferenceProfiles => {
            let kind = query_param(query, "type");
            let all: Vec<Value> = profiles
                .into_iter()
                .filter(|p| kind.as_deref().is_none_or(|k| p["type"] == k))
                .collect();
            let max = query_param(query, "maxResults").and_then(|m| m.parse().ok());
            let (items, next) = page(all, max, query_param(query, "nextToken").as_deref());
            let mut v = json!({"inferenceProfileSummaries": items});
            if let Some(n) = next {
                v["nextToken"] = json!(n);
            }
            Ok(v)
        }
        Operation::GetInferenceProfile { id } => profiles
            .into_iter()
            .find(|p| {
                p["inferenceProfileId"] == id.as_str() || p["inferenceProfileArn"] == id.as_str()
            })
            .ok_or_else(|| not_found("profile", id)),
        Operation::ListFoundationModels => {
            let provider = query_param(query, "byProvider");
            let models: Vec<Value> = models
                .into_iter()
                .filter(|m| {
                    provider.as_deref().is_none_or(|p| {
                        m["providerName"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(p))
                    })
                })
                .collect();
            Ok(json!({"modelSummaries": models}))
        }
        Operation::GetFoundationModel { id } => models
            .into_iter()
            .find(|m| m["modelId"] == id.as_str() || m["modelArn"] == id.as_str())
            .map(|m| json!({"modelDetails": m}))
            .ok_or_else(|| not_found("model", id)),
        _ => Err(BedrockError::new(ErrorKind::UnknownOperation, op.name())),
    }
}

/// A catalog model's `FoundationModelSummary` as seen from `region`.
pub fn catalog_model_summary(m: &meridian_catalog::Model, region: &str) -> Value {
    let types: &[&str] = if m.on_demand.iter().any(|r| r == region) {
        &["ON_DEMAND"]
    } else {
        &["INFERENCE_PROFILE"]
    };
    model_summary(
        &meridian_catalog::arn::foundation_model_arn(region, &m.id),
        &m.id,
        &m.name,
        &m.provider,
        &m.input,
        &m.output,
        m.streaming,
        types,
        m.lifecycle == meridian_catalog::Lifecycle::Legacy,
    )
}

/// An application inference profile's summary.
pub fn app_profile_summary(p: &meridian_catalog::AppProfile, description: &str) -> Value {
    let arns: Vec<String> = p
        .destinations
        .iter()
        .map(|d| meridian_catalog::arn::foundation_model_arn(d, &p.model_id))
        .collect();
    let id = p.arn.rsplit('/').next().unwrap_or_default();
    profile_summary(id, &p.arn, id, "APPLICATION", &arns, description)
}
