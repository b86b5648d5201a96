//! Routing through the gateway against the simulated fleet: fallback chains
//! inside the policy, accounts as passive backups, the geo strategy, the
//! per-request deadline, hedging a stalled region, and the route header.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use meridian_router::health::{Health, Verdict};
use meridian_router::{KeyId, Surface};
use meridian_sim::FaultSet;
use serde_json::Value;

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn converse(base: &str, model: &str, headers: &[(&str, &str)]) -> Answer {
    let body = r#"{"messages":[{"role":"user","content":[{"text":"route me"}]}],"inferenceConfig":{"maxTokens":8}}"#;
    let url = format!("{base}/model/{model}/converse");
    let r = common::send("POST", &url, body, headers).await;
    Answer {
        status: r.status,
        body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        headers: r.headers,
    }
}

const FALLBACK: &str = r#"
region = "us-east-1"
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"
fallback = ["small"]

[models.small]
model = "claude-3-haiku"
residency = ["us-west-2"]
"#;

#[tokio::test]
async fn a_fallback_model_serves_when_every_primary_candidate_is_out_and_stays_inside_both_policies()
 {
    let fleet = common::us_fleet().await;
    let (gw, state) = common::gateway_with(&fleet, FALLBACK, Health::default()).await;
    let a = converse(&gw, "chat", &[]).await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("x-meridian-route")
            .starts_with("first:us-east-1:success")
    );
    let last = fleet.records().pop().unwrap();
    assert!(
        last.model_id.contains("claude-sonnet-4-5"),
        "{}",
        last.model_id
    );

    // Open the breaker of every claude-sonnet-4-5 candidate.
    let plan_keys: Vec<KeyId> = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
        .iter()
        .map(|r| {
            KeyId::intern(
                "default",
                r,
                Surface::Runtime,
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                None,
            )
        })
        .collect();
    for k in &plan_keys {
        for _ in 0..5 {
            state.router.health.record(*k, Verdict::Unhealthy);
        }
    }
    let a = converse(&gw, "chat", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let last = fleet.records().pop().unwrap();
    assert!(
        last.model_id.contains("claude-3-haiku"),
        "{}",
        last.model_id
    );
    // `small` allows only us-west-2; `chat` allows the US: the intersection.
    assert_eq!(last.endpoint_region, "us-west-2");
    assert_eq!(last.inference_region.as_deref(), Some("us-west-2"));
    assert_eq!(a.header("x-meridian-region"), "us-west-2");
}

const ACCOUNTS: &str = r#"
region = "us-east-1"
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[[upstream.accounts]]
name = "main"
regions = ["us-east-1"]

[[upstream.accounts]]
name = "backup"
"#;

