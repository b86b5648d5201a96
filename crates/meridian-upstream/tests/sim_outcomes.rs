//! Every fault and quota behaviour of the simulated fleet, as the upstream
//! client classifies it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use common::*;
use meridian_sim::{CapacityModel, FaultSet, SimProvisioned};
use meridian_upstream::Outcome;

#[tokio::test]
async fn healthy_calls_succeed_and_profiles_stay_in_their_geography() {
    let f = fleet(fast_config(&["us-east-1", "eu-west-1"], 1), None).await;
    let c = client(&f, timeouts());
    for _ in 0..5 {
        let r = c
            .call(&converse("eu-west-1", SONNET_EU, "hello", 50, false))
            .await
            .unwrap();
        let region = r.headers[meridian_sim::INFERENCE_REGION_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        assert!(region.starts_with("eu-"), "{region}");
        let v = json_of(r).await;
        assert_eq!(v["stopReason"], "end_turn");
        assert!(
            v["output"]["message"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("You said: hello")
        );
        assert!(v["usage"]["outputTokens"].as_u64().unwrap() > 0);
    }
    let records = f.records();
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(
        |r| r.inference_region.as_deref().unwrap().starts_with("eu-") && r.outcome == "success"
    ));
}

#[tokio::test]
async fn outage_refuses_connections_until_it_ends() {
    let f = fleet(fast_config(&["us-east-1"], 1), None).await;
    let c = client(&f, timeouts());
    f.set_faults(
        "us-east-1",
        FaultSet {
            outage: true,
            ..FaultSet::default()
        },
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let e = c
        .call(&converse("us-east-1", SONNET_US, "hi", 20, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::ConnectionRefused, "{e:?}");
    f.set_faults("us-east-1", FaultSet::default());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.call(&converse("us-east-1", SONNET_US, "hi", 20, false))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_errors_throttles_and_not_ready() {
    let f = fleet(fast_config(&["us-east-1"], 1), None).await;
    let c = client(&f, timeouts());
    let call = converse(
        "us-east-1",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "hi",
        20,
        false,
    );

    f.set_faults(
        "us-east-1",
        FaultSet {
            error_rate: 1.0,
            error_status: 503,
            ..FaultSet::default()
        },
    );
    let e = c.call(&call).await.unwrap_err();
    assert_eq!(e.outcome, Outcome::Unavailable { status: 503 });
    assert_eq!(e.error.kind.name(), "ServiceUnavailableException");

    f.set_faults(
        "us-east-1",
        FaultSet {
            error_rate: 1.0,
            error_status: 500,
            ..FaultSet::default()
        },
    );
    let e = c.call(&call).await.unwrap_err();
    assert_eq!(e.outcome, Outcome::Unavailable { status: 500 });

    f.set_faults(
        "us-east-1",
        FaultSet {
            quota_factor: 0.0,
            ..FaultSet::default()
        },
    );
    let e = c.call(&call).await.unwrap_err();
    assert!(matches!(e.outcome, Outcome::Throttled { .. }), "{e:?}");

    f.set_faults(
        "us-east-1",
        FaultSet {
            not_ready: true,
            ..FaultSet::default()
        },
    );
    assert_eq!(
        c.call(&call).await.unwrap_err().outcome,
        Outcome::ModelNotReady
    );

    f.set_faults("us-east-1", FaultSet::default());
    c.call(&call).await.unwrap();
}

#[tokio::test]
async fn quota_reserves_input_plus_max_tokens() {
    let mut cfg = fast_config(&["us-east-1"], 1);
    cfg.capacity = CapacityModel {
        concurrency: 8,
        tokens_per_minute: 1000,
    };
    let f = fleet(cfg, None).await;
    let c = client(&f, timeouts());
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    // 1,500 tokens cannot be reserved from a 1,000-token minute, however short the answer.
    let e = c
        .call(&converse("us-east-1", model, "hi", 1500, false))
        .await
        .unwrap_err();
    assert!(matches!(e.outcome, Outcome::Throttled { .. }), "{e:?}");
    c.call(&converse("us-east-1", model, "hi", 100, false))
        .await
        .unwrap();
}

#[tokio::test]
async fn provisioned_models_have_their_own_capacity_in_their_own_region() {
    let pt = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/pt1";
    let mut cfg = fast_config(&["us-east-1", "us-west-2"], 1);
    cfg.provisioned = vec![SimProvisioned {
        arn: pt.into(),
        model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
        tokens_per_minute: 1000,
    }];
    let f = fleet(cfg, None).await;
    let c = client(&f, timeouts());
    // Within its capacity it serves; 1,500 tokens cannot be reserved from
    // its 1,000-token minute, though the region's on-demand quota has room.
    for _ in 0..3 {
        c.call(&converse("us-east-1", pt, "hi", 300, false))
            .await
            .unwrap();
    }
    let e = c
        .call(&converse("us-east-1", pt, "hi", 1500, false))
        .await
        .unwrap_err();
    assert!(matches!(e.outcome, Outcome::Throttled { .. }), "{e:?}");
    let on_demand = "anthropic.claude-3-haiku-20240307-v1:0";
    c.call(&converse("us-east-1", on_demand, "hi", 1500, false))
        .await
        .unwrap();
    // The region's on-demand quota is apart from it, and a cut of that
    // quota leaves the provisioned capacity alone.
    f.set_faults(
        "us-east-1",
        FaultSet {
            quota_factor: 0.0,
            ..FaultSet::default()
        },
    );
    c.call(&converse("us-east-1", pt, "hi", 10, false))
        .await
        .unwrap();
    let e = c
        .call(&converse("us-east-1", on_demand, "hi", 10, false))
        .await
        .unwrap_err();
    assert!(matches!(e.outcome, Outcome::Throttled { .. }), "{e:?}");
    // Called anywhere but its own region, it does not exist.
    let e = c
        .call(&converse("us-west-2", pt, "hi", 10, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::Validation, "{e:?}");
    let processed: Vec<_> = f
        .records()
        .into_iter()
        .filter(|r| r.model_id == pt && r.outcome == "success")
        .map(|r| r.inference_region.unwrap())
        .collect();
    assert_eq!(processed, ["us-east-1"; 4], "never routed elsewhere");
}

#[tokio::test]
async fn stalls_brownouts_drips_and_cuts() {
    let f = fleet(fast_config(&["us-east-1"], 1), None).await;
    let c = client(&f, timeouts());
    let model = "anthropic.claude-3-haiku-20240307-v1:0";

    f.set_faults(
        "us-east-1",
        FaultSet {
            stall_ms: Some(2000),
            ..FaultSet::default()
        },
    );
    let e = c
        .call(&converse("us-east-1", model, "hi", 20, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::TimeoutBeforeFirstByte);

    // Brownout: 5 ms to first token × 400 is past the 800 ms first-byte timeout.
    f.set_faults(
        "us-east-1",
        FaultSet {
            latency_factor: 400.0,
            ..FaultSet::default()
        },
    );
    let e = c
        .call(&converse("us-east-1", model, "hi", 20, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::TimeoutBeforeFirstByte);

    // Slow drip: two tokens a second stalls the stream past the 300 ms idle timeout.
    f.set_faults(
        "us-east-1",
        FaultSet {
            drip_tokens_per_sec: Some(2.0),
            ..FaultSet::default()
        },
    );
    let mut r = c
        .call(&converse("us-east-1", model, "hi", 50, true))
        .await
        .unwrap();
    let e = loop {
        match r.next_chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("drip stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.outcome, Outcome::TimeoutMidStream);

    f.set_faults(
        "us-east-1",
        FaultSet {
            cut_after_events: Some(3),
            ..FaultSet::default()
        },
    );
    let mut r = c
        .call(&converse("us-east-1", model, "hi", 50, true))
        .await
        .unwrap();
    let mut frames = meridian_wire::eventstream::Decoder::new();
    let mut events = 0;
    let e = loop {
        match r.next_chunk().await {
            Ok(Some(b)) => {
                frames.push(&b);
                while frames.next_frame().unwrap().is_some() {
                    events += 1;
                }
            }
            Ok(None) => panic!("cut stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.outcome, Outcome::ConnectionReset);
    assert_eq!(events, 3);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(f.records().iter().any(|r| r.outcome == "cut"));
}

#[tokio::test]
async fn caller_errors_are_never_retryable() {
    let f = fleet(fast_config(&["us-east-1"], 1), None).await;
    let c = client(&f, timeouts());
    // Sonnet 4.5 has no on-demand base ID.
    let e = c
        .call(&converse(
            "us-east-1",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "hi",
            20,
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::Validation);
    assert!(
        e.error
            .message
            .contains("on-demand throughput isn't supported"),
        "{}",
        e.error.message
    );
    // The EU profile cannot be called from a US region.
    let e = c
        .call(&converse("us-east-1", SONNET_EU, "hi", 20, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::Validation);
    let mut bad = converse("us-east-1", SONNET_US, "hi", 20, false);
    bad.body = bytes::Bytes::from_static(br#"{"messages": "nope"}"#);
    assert_eq!(c.call(&bad).await.unwrap_err().outcome, Outcome::Validation);
    let e = c
        .get("us-east-1", "/inference-profiles/no-such-profile")
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::NotFound);
    for o in [
        Outcome::Validation,
        Outcome::NotFound,
        Outcome::AccessDenied,
    ] {
        assert_eq!(o.class(), meridian_upstream::OutcomeClass::Fatal);
    }

    // A client with the wrong secret is refused by the fleet's SigV4 check.
    let m = f.manifest();
    let wrong = aws_credential_types::Credentials::new(
        &m.credentials.access_key_id,
        "not-the-secret",
        None,
        None,
        "t",
    );
    let endpoints = c.endpoints().clone();
    let bad_client = meridian_upstream::BedrockClient::new(
        meridian_upstream::Auth::SigV4(std::sync::Arc::new(meridian_upstream::StaticCredentials(
            wrong,
        ))),
        endpoints,
        timeouts(),
    );
    let e = bad_client
        .call(&converse("us-east-1", SONNET_US, "hi", 20, false))
        .await
        .unwrap_err();
    assert_eq!(e.outcome, Outcome::AccessDenied);
    assert_eq!(e.error.kind.name(), "InvalidSignatureException");
}

/// The status line of a raw GET to the fleet's control API.
async fn control_status(url: &str, path: &str, token: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_bounded_fleet_keeps_its_newest_records_without_prompts_behind_a_token() {
    let mut config = fast_config(&["us-east-1"], 1);
    config.max_records = 3;
    config.keep_prompts = false;
    config.control_token = Some("s3cret".into());
    let f = fleet(config, None).await;
    let c = client(&f, timeouts());
    for i in 0..5 {
        c.call(&converse(
            "us-east-1",
            SONNET_US,
            &format!("card {i}"),
            20,
            false,
        ))
        .await
        .unwrap();
    }
    let records = f.records();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![2, 3, 4], "the newest three");
    assert!(
        records.iter().all(|r| r.prompt.is_none()),
        "no prompts kept"
    );
    let url = &f.manifest().control_url;
    assert!(control_status(url, "/records", None).await.contains("401"));
    assert!(
        control_status(url, "/records", Some("wrong"))
            .await
            .contains("401")
    );
    assert!(
        control_status(url, "/records", Some("s3cret"))
            .await
            .contains("200")
    );
}
