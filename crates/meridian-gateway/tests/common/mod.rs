//! A gateway in front of a simulated US fleet, for the gateway's own tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // shared by several test files

use std::sync::Arc;

use meridian_catalog::Catalog;
use meridian_catalog::detect::Step;
use meridian_gateway::{AppState, ServeOptions, UpstreamAccount, UpstreamInfo};
use meridian_router::health::Health;
use meridian_sim::{Fleet, FleetConfig, LatencyModel};
use meridian_upstream::{BedrockClient, Timeouts};

/// The four US regions of the `us.` profiles.
pub const US: [&str; 4] = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"];

/// A fast simulated US fleet.
pub async fn us_fleet() -> Fleet {
    fleet(&US).await
}

/// A fast simulated fleet of these regions.
pub async fn fleet(regions: &[&str]) -> Fleet {
    let mut fc = FleetConfig::new(regions.iter().copied());
    fc.latency = LatencyModel {
        ttft_ms: 2.0,
        tokens_per_sec: 5000.0,
        jitter: 0.0,
        rtt_ms_per_1000km: 0.0,
    };
    Fleet::start(Catalog::builtin().unwrap(), fc, None, None)
        .await
        .unwrap()
}

/// A gateway in us-east-1, US-only, exposing `chat` = claude-sonnet-4-5,
/// calling `fleet`; returns its base URL.
pub async fn gateway(fleet: &Fleet, health: Health) -> String {
    let toml = "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n";
    gateway_with(fleet, toml, health).await.0
}

/// A gateway in us-east-1 with this config, one upstream account per
/// `[[upstream.accounts]]` entry (or one `default` account), all calling
/// `fleet`; returns its base URL and its state.
pub async fn gateway_with(fleet: &Fleet, toml: &str, health: Health) -> (String, Arc<AppState>) {
    gateway_custom(fleet, toml, health, |_| {}).await
}

/// As [`gateway_with`], with `adjust` applied to the state before it serves.
pub async fn gateway_custom(
    fleet: &Fleet,
    toml: &str,
    health: Health,
    adjust: impl FnOnce(&mut AppState),
) -> (String, Arc<AppState>) {
    let m = fleet.manifest();
    let loaded = meridian_config::parse(toml, None).unwrap();
    let client = BedrockClient::with_static_keys(
        &m.credentials.access_key_id,
        &m.credentials.secret_access_key,
        m.endpoints(),
        Timeouts::default(),
    )
    .with_mantle(m.mantle_endpoints());
    let mut accounts: Vec<UpstreamAccount> = loaded
        .config
        .upstream
        .accounts
        .iter()
        .map(|a| UpstreamAccount {
            name: a.name.clone(),
            client: client.clone(),
            regions: a.regions.iter().cloned().collect(),
        })
        .collect();
    if accounts.is_empty() {
        accounts.push(UpstreamAccount {
            name: "default".into(),
            client,
            regions: Default::default(),
        });
    }
    let info = UpstreamInfo {
        mode: "simulated",
        fallback: false,
        detail: "test".into(),
    };
    let mut state = AppState::with_accounts(
        loaded.config,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        accounts,
        info,
    );
    state.runtime_mut().max_body = 1_000_000;
    state.runtime_mut().router = Arc::new(meridian_router::Router::new(health));
    adjust(&mut state);
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(meridian_gateway::serve(
        listener,
        state.clone(),
        ServeOptions::default(),
        std::future::pending(),
    ));
    (url, state)
}

/// Keeps a test's fleet alive as long as its gateway.
pub struct Gateway {
    pub fleet: Fleet,
}

/// An answer read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

/// Sends one request (JSON content type) and reads the whole answer.
pub async fn send(method: &str, url: &str, body: &'static str, headers: &[(&str, &str)]) -> Reply {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// A gateway in us-east-1 exposing `chat` (claude-sonnet-4-5, US-only),
/// every US region served by the Bedrock-compatible server at `upstream`
/// (signed with static keys), writing invocation records to `log` when
/// given; returns its base URL.
pub async fn gateway_before(upstream: &str, log: Option<&std::path::Path>) -> String {
    let toml = "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n";
    gateway_in_front(upstream, toml, &US, |state| {
        state.runtime_mut().log = Arc::new(
            meridian_gateway::invocation::InvocationLog::new(false, log, false, None, 16_384)
                .unwrap(),
        );
    })
    .await
}

/// A gateway with this config whose `regions` are served by the
/// Bedrock-compatible server at `upstream` (static keys), with `adjust`
/// applied to its state; returns its base URL.
pub async fn gateway_in_front(
    upstream: &str,
    toml: &str,
    regions: &[&str],
    adjust: impl FnOnce(&mut AppState),
) -> String {
    let loaded = meridian_config::parse(toml, None).unwrap();
    let endpoints = regions
        .iter()
        .map(|r| (r.to_string(), upstream.to_string()))
        .collect();
    let client = BedrockClient::with_static_keys("AKID", "secret", endpoints, Timeouts::default());
    let info = UpstreamInfo {
        mode: "aws",
        fallback: false,
        detail: "test".into(),
    };
    let mut state = AppState::new(
        loaded.config,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        client,
        info,
    );
    adjust(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(meridian_gateway::serve(
        listener,
        Arc::new(state),
        ServeOptions::default(),
        std::future::pending(),
    ));
    url
}

/// A gateway with this config whose invocation log is written to `log`
/// (a file), calling `fleet`; returns its base URL.
pub async fn gateway_logging(fleet: &Fleet, toml: &str, log: &std::path::Path) -> String {
    let log = log.to_path_buf();
    gateway_custom(fleet, toml, Health::default(), move |s| {
        s.runtime_mut().log = Arc::new(
            meridian_gateway::invocation::InvocationLog::new(false, Some(&log), false, None, 1024)
                .unwrap(),
        );
    })
    .await
    .0
}

/// The invocation record of `request_id` in the log file, once it is
/// there (whole lines only: the writer may be in the middle of one).
pub async fn record(log: &std::path::Path, request_id: &str) -> Option<serde_json::Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut whole = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        if let Some(line) = whole.find(|l| l.contains(request_id)) {
            return Some(serde_json::from_str(line).unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

/// An HTTP/1 server on 127.0.0.1 answering each request with `answer`;
/// returns its base URL. It runs until the test's runtime ends.
pub async fn upstream<F, Fut>(answer: F) -> String
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let reply = answer(req);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}