#[tokio::test]
async fn a_second_account_is_a_passive_backup() {
    let fleet = common::us_fleet().await;
    let (gw, _state) = common::gateway_with(&fleet, ACCOUNTS, Health::default()).await;
    for _ in 0..3 {
        let a = converse(&gw, "chat", &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-meridian-account"), "main");
    }
    fleet.set_faults(
        "us-east-1",
        FaultSet {
            outage: true,
            ..FaultSet::default()
        },
    );
    let a = converse(&gw, "chat", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-meridian-account"), "backup");
    assert_eq!(
        a.header("x-meridian-route"),
        "first:us-east-1:connection_refused,retry:us-east-2:success"
    );
}

const GEO: &str = r#"
region = "us-east-1"
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"
strategy = "geo"
"#;

#[tokio::test]
async fn geo_calls_the_region_nearest_the_caller() {
    let fleet = common::us_fleet().await;
    let (gw, _state) = common::gateway_with(&fleet, GEO, Health::default()).await;
    let a = converse(&gw, "chat", &[]).await;
    assert_eq!(a.header("x-meridian-route"), "first:us-east-1:success");
    let a = converse(&gw, "chat", &[("x-meridian-caller-region", "us-west-1")]).await;
    assert_eq!(a.header("x-meridian-route"), "first:us-west-1:success");
    // Oregon is nearer Tokyo than Virginia is.
    let a = converse(
        &gw,
        "chat",
        &[("x-meridian-caller-region", "ap-northeast-1")],
    )
    .await;
    assert_eq!(a.header("x-meridian-route"), "first:us-west-2:success");
    let a = converse(&gw, "chat", &[("x-meridian-caller-region", "mars-1")]).await;
    assert_eq!(a.status, 400);
    assert!(a.body["message"].as_str().unwrap().contains("mars-1"));
}

#[tokio::test]
async fn the_deadline_header_bounds_every_attempt() {
    let fleet = common::us_fleet().await;
    let toml = "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[routing]\nhedging = false\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n";
    let (gw, _state) = common::gateway_with(&fleet, toml, Health::default()).await;
    for r in common::US {
        fleet.set_faults(
            r,
            FaultSet {
                stall_ms: Some(5_000),
                ..FaultSet::default()
            },
        );
    }
    let a = converse(&gw, "chat", &[("x-meridian-deadline-ms", "300")]).await;
    assert_eq!(a.status, 503);
    assert!(
        a.header("x-amzn-errortype")
            .starts_with("ServiceUnavailableException")
    );
    let msg = a.body["message"].as_str().unwrap();
    assert!(msg.contains("the 300 ms deadline passed"), "{msg}");
    assert!(msg.contains("residency policy 'us'"), "{msg}");
    assert!(a.header("x-meridian-route").ends_with(":cancelled"));
    let a = converse(&gw, "chat", &[("x-meridian-deadline-ms", "soon")]).await;
    assert_eq!(a.status, 400);
    assert!(
        a.header("x-amzn-errortype")
            .starts_with("ValidationException")
    );
}

#[tokio::test]
async fn a_stalled_region_is_hedged_and_losing_to_hedges_opens_its_breaker() {
    let fleet = common::us_fleet().await;
    // On-demand in-region, so the region called is the region that stalls.
    let (gw, state) = common::gateway_with(
        &fleet,
        "region = \"us-east-1\"\ndefault_residency = [\"us-east-1\", \"us-west-2\"]\n[models.chat]\nmodel = \"claude-3-haiku\"\n",
        Health::default(),
    )
    .await;
    // 25 quick answers from us-east-1 give it a p95 time to first byte.
    for _ in 0..25 {
        let a = converse(&gw, "chat", &[]).await;
        assert_eq!(a.status, 200);
        assert!(a.header("x-meridian-route").starts_with("first:us-east-1:"));
    }
    fleet.set_faults(
        "us-east-1",
        FaultSet {
            stall_ms: Some(2_000),
            ..FaultSet::default()
        },
    );
    // Each request: us-east-1 stalls, a hedge on the next region answers and
    // wins, and the stalled attempt is recorded as slow.
    let mut hedged = 0;
    for _ in 0..5 {
        let a = converse(&gw, "chat", &[]).await;
        assert_eq!(a.status, 200);
        let route = a.header("x-meridian-route");
        if route == "first:us-east-1:slow,hedge:us-west-2:success" {
            assert_eq!(a.header("x-meridian-attempts"), "2");
            assert_eq!(a.header("x-meridian-region"), "us-west-2");
            hedged += 1;
        }
    }
    assert_eq!(hedged, 5, "every request hedged while us-east-1 stalls");
    // Five losses in a row open us-east-1's breaker: the next request goes
    // straight to another region, without waiting for a hedge.
    let key = state
        .router
        .views()
        .into_iter()
        .find(|v| &*v.key.account == "default" && &*v.key.region == "us-east-1")
        .unwrap()
        .id;
    assert_eq!(
        state.router.health.state(key),
        meridian_router::breaker::State::Open
    );
    let a = converse(&gw, "chat", &[]).await;
    assert_eq!(a.header("x-meridian-attempts"), "1");
    assert_eq!(a.header("x-meridian-route"), "first:us-west-2:success");
}
