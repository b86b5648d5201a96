//! What `prompt_cache_affinity` buys: the same workload — a few long system
//! prompts, each behind a cache point, asked many different questions —
//! through two gateways that spread one model over three in-region targets
//! with equal weights, one with affinity and one without, in front of the
//! simulated fleet and its per-region prompt caches. Reports the cache-hit
//! rate (tokens read from the cache ÷ tokens read or written) and the cost.
//!
//! `cargo bench -p meridian-gateway --bench cache_affinity`. Everything runs
//! in this process on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_gateway::{AppState, UpstreamInfo};
use meridian_sim::{Fleet, FleetConfig, LatencyModel};
use meridian_upstream::{BedrockClient, Timeouts};
use serde_json::{Value, json};

const REGIONS: [&str; 3] = ["us-east-1", "ca-central-1", "eu-west-1"];
const PROMPTS: usize = 100;
const REQUESTS: usize = 500;
/// claude-3-haiku, USD per million tokens.
const PRICE_IN: f64 = 0.25;
const PRICE_OUT: f64 = 1.25;

async fn gateway(fleet: &Fleet, affinity: bool) -> String {
    let toml = format!(
        "region = \"us-east-1\"\n[models.cached]\nmodel = \"claude-3-haiku\"\nresidency = [\"us-east-1\", \"ca-central-1\", \"eu-west-1\"]\n\
         strategy = \"weighted\"\nprompt_cache_affinity = {affinity}\nhedging = false\n"
    );
    let loaded = meridian_config::parse(&toml, None).unwrap();
    let m = fleet.manifest();
    let client = BedrockClient::with_static_keys(
        &m.credentials.access_key_id,
        &m.credentials.secret_access_key,
        m.endpoints(),
        Timeouts::default(),
    );
    let info = UpstreamInfo {
        mode: "simulated",
        fallback: false,
        detail: "bench".into(),
    };
    let state = Arc::new(AppState::new(
        loaded.config,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        client,
        info,
    ));
    common::serve(state).await
}

/// Tokens: (input, cache read, cache write, output) over the workload.
async fn run(base: &str) -> (u64, u64, u64, u64) {
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut totals = (0, 0, 0, 0);
    for i in 0..REQUESTS {
        let p = i % PROMPTS;
        let system = format!(
            "You are assistant number {p}. {}",
            "Follow the house style. ".repeat(120)
        );
        let body = json!({
            "system": [{"text": system}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": format!("question {i}")}]}],
            "inferenceConfig": {"maxTokens": 8},
        });
        let req = hyper::Request::post(format!("{base}/model/cached/converse"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = http.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let u = &v["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        totals.0 += n("inputTokens");
        totals.1 += n("cacheReadInputTokens");
        totals.2 += n("cacheWriteInputTokens");
        totals.3 += n("outputTokens");
    }
    totals
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut fc = FleetConfig::new(REGIONS);
        fc.latency = LatencyModel {
            ttft_ms: 1.0,
            tokens_per_sec: 10_000.0,
            jitter: 0.0,
            rtt_ms_per_1000km: 0.0,
        };
        // Separate fleets, so one run's cache does not warm the other's.
        let without = Fleet::start(Catalog::builtin().unwrap(), fc.clone(), None, None).await.unwrap();
        let with = Fleet::start(Catalog::builtin().unwrap(), fc, None, None).await.unwrap();
        println!(
            "{REQUESTS} Converse requests, {PROMPTS} system prompts behind a cache point, one model spread by weight over {}\n",
            REGIONS.join(", ")
        );
        println!("{:<28} {:>10} {:>12} {:>12} {:>12}", "", "hit rate", "cache read", "cache write", "cost USD");
        for (name, fleet, affinity) in [("without affinity", &without, false), ("prompt_cache_affinity", &with, true)] {
            let gw = gateway(fleet, affinity).await;
            let (input, read, write, output) = run(&gw).await;
            let price = meridian_catalog::Price::from([PRICE_IN, PRICE_OUT]);
            let cost = price.cost(input, output, read, write);
            let rate = read as f64 / (read + write).max(1) as f64;
            println!("{name:<28} {:>9.1}% {read:>12} {write:>12} {cost:>12.6}", rate * 100.0);
        }
    });
}
