//! Bedrock's native Messages surfaces as upstreams: an Anthropic request to
//! a Claude model of the Messages generation goes to runtime Messages
//! first, fails over to Mantle in the same region and then to other
//! regions inside the policy, and the answer, the fleet's records and the
//! invocation record name the surface that served it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

mod common;

use meridian_sim::{FaultSet, Fleet};
use std::path::Path;

const CONFIG: &str = r#"
region = "us-east-1"
default_residency = ["us"]
[models.claude]
model = "claude-opus-4-7"
[models.sonnet]
model = "claude-sonnet-4-5"
"#;

const PLAIN: &str =
    r#"{"model":"claude","max_tokens":20,"messages":[{"role":"user","content":"hello"}]}"#;
const STREAM: &str = r#"{"model":"claude","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

async fn record(log: &Path, request_id: &str) -> serde_json::Value {
    common::record(log, request_id)
        .await
        .unwrap_or_else(|| panic!("no invocation record for {request_id}"))
}

/// A US fleet and a gateway in front of it logging to a file in `dir`.
async fn start(dir: &Path) -> (Fleet, String, std::path::PathBuf) {
    let fleet = common::us_fleet().await;
    let log = dir.join("invocations.jsonl");
    let gw = common::gateway_logging(&fleet, CONFIG, &log).await;
    (fleet, gw, log)
}

/// The fleet's record of the attempt that answered `upstream_id`.
fn fleet_record(fleet: &Fleet, upstream_id: &str) -> meridian_sim::Record {
    fleet
        .records()
        .into_iter()
        .find(|r| r.request_id == upstream_id)
        .unwrap_or_else(|| panic!("the fleet has no record {upstream_id}"))
}

fn down(surfaces: &[&str]) -> FaultSet {
    FaultSet {
        surfaces_down: surfaces.iter().map(|s| s.to_string()).collect(),
        ..FaultSet::default()
    }
}

#[tokio::test]
async fn anthropic_requests_use_the_native_surfaces_and_fail_over_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, gw, log) = start(dir.path()).await;
    let url = format!("{gw}/v1/messages");
    let json = [("content-type", "application/json")];

    // Healthy: runtime Messages in the nearest region, no translation.
    let r = common::send("POST", &url, PLAIN, &json).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-meridian-surface"), "runtime-messages");
    let up = fleet_record(&fleet, r.header("x-meridian-upstream-request-id"));
    assert_eq!(up.operation, "RuntimeMessages");
    assert_eq!(up.endpoint_region, "us-east-1");
    let rec = record(&log, r.header("x-amzn-requestid")).await;
    assert_eq!(rec["meridian"]["surface"], "runtime-messages", "{rec}");

    // Runtime Messages down in us-east-1: Mantle in us-east-1 answers,
    // with the base model ID, processed there.
    assert!(fleet.set_faults("us-east-1", down(&["runtime-messages"])));
    let r = common::send("POST", &url, PLAIN, &json).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-meridian-surface"), "mantle-messages");
    let up = fleet_record(&fleet, r.header("x-meridian-upstream-request-id"));
    assert_eq!(up.operation, "MantleMessages");
    assert_eq!(up.model_id, "anthropic.claude-opus-4-7");
    assert_eq!(up.endpoint_region, "us-east-1");
    assert_eq!(up.inference_region.as_deref(), Some("us-east-1"));
    let rec = record(&log, r.header("x-amzn-requestid")).await;
    assert_eq!(rec["meridian"]["surface"], "mantle-messages", "{rec}");
    let tried: Vec<&str> = rec["meridian"]["decision"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["surface"].as_str().unwrap())
        .collect();
    assert_eq!(tried, ["runtime-messages", "mantle-messages"], "{rec}");

    // Streaming takes the same way and arrives as Anthropic's events.
    let r = common::send("POST", &url, STREAM, &json).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-meridian-surface"), "mantle-messages");
    let text = String::from_utf8_lossy(&r.body);
    for event in [
        "message_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(text.contains(&format!("event: {event}\n")), "{text}");
    }
    let rec = record(&log, r.header("x-amzn-requestid")).await;
    assert!(
        rec["output"]["outputTokenCount"].as_u64().unwrap() > 0,
        "usage read from the SSE stream: {rec}"
    );

    // Both native surfaces down in us-east-1: another US region's runtime
    // Messages, inside the policy.
    assert!(fleet.set_faults("us-east-1", down(&["runtime-messages", "mantle-messages"])));
    let r = common::send("POST", &url, PLAIN, &json).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-meridian-surface"), "runtime-messages");
    let up = fleet_record(&fleet, r.header("x-meridian-upstream-request-id"));
    assert_ne!(up.endpoint_region, "us-east-1");
    assert!(up.inference_region.unwrap().starts_with("us-"));

    // A Converse client of the same model is not moved: Converse surface.
    let r = common::send(
        "POST",
        &format!("{gw}/model/claude/converse"),
        r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5}}"#,
        &json,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-meridian-surface"), "runtime");
    fleet.shutdown().await;
}

#[tokio::test]
async fn legacy_models_stay_on_invoke_and_a_failure_stays_inside_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, gw, _log) = start(dir.path()).await;
    let url = format!("{gw}/v1/messages");
    let json = [("content-type", "application/json")];

    // An ARN-versioned (legacy) Claude model is not on the native surfaces.
    let legacy =
        r#"{"model":"sonnet","max_tokens":20,"messages":[{"role":"user","content":"hello"}]}"#;
    let r = common::send("POST", &url, legacy, &json).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-meridian-surface"), "runtime");

    // Every surface of every US region down: the request fails (Anthropic's
    // 529, overloaded) inside the policy; no attempt went anywhere else.
    for r in common::US {
        assert!(fleet.set_faults(r, down(&["runtime", "runtime-messages", "mantle-messages"])));
    }
    let us = [
        ("content-type", "application/json"),
        ("x-meridian-residency", "us"),
    ];
    let r = common::send("POST", &url, PLAIN, &us).await;
    assert_eq!(r.status, 529, "{}", String::from_utf8_lossy(&r.body));
    let records = fleet.records();
    assert!(!records.is_empty());
    for rec in records {
        assert!(rec.endpoint_region.starts_with("us-"), "{rec:?}");
    }
    fleet.shutdown().await;
}
