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
