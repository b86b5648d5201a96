//! The drill's done-when criteria, run as a user would: `meridian drill
//! SCENARIO --json` at its defaults (200 req/s for 60 s), numbers read from
//! the report. The scenarios run one at a time so they do not compete for
//! the machine's cores, and only when asked (`--ignored`): a drill measures
//! latency under load and wants the machine to itself, so `scripts/test`
//! runs them alone once the other tests and the background builds are done.
//!
//! `MERIDIAN_DRILL_BIN` names the binary to drill (an absolute path);
//! `scripts/test` points it at the release build, the program users run (a
//! debug build spends most of a core on the drill's 200 req/s, so a busy
//! machine turned its latencies into queueing). Unset, the debug binary
//! Cargo builds for this test is used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use assert_cmd::Command;
use parking_lot::Mutex;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn drill(scenario: &str) -> (Value, bool) {
    let _guard = ONE_AT_A_TIME.lock();
    let bin = meridian_catalog::env::EnvSource::non_empty(
        &meridian_catalog::env::ProcessEnv,
        "MERIDIAN_DRILL_BIN",
    );
    let mut cmd = match bin {
        Some(path) => Command::new(path),
        None => Command::cargo_bin("meridian").unwrap(),
    };
    let out = cmd
        .args(["drill", scenario, "--json"])
        .env("MERIDIAN_LOG", "error")
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{scenario}: no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["scenario"], scenario);
    let expected = if scenario == "provisioned-overflow" {
        // A third of 200 req/s, then 200 req/s from 10 s to 40 s.
        8_000
    } else {
        12_000
    };
    assert_eq!(
        report["requests"], expected,
        "the scenario's load at 200 req/s for 60 s"
    );
    assert_eq!(
        report["residency_violations"], 0,
        "{scenario}: processed outside the policy per the fleet's records"
    );
    let processed: u64 = report["processed_by_region"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(processed >= 1000, "the fleet recorded the traffic");
    (report.clone(), out.status.success())
}

fn served(r: &Value, region: &str) -> u64 {
    r["served_by_region"][region].as_u64().unwrap_or(0)
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn region_outage_is_invisible_to_clients() {
    let (r, ok) = drill("region-outage");
    assert_eq!(
        r["client_failures"]["total"], 0,
        "{:#}",
        r["client_failures"]
    );
    let back = r["primary_back_after_recovery_s"].as_f64().unwrap();
    assert!(back <= 15.0, "primary back after {back} s");
    assert!(served(&r, "ca-central-1") > 2000, "the secondary took over");
    assert!(
        served(&r, "us-east-1") > 2000,
        "the primary served before and after"
    );
    let opened = r["breaker_transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["candidate"].as_str().unwrap().contains("|us-east-1|") && t["to"] == "open");
    assert!(opened, "the primary's breaker opened");
    assert!(ok, "every check passed: {:#}", r["checks"]);
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn brownout_is_hedged_within_budget() {
    let (r, ok) = drill("brownout");
    let p99 = r["latency_ms"]["p99"].as_f64().unwrap();
    let healthy = r["healthy_p99_ms"].as_f64().unwrap();
    assert!(healthy > 0.0);
    assert!(
        p99 <= 1.5 * healthy,
        "p99 {p99} ms vs healthy {healthy} ms: {r:#}"
    );
    assert!(r["hedges"].as_u64().unwrap() > 0, "hedges were sent");
    assert!(r["extra_attempts"].as_u64().unwrap() <= r["retry_budget"].as_u64().unwrap());
    assert!(ok, "every check passed: {:#}", r["checks"]);
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn throttle_storm_spills_before_clients_see_throttles() {
    let (r, ok) = drill("throttle-storm");
    let throttled = r["client_failures"]["by_type"]["ThrottlingException"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        throttled * 100 < 12_000,
        "{throttled} throttles reached clients"
    );
    assert!(
        served(&r, "ca-central-1") > 1000,
        "traffic spilled to other capacity"
    );
    assert!(ok, "every check passed: {:#}", r["checks"]);
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn residency_squeeze_never_leaves_the_eu_and_says_why_it_stops() {
    let (r, ok) = drill("residency-squeeze");
    for region in r["processed_by_region"].as_object().unwrap().keys() {
        assert!(region.starts_with("eu-"), "processed in {region}");
    }
    let example = r["client_failures"]["examples"]["ServiceUnavailableException"]
        .as_str()
        .unwrap();
    assert!(example.contains("residency policy 'eu-only"), "{example}");
    assert!(ok, "every check passed: {:#}", r["checks"]);
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn flapping_only_breaks_streams_already_under_way() {
    let (r, ok) = drill("flapping");
    // A reset cuts streams that already sent bytes; nothing else may fail.
    for (kind, n) in r["client_failures"]["by_type"].as_object().unwrap() {
        assert!(
            kind.starts_with("stream:"),
            "{n} failures of type {kind}: {:#}",
            r["client_failures"]["examples"]
        );
    }
    assert!(
        r["breaker_transitions"].as_array().unwrap().len() >= 2,
        "the breaker followed the flapping"
    );
    assert!(ok, "every check passed: {:#}", r["checks"]);
}

#[test]
#[ignore = "a drill: 60 s of load that wants the machine to itself (scripts/test runs them with --ignored)"]
fn provisioned_overflow_spills_the_burst_to_on_demand_without_failures() {
    let (r, ok) = drill("provisioned-overflow");
    assert_eq!(
        r["client_failures"]["total"], 0,
        "{:#}",
        r["client_failures"]
    );
    let split = &r["provisioned_split"];
    let provisioned = split["provisioned"]["requests"].as_u64().unwrap();
    let on_demand = split["on_demand"]["requests"].as_u64().unwrap();
    // The baseline (20 s at 67 req/s before and after the burst) fits the
    // capacity; the burst overflows it.
    assert!(
        provisioned > 2000,
        "provisioned served {provisioned}: {split:#}"
    );
    assert!(on_demand > 500, "on-demand took the overflow: {split:#}");
    assert_eq!(
        split["provisioned_throttles"], 0,
        "Meridian spilled before the provisioned capacity throttled"
    );
    assert!(split["provisioned"]["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(split["on_demand"]["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(ok, "every check passed: {:#}", r["checks"]);
}
