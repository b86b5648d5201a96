//! Tenants with the memory backend: identification by key, the model
//! allow-list, rate limits with `Retry-After` and `x-ratelimit-*` headers,
//! tokens reserved and settled, requests in flight, and budgets, on the
//! Bedrock path and on `/v1` in each one's error shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use meridian_gateway::keys;
use meridian_router::health::Health;
use meridian_sim::FaultSet;
use serde_json::Value;

const CONVERSE: &str = r#"{"messages":[{"role":"user","content":[{"text":"tenant"}]}],"inferenceConfig":{"maxTokens":8}}"#;
const BIG: &str = r#"{"messages":[{"role":"user","content":[{"text":"tenant"}]}],"inferenceConfig":{"maxTokens":900}}"#;
const CHAT: &str =
    r#"{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"tenant"}]}"#;

fn key(n: u8) -> String {
    format!("mk-test-tenant-key-{n:02}-0123456789")
}

fn config() -> String {
    let h = |n| keys::hash_text(&keys::hash(&key(n)));
    format!(
        r#"
region = "us-east-1"
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[models.small]
model = "claude-3-haiku"

[tenants.rate]
api_keys = ["{}"]
models = ["chat"]
requests_per_minute = 60

[tenants.tokens]
api_keys = ["{}"]
tokens_per_minute = 600

[tenants.budget]
api_keys = ["{}"]
budget_usd_per_day = 0.000001

[tenants.busy]
api_keys = ["{}"]
max_concurrent = 1
"#,
        h(1),
        h(2),
        h(3),
        h(4)
    )
}

async fn converse(gw: &str, key: &str, body: &'static str) -> common::Reply {
    let auth = format!("Bearer {key}");
    common::send(
        "POST",
        &format!("{gw}/model/chat/converse"),
        body,
        &[("authorization", &auth)],
    )
    .await
}

fn message(r: &common::Reply) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["message"]
        .as_str()
        .or(v["error"]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_identified_and_held_to_their_limits() {
    let fleet = common::us_fleet().await;
    let (gw, _state) = common::gateway_with(&fleet, &config(), Health::default()).await;

    // Unknown key: refused before anything else.
    let r = converse(&gw, "mk-nobody-has-this-key-0000", CONVERSE).await;
    assert_eq!(r.status, 403, "{}", message(&r));
    assert!(
        r.header("x-amzn-errortype")
            .starts_with("AccessDeniedException")
    );

    // Model allow-list.
    let auth = format!("Bearer {}", key(1));
    let r = common::send(
        "POST",
        &format!("{gw}/model/small/converse"),
        CONVERSE,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 403, "{}", message(&r));
    assert!(
        message(&r).contains("may not call 'small'"),
        "{}",
        message(&r)
    );

    // 60 per minute with one second's burst: two at once, then a throttle.
    let a = converse(&gw, &key(1), CONVERSE).await;
    assert_eq!(a.status, 200, "{}", message(&a));
    assert_eq!(a.header("x-ratelimit-limit-requests"), "60");
    let b = converse(&gw, &key(1), CONVERSE).await;
    assert_eq!(b.status, 200, "{}", message(&b));
    let c = converse(&gw, &key(1), CONVERSE).await;
    assert_eq!(c.status, 429, "{}", message(&c));
    assert!(
        c.header("x-amzn-errortype")
            .starts_with("ThrottlingException")
    );
    assert_eq!(c.header("retry-after"), "1");
    assert_eq!(c.header("x-ratelimit-remaining-requests"), "0");
    assert!(
        message(&c).contains("60 requests per minute"),
        "{}",
        message(&c)
    );
    // The same tenant on /v1: OpenAI's shape, same limit.
    let r = common::send(
        "POST",
        &format!("{gw}/v1/chat/completions"),
        CHAT,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 429);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(r.header("retry-after"), "1");

    // Tokens: 900 max tokens reserve more than a second's 10-token burst;
    // the first is admitted (and settled with its real, smaller usage), the
    // next waits for the debt.
    let t1 = converse(&gw, &key(2), BIG).await;
    assert_eq!(t1.status, 200, "{}", message(&t1));
    assert_eq!(t1.header("x-ratelimit-limit-tokens"), "600");
    let t2 = converse(&gw, &key(2), BIG).await;
    assert_eq!(t2.status, 429, "{}", message(&t2));
    assert!(
        message(&t2).contains("600 tokens per minute"),
        "{}",
        message(&t2)
    );
    let retry: u64 = t2.header("retry-after").parse().unwrap();
    assert!((1..=95).contains(&retry), "{retry}");

    // Budget: the first request spends more than a millionth of a dollar.
    let first = converse(&gw, &key(3), CONVERSE).await;
    assert_eq!(first.status, 200, "{}", message(&first));
    let spent = converse(&gw, &key(3), CONVERSE).await;
    assert_eq!(spent.status, 400, "{}", message(&spent));
    assert!(
        spent
            .header("x-amzn-errortype")
            .starts_with("ServiceQuotaExceededException")
    );
    let m = message(&spent);
    assert!(
        m.contains("daily budget of tenant 'budget'") && m.contains("resets at"),
        "{m}"
    );
    let auth3 = format!("Bearer {}", key(3));
    let r = common::send(
        "POST",
        &format!("{gw}/v1/chat/completions"),
        CHAT,
        &[("authorization", &auth3)],
    )
    .await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (r.status, v["error"]["code"].as_str()),
        (429, Some("insufficient_quota")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_per_tenant() {
    let fleet = common::us_fleet().await;
    let (gw, state) = common::gateway_with(&fleet, &config(), Health::default()).await;
    for r in common::US {
        fleet.set_faults(
            r,
            FaultSet {
                stall_ms: Some(1_000),
                ..FaultSet::default()
            },
        );
    }
    let slow = {
        let gw = gw.clone();
        tokio::spawn(async move { converse(&gw, &key(4), CONVERSE).await.status })
    };
    // Wait until the first request was admitted and its attempt is upstream.
    let upstream = || state.router.views().iter().any(|v| v.in_flight > 0);
    for _ in 0..200 {
        if upstream() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(upstream(), "the first request never reached the fleet");
    let second = converse(&gw, &key(4), CONVERSE).await;
    assert_eq!(second.status, 429, "{}", message(&second));
    assert!(
        message(&second).contains("1 requests in flight"),
        "{}",
        message(&second)
    );
    assert_eq!(slow.await.unwrap(), 200);
    // The first one's lease ended with it.
    for r in common::US {
        fleet.set_faults(r, FaultSet::default());
    }
    assert_eq!(converse(&gw, &key(4), CONVERSE).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_metric_label_is_opt_in() {
    let fleet = common::us_fleet().await;
    for (opt_in, want) in [(false, false), (true, true)] {
        let toml = format!("{}\n[metrics]\ntenant_label = {opt_in}\n", config());
        let (gw, _) = common::gateway_with(&fleet, &toml, Health::default()).await;
        assert_eq!(converse(&gw, &key(3), CONVERSE).await.status, 200);
        let m = common::send("GET", &format!("{gw}/metrics"), "", &[]).await;
        let text = String::from_utf8_lossy(&m.body).into_owned();
        let labelled = text
            .lines()
            .any(|l| l.starts_with("meridian_requests_total{") && l.contains("tenant=\"budget\""));
        assert_eq!(labelled, want, "tenant_label = {opt_in}:\n{text}");
    }
}
