//! Breakers in the gateway's attempt loop: after enough failures an endpoint
//! in outage is skipped (one attempt instead of two), and it is probed again
//! once its cool-down ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;
use std::time::Duration;

use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_gateway::{AppState, ServeOptions, UpstreamInfo};
use meridian_router::breaker::BreakerConfig;
use meridian_router::budget::BudgetConfig;
use meridian_router::health::Health;
use meridian_sim::{FaultSet, Fleet, FleetConfig, LatencyModel};
use meridian_upstream::{BedrockClient, Call, Timeouts};

#[tokio::test]
async fn an_endpoint_in_outage_is_skipped_then_probed_again() {
    let mut fc = FleetConfig::new(["us-east-1", "us-east-2", "us-west-1", "us-west-2"]);
    fc.latency = LatencyModel {
        ttft_ms: 2.0,
        tokens_per_sec: 5000.0,
        jitter: 0.0,
        rtt_ms_per_1000km: 0.0,
    };
    let fleet = Fleet::start(Catalog::builtin().unwrap(), fc, None, None)
        .await
        .unwrap();
    let m = fleet.manifest();
    let loaded = meridian_config::parse(
        "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n",
        None,
    )
    .unwrap();
    let breaker = BreakerConfig {
        failures_to_open: 3,
        open_for: Duration::from_millis(300),
        ..BreakerConfig::default()
    };
    let state = Arc::new(AppState {
        config: loaded.config,
        catalog: loaded.catalog,
        region: "us-east-1".into(),
        region_step: Step::Config,
        upstream: BedrockClient::with_static_keys(
            &m.credentials.access_key_id,
            &m.credentials.secret_access_key,
            m.endpoints(),
            Timeouts::default(),
        ),
        upstream_info: UpstreamInfo {
            mode: "simulated",
            detail: "test".into(),
        },
        max_body: 1_000_000,
        max_attempts: 3,
        account_id: "000000000000".into(),
        health: Health::new(breaker, BudgetConfig::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(meridian_gateway::serve(
        listener,
        state,
        ServeOptions::default(),
        std::future::pending(),
    ));
    let client = BedrockClient::with_static_keys(
        "AKID",
        "secret",
        [("us-east-1".to_string(), gw.clone())].into(),
        Timeouts::default(),
    );
    let call = Call {
        region: "us-east-1".into(),
        model_id: "chat".into(),
        action: "converse",
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
    let open: Vec<_> = status["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "open")
        .collect();
    assert_eq!(open.len(), 1);
    assert!(
        open[0]["target"]
            .as_str()
            .unwrap()
            .starts_with("us-east-1|us.")
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
