//! Breakers in the gateway's attempt loop: after enough failures an endpoint
//! in outage is skipped (one attempt instead of two), and it is probed again
//! once its cool-down ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::Duration;

use meridian_router::breaker::BreakerConfig;
use meridian_router::budget::BudgetConfig;
use meridian_router::health::Health;
use meridian_sim::FaultSet;
use meridian_upstream::{BedrockClient, Call, Timeouts};

#[tokio::test]
async fn an_endpoint_in_outage_is_skipped_then_probed_again() {
    let fleet = common::us_fleet().await;
    let breaker = BreakerConfig {
        failures_to_open: 3,
        open_for: Duration::from_millis(300),
        ..BreakerConfig::default()
    };
    let gw = common::gateway(&fleet, Health::new(breaker, BudgetConfig::default())).await;
    let client = BedrockClient::with_static_keys(
        "AKID",
        "secret",
        [("us-east-1".to_string(), gw.clone())].into(),
        Timeouts::default(),
    );
    let call = Call {
        region: "us-east-1".into(),
        model_id: "chat".into(),
        action: meridian_wire::Action::Converse,
        route: meridian_upstream::Route::Model,
        body: bytes::Bytes::from(
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5}}"#,
        ),
        headers: Vec::new(),
    };
    let attempts = |r: &meridian_upstream::Response| {
        r.headers["x-meridian-attempts"]
            .to_str()
            .unwrap()
            .to_string()
    };

    fleet.set_faults(
        "us-east-1",
        FaultSet {
            outage: true,
            ..FaultSet::default()
        },
    );
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(attempts(&client.call(&call).await.unwrap()));
    }
    assert_eq!(
        seen,
        ["2", "2", "2", "1", "1"],
        "three failures open the breaker; then us-east-1 is skipped"
    );

    let status: serde_json::Value = {
        let r = client.get("us-east-1", "/status").await.unwrap();
        serde_json::from_slice(&r.collect().await.unwrap()).unwrap()
    };
    let open = open_breakers(&status);
    assert_eq!(open.len(), 1);
    assert!(
        open[0]["target"]
            .as_str()
            .unwrap()
            .starts_with("default|us-east-1|runtime|us.")
    );

    // The endpoint recovers; after the cool-down a probe goes there and succeeds.
    fleet.set_faults("us-east-1", FaultSet::default());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = client.call(&call).await.unwrap();
    assert_eq!(attempts(&r), "1");
    // The outage refused connections, so any us-east-1 record is the probe.
    let probes = fleet
        .records()
        .iter()
        .filter(|x| x.endpoint_region == "us-east-1")
        .count();
    assert_eq!(probes, 1, "the probe reached us-east-1 again");
}

const FLEX: &str = r#"
region = "us-east-1"

[models.chat]
model = "nova-lite"
residency = ["us-east-1"]
service_tiers = ["flex"]
"#;

/// A breaker opened on a service-tier candidate is the candidate's own:
/// `/ready` counts it as unhealthy and `/status` names it with its tier.
#[tokio::test]
async fn an_open_breaker_on_a_flex_candidate_shows_in_ready_and_status() {
    let fleet = common::us_fleet().await;
    let (gw, state) = common::gateway_with(&fleet, FLEX, Health::default()).await;
    let r = common::send("GET", &format!("{gw}/ready"), "", &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = common::send(
        "POST",
        &format!("{gw}/model/chat/converse"),
        r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5}}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let flex: Vec<_> = state
        .router
        .views()
        .into_iter()
        .filter(|v| v.key.tier == Some(meridian_catalog::ServiceTier::Flex))
        .collect();
    assert_eq!(flex.len(), 1, "one flex candidate was called");
    for _ in 0..5 {
        state
            .router
            .health
            .record(flex[0].id, meridian_router::health::Verdict::Unhealthy);
    }
    let r = common::send("GET", &format!("{gw}/ready"), "", &[]).await;
    let ready: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(r.status, 503, "{ready}");
    assert_eq!(ready["models"][0]["healthy"], 0, "{ready}");

    // `/status` names the open breaker with its tier; the metric's labels
    // carry the tier apart from the model ID.
    let r = common::send("GET", &format!("{gw}/status"), "", &[]).await;
    let status: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let open = open_breakers(&status);
    assert_eq!(open.len(), 1, "{}", status["breakers"]);
    assert_eq!(open[0]["tier"], "flex");
    assert_eq!(open[0]["surface"], "runtime");
    assert_eq!(open[0]["region"], "us-east-1");
    assert!(!open[0]["model"].as_str().unwrap().contains('|'));
    let r = common::send("GET", &format!("{gw}/metrics"), "", &[]).await;
    let text = String::from_utf8_lossy(&r.body);
    let line = text
        .lines()
        .find(|l| l.starts_with("meridian_breaker_state{") && l.contains("tier=\"flex\""))
        .unwrap_or_else(|| panic!("no flex breaker gauge in {text}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(!line.contains('|'), "{line}");
}

/// The breakers `/status` lists as open.
fn open_breakers(status: &serde_json::Value) -> Vec<&serde_json::Value> {
    status["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "open")
        .collect()
}
