//! A simulated fleet and a client pointed at it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // shared by several test files

use std::time::Duration;

use bytes::Bytes;
use meridian_catalog::Catalog;
use meridian_sim::{CapacityModel, Fleet, FleetConfig, LatencyModel, Scenario};
use meridian_upstream::{BedrockClient, Call, Timeouts};
use serde_json::{Value, json};

pub const SONNET_US: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
pub const SONNET_EU: &str = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0";

pub fn fast_config(regions: &[&str], seed: u64) -> FleetConfig {
    let mut c = FleetConfig::new(regions.iter().copied());
    c.seed = seed;
    c.latency = LatencyModel {
        ttft_ms: 5.0,
        tokens_per_sec: 5000.0,
        jitter: 0.1,
        rtt_ms_per_1000km: 1.0,
    };
    c.capacity = CapacityModel {
        concurrency: 64,
        tokens_per_minute: 1_000_000,
    };
    c
}

pub async fn fleet(config: FleetConfig, scenario: Option<Scenario>) -> Fleet {
    Fleet::start(Catalog::builtin().unwrap(), config, scenario, None)
        .await
        .unwrap()
}

pub fn client(fleet: &Fleet, timeouts: Timeouts) -> BedrockClient {
    let m = fleet.manifest();
    BedrockClient::with_static_keys(
        &m.credentials.access_key_id,
        &m.credentials.secret_access_key,
        m.endpoints(),
        timeouts,
    )
}

pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(500),
        first_byte: Duration::from_millis(800),
        idle: Duration::from_millis(300),
    }
}

pub fn converse(region: &str, model: &str, text: &str, max_tokens: u64, stream: bool) -> Call {
    let body = json!({"messages": [{"role": "user", "content": [{"text": text}]}], "inferenceConfig": {"maxTokens": max_tokens}});
    Call {
        region: region.into(),
        model_id: model.into(),
        action: if stream {
            meridian_wire::Action::ConverseStream
        } else {
            meridian_wire::Action::Converse
        },
        route: meridian_upstream::Route::Model,
        body: Bytes::from(body.to_string()),
        headers: Vec::new(),
    }
}

pub async fn json_of(resp: meridian_upstream::Response) -> Value {
    serde_json::from_slice(&resp.collect().await.unwrap()).unwrap()
}
