//! What Meridian adds to a request: the same Converse call sent straight to
//! an upstream that answers at once, and sent through the gateway in front of
//! it (plan, routing, SigV4 signing, one more loopback hop, metrics and the
//! invocation record), and with a tenant's limits admitted in this process
//! or in a `redis-server` (started on a free port when one is installed).
//! Reports latency percentiles one request at a time, throughput with 32
//! clients, and the process's resident memory. The set-ups are measured in
//! alternating rounds.
//!
//! `cargo bench -p meridian-gateway --bench overhead` (add `-- --quick` for a
//! short run). Everything listens on 127.0.0.1 and stops by itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_catalog::detect::Step;
use meridian_gateway::invocation::InvocationLog;
use meridian_gateway::{AppState, UpstreamInfo};
use meridian_upstream::{BedrockClient, Timeouts};
use tokio::time::Instant;

const ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":1,"totalTokens":13},"metrics":{"latencyMs":1}}"#;
const REQUEST: &str = r#"{"messages":[{"role":"user","content":[{"text":"How far is Paris from Frankfurt?"}]}],"inferenceConfig":{"maxTokens":64}}"#;
const US: [&str; 4] = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"];

/// An upstream that answers every request with a fixed Converse response.
async fn instant_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

/// A gateway in us-east-1 exposing `chat` (claude-sonnet-4-5, US-only),
/// every US region served by `upstream`, writing invocation records to
/// `log` when given, exporting spans over OTLP/HTTP protobuf to `otlp`
/// when given.
async fn gateway(upstream: &str, log: Option<&Path>, extra: &str, otlp: Option<&str>) -> String {
    let toml = format!(
        "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n{extra}"
    );
    let loaded = meridian_config::parse(&toml, None).unwrap();
    let endpoints: BTreeMap<String, String> = US
        .iter()
        .map(|r| (r.to_string(), upstream.to_string()))
        .collect();
    let client = BedrockClient::with_static_keys("AKID", "secret", endpoints, Timeouts::default());
    let info = UpstreamInfo {
        mode: "aws",
        fallback: false,
        detail: "bench".into(),
    };
    let mut state = AppState::new(
        loaded.config,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        client,
        info,
    );
    state.runtime_mut().log =
        std::sync::Arc::new(InvocationLog::new(false, log, false, None, 16_384).unwrap());
    state.runtime_mut().tracer = otlp.map(|url| {
        Arc::new(meridian_gateway::traces::Tracer::start(
            url,
            meridian_config::OtlpProtocol::HttpProtobuf,
            "bench",
        ))
    });
    let state = Arc::new(state);
    if let Some(shared) = state.limiter.shared() {
        assert!(
            shared.connect(Duration::from_secs(2)).await,
            "redis-server does not answer"
        );
    }
    common::serve(state).await
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// A model whose answers are cached (every request after the first is a
/// hit) and one whose requests and answers pass the built-in detectors.
const CACHED: &str = "[models.cached]\nmodel = \"claude-sonnet-4-5\"\ncache = { ttl = \"1h\" }\n\
[models.guarded]\nmodel = \"claude-sonnet-4-5\"\nguard = \"pii\"\n\
[guards.pii]\nemail = \"mask\"\nphone = \"mask\"\ncard = \"mask\"\niban = \"mask\"\nssn = \"mask\"\n\
ip = \"mask\"\naws_access_key = \"mask\"\naws_secret_key = \"mask\"\n";

/// A tenant whose limits are checked on every request but never reached.
const TENANT_KEY: &str = "mk-bench-tenant-key-000000000000001";

fn tenant(backend: &str) -> String {
    format!(
        "[tenants.bench]\napi_keys = [\"{}\"]\nrequests_per_minute = 100000000\ntokens_per_minute = 100000000000\n{backend}",
        meridian_gateway::keys::hash_text(&meridian_gateway::keys::hash(TENANT_KEY))
    )
}

/// A `redis-server` on a free port, if one is installed.
fn redis() -> Option<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
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
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

async fn converse(http: &Http, base: &str, model: &str) {
    let authed = !model.contains('.');
    let req = hyper::Request::post(format!("{base}/model/{model}/converse"))
        .header("content-type", "application/json")
        .header(
            "authorization",
            if authed {
                format!("Bearer {TENANT_KEY}")
            } else {
                String::new()
            },
        )
        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "a request failed");
    resp.into_body().collect().await.unwrap();
}

/// Each measurement is split into this many alternating rounds.
const ROUNDS: usize = 5;

