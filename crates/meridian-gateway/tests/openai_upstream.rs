//! The OpenAI-compatible upstream client against a real OpenAI-compatible
//! server (Meridian's own /v1, backed by the simulated fleet): answers in
//! Converse shape, and every failure classified as for Bedrock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::time::Duration;

use meridian_sim::{FaultSet, Fleet};
use meridian_upstream::openai_compat::OpenAiClient;
use meridian_upstream::{Outcome, Timeouts};
use serde_json::json;

mod common;

use common::US as REGIONS;
use meridian_router::health::Health;

async fn setup() -> (Fleet, String) {
    let fleet = common::us_fleet().await;
    let url = common::gateway(&fleet, Health::default()).await + "/v1";
    (fleet, url)
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(500),
        first_byte: Duration::from_millis(800),
        idle: Duration::from_millis(500),
    }
}

fn ask(text: &str) -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": [{"text": text}]}], "inferenceConfig": {"maxTokens": 40}})
}

#[tokio::test]
async fn answers_in_converse_shape() {
    let (_fleet, url) = setup().await;
    let c = OpenAiClient::new(&url, Some("key".into()), timeouts());
    let r = c.converse("chat", &ask("compat hello")).await.unwrap();
    let text = r["output"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("You said: compat hello"), "{r}");
    assert_eq!(r["stopReason"], "end_turn");
    assert_eq!(
        r["usage"]["outputTokens"].as_u64().unwrap(),
        text.split(' ').count() as u64
    );

    let mut body = ask("use w for the weather");
    body["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]});
    let r = c.converse("chat", &body).await.unwrap();
    assert_eq!(r["stopReason"], "tool_use");
    let tool = r["output"]["message"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("toolUse"))
        .unwrap();
    assert_eq!(tool["input"], json!({"city": "sim-city"}));

    let mut s = c
        .converse_stream("chat", &ask("compat stream"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    let mut text = String::new();
    while let Some((kind, p)) = s.next_event().await.unwrap() {
        if let Some(t) = p["delta"]["text"].as_str() {
            text.push_str(t);
        }
        kinds.push(kind);
    }
    assert_eq!(kinds.first(), Some(&"messageStart"));
    assert_eq!(
        &kinds[kinds.len() - 3..],
        &["contentBlockStop", "messageStop", "metadata"]
    );
    assert!(text.contains("You said: compat stream"));
}

#[tokio::test]
async fn failures_are_classified() {
    let (fleet, url) = setup().await;
    let c = OpenAiClient::new(&url, None, timeouts());
    let set = |f: FaultSet| {
        REGIONS.iter().for_each(|r| {
            fleet.set_faults(r, f.clone());
        })
    };
    set(FaultSet {
        quota_factor: 0.0,
        ..FaultSet::default()
    });
    assert!(matches!(
        c.converse("chat", &ask("x")).await.unwrap_err().outcome,
        Outcome::Throttled { .. }
    ));
    set(FaultSet {
        error_rate: 1.0,
        error_status: 503,
        ..FaultSet::default()
    });
    assert_eq!(
        c.converse("chat", &ask("x")).await.unwrap_err().outcome,
        Outcome::Unavailable { status: 503 }
    );
    set(FaultSet {
        stall_ms: Some(3000),
        ..FaultSet::default()
    });
    assert_eq!(
        c.converse("chat", &ask("x")).await.unwrap_err().outcome,
        Outcome::TimeoutBeforeFirstByte
    );
    set(FaultSet::default());
    assert_eq!(
        c.converse("no-such-model", &ask("x"))
            .await
            .unwrap_err()
            .outcome,
        Outcome::NotFound
    );
    assert_eq!(
        c.converse("chat", &json!({"messages": []}))
            .await
            .unwrap_err()
            .outcome,
        Outcome::Validation
    );
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = OpenAiClient::new(&format!("http://{closed}/v1"), None, timeouts());
    assert_eq!(
        gone.converse("chat", &ask("x")).await.unwrap_err().outcome,
        Outcome::ConnectionRefused
    );
}
