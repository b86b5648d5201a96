//! Tenant limits and issued keys shared by replicas through a real
//! `redis-server` (started here on a free port), and what replicas do when
//! it goes away and comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::process::Stdio;
use std::time::Duration;

use meridian_gateway::keys;
use meridian_router::health::Health;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const CONVERSE: &str = r#"{"messages":[{"role":"user","content":[{"text":"shared"}]}],"inferenceConfig":{"maxTokens":8}}"#;
const ADMIN_KEY: &str = "mk-admin-shared-state-test-0001";
const TENANT_KEY: &str = "mk-tenant-shared-state-test-0001";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` on `port`, persisting nothing; killed when dropped.
async fn redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed (scripts/test installs it)");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("redis-server did not start on {port}");
}

fn config(port: u16, on_unavailable: &str) -> String {
    format!(
        r#"
region = "us-east-1"
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[tenants.team]
api_keys = ["{}"]
requests_per_minute = 60

[tenants.other]
api_keys = ["{}"]

[state]
backend = "redis"
url = "redis://127.0.0.1:{port}"
on_unavailable = "{on_unavailable}"
replicas = 2

[admin]
key_hash = "{}"
"#,
        keys::hash_text(&keys::hash(TENANT_KEY)),
        keys::hash_text(&keys::hash("mk-other-tenant-key-000000001")),
        keys::hash_text(&keys::hash(ADMIN_KEY)),
    )
}

async fn converse(gw: &str, key: &str) -> common::Reply {
    let auth = format!("Bearer {key}");
    common::send(
        "POST",
        &format!("{gw}/model/chat/converse"),
        CONVERSE,
        &[("authorization", &auth)],
    )
    .await
}

async fn admin(method: &str, url: &str, body: &'static str) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_KEY}");
    let r = common::send(method, url, body, &[("authorization", &auth)]).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_and_keys_through_redis() {
    let port = free_port();
    let _redis = redis(port).await;
    let fleet = common::us_fleet().await;
    let (a, _) = common::gateway_with(&fleet, &config(port, "fail_open"), Health::default()).await;
    let (b, _) = common::gateway_with(&fleet, &config(port, "fail_open"), Health::default()).await;

    // 60 per minute with one second's burst: two, wherever they land.
    assert_eq!(converse(&a, TENANT_KEY).await.status, 200);
    assert_eq!(converse(&b, TENANT_KEY).await.status, 200);
    let third = converse(&a, TENANT_KEY).await;
    assert_eq!(third.status, 429, "the limit is shared");
    assert_eq!(converse(&b, TENANT_KEY).await.status, 429);

    // A key issued on one replica works on the other; revoked on the other,
    // it is refused on the first within a second.
    let (status, issued) = admin("POST", &format!("{a}/admin/keys"), r#"{"tenant":"other"}"#).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_string();
    assert_eq!(converse(&b, &key).await.status, 200);
    assert_eq!(converse(&a, &key).await.status, 200);
    let (_, listed) = admin("GET", &format!("{b}/admin/keys"), "").await;
    let text = listed.to_string();
    assert!(
        text.contains(issued["id"].as_str().unwrap()) && !text.contains(&key),
        "{text}"
    );
    let id = issued["id"].as_str().unwrap();
    let (status, _) = admin("DELETE", &format!("{b}/admin/keys/{id}"), "").await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    loop {
        let s = converse(&a, &key).await.status;
        if s == 403 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Usage is shared too.
    let (_, usage) = admin("GET", &format!("{b}/admin/usage"), "").await;
    let team = usage["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "team")
        .unwrap();
    assert_eq!(team["day"]["requests"], 2, "{usage}");
    assert!(team["day"]["cost_usd"].as_f64().unwrap() > 0.0, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replicas_fail_open_or_closed_and_recover() {
    let port = free_port();
    let redis_proc = redis(port).await;
    let fleet = common::us_fleet().await;
    let (open, open_state) =
        common::gateway_with(&fleet, &config(port, "fail_open"), Health::default()).await;
    let (closed, _) =
        common::gateway_with(&fleet, &config(port, "fail_closed"), Health::default()).await;
    assert_eq!(converse(&open, TENANT_KEY).await.status, 200);

    drop(redis_proc); // killed
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Open: served under local limits (60 ÷ 2 replicas per minute).
    let r = converse(&open, TENANT_KEY).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Closed: refused, in Bedrock's shape, quickly.
    let started = Instant::now();
    let r = converse(&closed, TENANT_KEY).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("fail_closed"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!open_state.limiter.shared().unwrap().is_up());
    let (status, body) = admin("GET", &format!("{open}/admin/usage"), "").await;
    assert_eq!(
        status, 503,
        "usage is not made up while Redis is away: {body}"
    );
    assert!(
        open_state
            .limiter
            .degraded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // Redis comes back on the same port: shared limits resume within 5 s.
    let _again = redis(port).await;
    let back = Instant::now();
    loop {
        if open_state.limiter.shared().unwrap().is_up()
            && converse(&closed, TENANT_KEY).await.status != 503
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still degraded after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_one_replica_opens_opens_on_the_others() {
    use meridian_router::breaker::State;
    use meridian_router::health::Verdict;
    let port = free_port();
    let _redis = redis(port).await;
    let fleet = common::us_fleet().await;
    let (_, a) = common::gateway_with(&fleet, &config(port, "fail_open"), Health::default()).await;
    let (_, b) = common::gateway_with(&fleet, &config(port, "fail_open"), Health::default()).await;
    for s in [&a, &b] {
        tokio::spawn(meridian_gateway::breaker_share::share_breakers(
            meridian_gateway::Live::new(s.clone()),
        ));
    }
    let key = meridian_router::KeyId::intern(
        "default",
        "us-east-1",
        meridian_router::Surface::Runtime,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        None,
    );
    for _ in 0..5 {
        a.router.health.record(key, Verdict::Unhealthy);
    }
    assert_eq!(a.router.health.state(key), State::Open);
    let t0 = Instant::now();
    while b.router.health.state(key) != State::Open {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "replica b never heard"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only for as long as it is open on a: then b probes on its own.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_ne!(b.router.health.state(key), State::Open);
}

/// A limit raised by a reload applies at once, in memory and in Redis: the
/// debt run up under the old limit is not carried into the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_limit_applies_at_once_on_both_backends() {
    use meridian_config::{Limits, Tenant};
    use meridian_gateway::limits::Ask;
    use std::sync::Arc;

    let port = free_port();
    let _redis = redis(port).await;
    for (settings, limiter) in limiters(port).await {
        let tenant = |rpm| {
            let mut t = Tenant::implicit();
            t.name = "raised".into();
            t.limits = Limits {
                requests_per_minute: Some(rpm),
                ..Limits::default()
            };
            Arc::new(t)
        };
        let ask = |t: &Arc<Tenant>, i: usize| Ask {
            tenant: t.clone(),
            request_id: format!("r{i}"),
            tokens: 1,
            lease_ms: 60_000,
        };
        let slow = tenant(60);
        let mut admitted = 0;
        for i in 0..10 {
            admitted += usize::from(limiter.admit(ask(&slow, i)).await.is_ok());
        }
        assert!(
            admitted <= 2,
            "{:?}: 60 a minute, one second's burst: {admitted}",
            settings.backend
        );
        assert!(limiter.admit(ask(&slow, 10)).await.is_err());
        let fast = tenant(60_000);
        for i in 0..20 {
            let r = limiter.admit(ask(&fast, 100 + i)).await;
            assert!(
                r.is_ok(),
                "{:?}: request {i} after the raise: {:?}",
                settings.backend,
                r.err()
            );
        }
    }
}

/// What a tenant spent is read back the same from either backend, requests
/// at an unknown price counted apart from the cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_unpriced_requests_on_both_backends() {
    use meridian_config::Tenant;
    use meridian_gateway::limits::{Ask, Usage};
    use std::sync::Arc;

    let port = free_port();
    let _redis = redis(port).await;
    for (settings, limiter) in limiters(port).await {
        let mut t = Tenant::implicit();
        t.name = "spender".into();
        let t = Arc::new(t);
        for (i, (cost, unpriced)) in [(0.5, 0), (0.0, 1), (0.0, 1)].into_iter().enumerate() {
            let ticket = limiter
                .admit(Ask {
                    tenant: t.clone(),
                    request_id: format!("u{i}"),
                    tokens: 10,
                    lease_ms: 60_000,
                })
                .await
                .unwrap();
            limiter.settle(
                ticket,
                Usage {
                    requests: 1,
                    input_tokens: 4,
                    output_tokens: 6,
                    cost_usd: cost,
                    unpriced_requests: unpriced,
                },
            );
        }
        // Redis settles in the background.
        let mut day = Usage::default();
        for _ in 0..100 {
            day = limiter.usage(std::slice::from_ref(&t)).await.unwrap()[0].1;
            if day.requests == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(day.requests, 3, "{:?}", settings.backend);
        assert_eq!(day.unpriced_requests, 2, "{:?}", settings.backend);
        assert!((day.cost_usd - 0.5).abs() < 1e-9, "{:?}", settings.backend);
    }
}

/// A limiter on each backend — memory, and the Redis on `port` — with its settings.
async fn limiters(
    port: u16,
) -> Vec<(
    meridian_config::StateSettings,
    meridian_gateway::limits::Limiter,
)> {
    use meridian_config::{Backend, StateSettings};
    let backends = [
        StateSettings::default(),
        StateSettings {
            backend: Backend::Redis {
                url: format!("redis://127.0.0.1:{port}"),
            },
            timeout_ms: 1_000,
            ..StateSettings::default()
        },
    ];
    let mut out = Vec::new();
    for settings in backends {
        let limiter = meridian_gateway::limits::Limiter::new(&settings);
        if let Some(s) = limiter.shared() {
            assert!(s.connect(Duration::from_secs(5)).await);
        }
        out.push((settings, limiter));
    }
    out
}