/// Latencies of `n` requests sent one after another, in µs.
async fn sequential(http: &Http, base: &str, model: &str, n: usize) -> Vec<f64> {
    for _ in 0..n / 10 {
        converse(http, base, model).await; // warm the pool and the router
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        converse(http, base, model).await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out
}

/// Requests per second with `clients` clients sending `n` requests in all.
async fn throughput(http: &Http, base: &str, model: &str, clients: usize, n: usize) -> f64 {
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, base, model) = (http.clone(), base.to_string(), model.to_string());
        tasks.spawn(async move {
            for _ in 0..n / clients {
                converse(&http, &base, &model).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (n / clients * clients) as f64 / t.elapsed().as_secs_f64()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `VmRSS` and `VmHWM` of this process, KiB (0 where /proc is missing).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, m) = if quick {
        (1_000, 4_000)
    } else {
        (5_000, 40_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (rss0, _) = memory_kib();
        let upstream = instant_upstream().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("invocations.ndjson");
        let quiet = gateway(&upstream, None, CACHED, None).await;
        let logged = gateway(&upstream, Some(&log), "", None).await;
        let limited = gateway(&upstream, None, &tenant(""), None).await;
        // Spans to a collector that takes them (the instant upstream answers
        // any POST with 200), and to one that is stopped (a closed port).
        let traced = gateway(&upstream, None, "", Some(&upstream)).await;
        let stopped_collector = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let stopped = gateway(&upstream, None, "", Some(&stopped_collector)).await;
        let redis = redis();
        let shared = match &redis {
            Some((_, port)) => Some(
                gateway(
                    &upstream,
                    None,
                    &format!(
                        "{CACHED}{}",
                        tenant(&format!(
                            "[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n"
                        ))
                    ),
                    None,
                )
                .await,
            ),
            None => {
                println!("(redis-server is not installed: the Redis row is left out)");
                None
            }
        };
        let http: Http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

        let mut targets = vec![
            ("upstream directly", upstream.as_str(), model),
            ("through Meridian, no log", quiet.as_str(), "chat"),
            ("through Meridian, log to a file", logged.as_str(), "chat"),
            ("  + tenant limits, memory", limited.as_str(), "chat"),
            ("  + traces, OTLP protobuf", traced.as_str(), "chat"),
            ("  + traces, collector stopped", stopped.as_str(), "chat"),
        ];
        if let Some(s) = &shared {
            targets.push(("  + tenant limits, Redis", s.as_str(), "chat"));
        }
        targets.push(("cache hit, memory", quiet.as_str(), "cached"));
        targets.push(("guard, 8 detectors (mask)", quiet.as_str(), "guarded"));
        if let Some(s) = &shared {
            targets.push(("cache hit, Redis (+ limits)", s.as_str(), "cached"));
        }
        // Rounds alternate between the three so that neither warm-up nor a
        // busy moment of the machine favours one of them.
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for _ in 0..ROUNDS {
            for (i, (_, base, model)) in targets.iter().enumerate() {
                lat[i].extend(sequential(&http, base, model, n / ROUNDS).await);
            }
        }
        println!("Converse, one request at a time, {n} requests each (µs)");
        println!("{:<34} {:>8} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99", "mean");
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for ((name, _, _), l) in targets.iter().zip(&mut lat) {
            l.sort_by(f64::total_cmp);
            let mean = l.iter().sum::<f64>() / l.len() as f64;
            println!(
                "{name:<34} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                pct(l, 0.5),
                pct(l, 0.9),
                pct(l, 0.99),
                mean
            );
            p50.push(pct(l, 0.5));
            p99.push(pct(l, 0.99));
        }
        println!(
            "added by Meridian at p50: {:.0} µs without the log, {:.0} µs with it",
            p50[1] - p50[0],
            p50[2] - p50[0]
        );
        println!(
            "added by tenant admission (vs no log): memory p50 {:+.0} µs, p99 {:+.0} µs",
            p50[3] - p50[1],
            p99[3] - p99[1]
        );
        println!(
            "added by tracing (vs no log): p50 {:+.0} µs, p99 {:+.0} µs; with the collector stopped: p50 {:+.0} µs, p99 {:+.0} µs",
            p50[4] - p50[1],
            p99[4] - p99[1],
            p50[5] - p50[1],
            p99[5] - p99[1]
        );
        if shared.is_some() {
            println!(
                "added by tenant admission (vs no log): Redis p50 {:+.0} µs, p99 {:+.0} µs",
                p50[6] - p50[1],
                p99[6] - p99[1]
            );
        }

        println!("\nConverse, 32 clients, {m} requests");
        let mut rps = vec![0.0; targets.len()];
        for _ in 0..ROUNDS {
            for (i, (_, base, model)) in targets.iter().enumerate() {
                rps[i] += throughput(&http, base, model, 32, m / ROUNDS).await / ROUNDS as f64;
            }
        }
        for ((name, _, _), r) in targets.iter().zip(rps) {
            println!("{name:<34} {r:>8.0} req/s");
        }
        // What the tracing gateways say they did with their spans.
        for (name, base) in [("collector up", &traced), ("collector stopped", &stopped)] {
            let req = hyper::Request::get(format!("{base}/metrics"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let body = http.request(req).await.unwrap().into_body().collect().await;
            let text = String::from_utf8_lossy(&body.unwrap().to_bytes()).into_owned();
            let spans: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("meridian_trace_spans"))
                .collect();
            println!("spans, {name}: {}", spans.join("; "));
        }
        let (rss, hwm) = memory_kib();
        println!(
            "\nresident memory: {} KiB at start, {rss} KiB now, peak {hwm} KiB (bench client, upstream and every gateway above in one process)",
            rss0
        );
        let lines = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
        assert!(lines >= n, "the logged gateway wrote {lines} records");
        if let Some((mut child, _)) = redis {
            let _ = child.kill();
        }
    });
}
