//! Through the Bedrock front door, every request is summarized exactly once
//! by the pipeline — one invocation record and one count in
//! `meridian_requests_total` — whether it is refused, abandoned by its client
//! before or during its answer, or its handler panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_sim::{FaultSet, Fleet, FleetConfig, LatencyModel};
use meridian_upstream::{BedrockClient, Timeouts};

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use meridian_wire::BedrockError;

use super::Bedrock;
use crate::execute::{Events, Served};
use crate::invocation::InvocationLog;
use crate::pipeline::{Decoded, FrontDoor, handle};
use crate::state::AppState;
use crate::state::UpstreamInfo;

const CONFIG: &str =
    "region = \"us-east-1\"\n[models.chat]\nmodel = \"nova-lite\"\nresidency = [\"us-east-1\"]\n";
const CONVERSE: &str = r#"{"messages":[{"role":"user","content":[{"text":"once"}]}],"inferenceConfig":{"maxTokens":400}}"#;

async fn fleet() -> Fleet {
    let mut fc = FleetConfig::new(["us-east-1"]);
    fc.latency = LatencyModel {
        ttft_ms: 2.0,
        tokens_per_sec: 200.0,
        jitter: 0.0,
        rtt_ms_per_1000km: 0.0,
    };
    Fleet::start(Catalog::builtin().unwrap(), fc, None, None)
        .await
        .unwrap()
}

/// A gateway state calling `fleet`, logging to `log`.
fn gateway(fleet: &Fleet, log: &Path) -> Arc<AppState> {
    let m = fleet.manifest();
    let loaded = meridian_config::parse(CONFIG, None).unwrap();
    let client = BedrockClient::with_static_keys(
        &m.credentials.access_key_id,
        &m.credentials.secret_access_key,
        m.endpoints(),
        Timeouts::default(),
    );
    let info = UpstreamInfo {
        mode: "simulated",
        fallback: false,
        detail: "test".into(),
    };
    let c = loaded.config;
    let mut state = AppState::new(
        c,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        client,
        info,
    );
    state.runtime_mut().log =
        Arc::new(InvocationLog::new(false, Some(log), false, None, 1024).unwrap());
    Arc::new(state)
}

fn converse(stream: bool, body: &'static str) -> Request {
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    http::Request::builder()
        .method("POST")
        .uri(format!("/model/chat/{op}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// `meridian_requests_total`, summed over its series.
fn requests_total(state: &AppState) -> f64 {
    state
        .metrics
        .render(&[])
        .lines()
        .filter(|l| l.starts_with("meridian_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The log's records once a marker request (refused, so quick) has been
/// written after them: the writer keeps order, so nothing written before
/// the marker is still to come.
async fn records_before_marker(state: &Arc<AppState>, log: &Path) -> Vec<serde_json::Value> {
    let marker = handle::<Bedrock>(state.clone(), converse(false, "{not json")).await;
    let id = marker.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    for _ in 0..500 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        if let Some(at) = lines.iter().position(|l| l.contains(&id)) {
            return lines[..at]
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the marker's record never came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_summarized_once() {
    let fleet = fleet().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.ndjson");
    let state = gateway(&fleet, &log);
    let r = handle::<Bedrock>(state.clone(), converse(false, r#"{"messages": 7}"#)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(requests_total(&state), 1.0);
    let records = records_before_marker(&state, &log).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["errorCode"], "ValidationException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_before_its_answer_is_summarized_once() {
    let fleet = fleet().await;
    let stall = FaultSet {
        stall_ms: Some(5_000),
        ..FaultSet::default()
    };
    assert!(fleet.set_faults("us-east-1", stall));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.ndjson");
    let state = gateway(&fleet, &log);
    // The client gives up: the pipeline's future is dropped mid-attempt.
    let gone = tokio::time::timeout(
        Duration::from_millis(300),
        handle::<Bedrock>(state.clone(), converse(false, CONVERSE)),
    )
    .await;
    assert!(gone.is_err(), "answered despite the stall");
    assert_eq!(requests_total(&state), 1.0);
    assert!(fleet.set_faults("us-east-1", FaultSet::default()));
    let records = records_before_marker(&state, &log).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["errorCode"], crate::summary::CLIENT_GONE);
    assert_eq!(records[0]["meridian"]["status"], 499);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_abandoned_mid_way_is_summarized_once() {
    let fleet = fleet().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.ndjson");
    let state = gateway(&fleet, &log);
    let r = handle::<Bedrock>(state.clone(), converse(true, CONVERSE)).await;
    if r.status() != 200 {
        let body = r.into_body().collect().await.unwrap().to_bytes();
        panic!("{}", String::from_utf8_lossy(&body));
    }
    let mut body = r.into_body();
    // Read three events (the start and two deltas), then hang up. The
    // stream is pulled by the body: what was not read was never passed.
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.is_data());
    }
    drop(body);
    // The stream's end is summarized when the gateway notices.
    for _ in 0..300 {
        if requests_total(&state) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(requests_total(&state), 1.0);
    let records = records_before_marker(&state, &log).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["errorCode"], crate::summary::CLIENT_GONE);
    assert!(
        records[0]["output"]["outputTokenCount"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{}",
        records[0]
    );
}

/// A front door whose decoding panics, standing in for any stage that does.
struct Panics;

impl FrontDoor for Panics {
    const API: &'static str = "bedrock";
    type Ctx = ();
    type Error = BedrockError;

    fn head(parts: &Parts) -> crate::canonical::Head {
        <Bedrock as FrontDoor>::head(parts)
    }
    fn decode(
        _: &std::sync::Arc<AppState>,
        _: &Parts,
        _: Bytes,
        _: &str,
        _: &meridian_config::Tenant,
    ) -> Result<Decoded<(), BedrockError>, BedrockError> {
        panic!("a stage panicked (on purpose, in a test)");
    }
    fn unary(
        _: (),
        _: &Served,
        _: Bytes,
        _: &crate::usage::Usage,
    ) -> Result<Response, BedrockError> {
        unreachable!()
    }
    fn stream(_: (), _: &Served, _: Events) -> Response {
        unreachable!()
    }
    fn from_bedrock(e: &BedrockError) -> BedrockError {
        e.clone()
    }
    fn code(e: &BedrockError) -> (u16, &'static str) {
        <Bedrock as FrontDoor>::code(e)
    }
    fn error(request_id: &str, e: &BedrockError) -> Response {
        <Bedrock as FrontDoor>::error(request_id, e)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_handler_panics_is_answered_500_and_summarized_once() {
    let fleet = fleet().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.ndjson");
    let state = gateway(&fleet, &log);
    let r = handle::<Panics>(state.clone(), converse(false, CONVERSE)).await;
    assert_eq!(r.status(), 500);
    assert!(
        r.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("InternalServerException")
    );
    let id = r.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(requests_total(&state), 1.0);
    let records = records_before_marker(&state, &log).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["errorCode"], crate::summary::INTERNAL);
    assert_eq!(records[0]["requestId"], id.as_str());
}
