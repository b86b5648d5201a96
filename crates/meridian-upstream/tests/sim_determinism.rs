//! The same seed and scenario give the same sequence of outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use common::*;
use meridian_sim::Scenario;

async fn run(seed: u64) -> Vec<(String, Option<String>, String)> {
    let scenario = Scenario::parse(
        r#"{"name": "coin-flips", "steps": [
            {"at_ms": 0, "region": "us-east-2", "faults": {"error_rate": 0.5}},
            {"at_ms": 0, "region": "us-west-2", "faults": {"not_ready": false, "error_rate": 0.3, "error_status": 500}}
        ]}"#,
    )
    .unwrap();
    let f = fleet(
        fast_config(&["us-east-1", "us-east-2", "us-west-2"], seed),
        Some(scenario),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let c = client(&f, timeouts());
    let mut out = Vec::new();
    for i in 0..40 {
        let text = match c
            .call(&converse(
                "us-east-1",
                SONNET_US,
                &format!("question {i}"),
                64,
                false,
            ))
            .await
        {
            Ok(r) => json_of(r).await["output"]["message"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_string(),
            Err(e) => e.error.kind.name().to_string(),
        };
        let rec = f.records().last().cloned().unwrap();
        out.push((rec.outcome, rec.inference_region, text));
    }
    out
}

#[tokio::test]
async fn same_seed_same_outcomes() {
    let a = run(42).await;
    let b = run(42).await;
    assert_eq!(a, b);
    let failures = a.iter().filter(|o| o.0 != "success").count();
    assert!(
        failures > 0 && failures < 40,
        "the scenario should fail some requests: {failures}"
    );
    let regions: std::collections::BTreeSet<_> = a.iter().filter_map(|o| o.1.clone()).collect();
    assert!(
        regions.len() > 1,
        "profile requests should spread over regions: {regions:?}"
    );
    assert_ne!(a, run(43).await, "a different seed should change something");
}
