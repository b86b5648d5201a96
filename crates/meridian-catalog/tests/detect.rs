//! The region detection chain, step by step, with an injected environment, a
//! temporary AWS config file and local IMDSv2 / ECS metadata servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use meridian_catalog::detect::{DetectOptions, Step, detect};
use meridian_catalog::env::MapEnv;
use tokio::net::TcpListener;

const TOKEN: &str = "AQAEAtest-token==";

/// A metadata server on 127.0.0.1: IMDSv2 (token PUT, then region GET with
/// the token) and ECS task metadata. Counts requests it answered.
async fn metadata_server(region: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(answer(&req, region)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

fn answer(req: &Request<Incoming>, region: &str) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match (req.method(), req.uri().path()) {
        (&Method::PUT, "/latest/api/token") => {
            if req
                .headers()
                .contains_key("x-aws-ec2-metadata-token-ttl-seconds")
            {
                reply(StatusCode::OK, TOKEN.into())
            } else {
                reply(StatusCode::BAD_REQUEST, String::new())
            }
        }
        (&Method::GET, "/latest/meta-data/placement/region") => {
            if req
                .headers()
                .get("x-aws-ec2-metadata-token")
                .is_some_and(|t| t == TOKEN)
            {
                reply(StatusCode::OK, region.into())
            } else {
                reply(StatusCode::UNAUTHORIZED, String::new())
            }
        }
        (&Method::GET, "/v4/task") => reply(
            StatusCode::OK,
            format!(
                r#"{{"Cluster":"c","TaskARN":"arn:aws:ecs:{region}:123456789012:task/c/abc","AvailabilityZone":"{region}a"}}"#
            ),
        ),
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    }
}

fn opts() -> DetectOptions {
    DetectOptions {
        timeout: std::time::Duration::from_millis(500),
    }
}

/// An environment that never reaches a real metadata endpoint.
fn base_env(extra: &[(&str, String)]) -> MapEnv {
    let mut pairs: Vec<(String, String)> = vec![
        ("HOME".into(), "/nonexistent-home".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    for (k, v) in extra {
        pairs.retain(|(key, _)| key != k);
        pairs.push((k.to_string(), v.clone()));
    }
    MapEnv::new(pairs)
}

#[tokio::test]
async fn environment_variables_in_order() {
    let env = base_env(&[
        ("MERIDIAN_REGION", "eu-west-3".into()),
        ("AWS_REGION", "us-west-2".into()),
        ("AWS_DEFAULT_REGION", "ap-northeast-1".into()),
    ]);
    let d = detect(&env, &opts()).await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("eu-west-3", Step::MeridianRegion)
    );

    let env = base_env(&[
        ("AWS_REGION", "us-west-2".into()),
        ("AWS_DEFAULT_REGION", "ap-northeast-1".into()),
    ]);
    let d = detect(&env, &opts()).await;
    assert_eq!((d.region.as_str(), d.step), ("us-west-2", Step::AwsRegion));
    assert_eq!(d.attempts.len(), 2);

    let env = base_env(&[
        ("AWS_DEFAULT_REGION", "ap-northeast-1".into()),
        ("AWS_REGION", "  ".into()),
    ]);
    let d = detect(&env, &opts()).await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("ap-northeast-1", Step::AwsDefaultRegion)
    );
}

#[tokio::test]
async fn aws_config_file_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(
        &file,
        "[default]\nregion = eu-central-1\n[profile tokyo]\nregion = ap-northeast-1\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let d = detect(&base_env(&[("AWS_CONFIG_FILE", path.clone())]), &opts()).await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("eu-central-1", Step::ProfileConfig)
    );
    let env = base_env(&[("AWS_CONFIG_FILE", path), ("AWS_PROFILE", "tokyo".into())]);
    let d = detect(&env, &opts()).await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("ap-northeast-1", Step::ProfileConfig)
    );

    // ~/.aws/config under HOME when AWS_CONFIG_FILE is unset.
    std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
    std::fs::write(
        dir.path().join(".aws/config"),
        "[default]\nregion=sa-east-1\n",
    )
    .unwrap();
    let d = detect(
        &base_env(&[("HOME", dir.path().display().to_string())]),
        &opts(),
    )
    .await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("sa-east-1", Step::ProfileConfig)
    );
}

#[tokio::test]
async fn imds_v2_token_then_region() {
    let (addr, hits) = metadata_server("ap-southeast-2").await;
    let env = base_env(&[
        ("AWS_EC2_METADATA_DISABLED", "false".into()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{addr}"),
        ),
    ]);
    let d = detect(&env, &opts()).await;
    assert_eq!((d.region.as_str(), d.step), ("ap-southeast-2", Step::Imds));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "one token PUT and one region GET"
    );

    // Disabled: IMDS is never asked, even with an endpoint configured.
    let env = base_env(&[(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://{addr}"),
    )]);
    let d = detect(&env, &opts()).await;
    assert_eq!(d.step, Step::Fallback);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn imds_that_refuses_falls_through_to_ecs() {
    // A closed port: IMDS fails fast and the chain moves on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (ecs, _) = metadata_server("eu-north-1").await;
    let env = base_env(&[
        ("AWS_EC2_METADATA_DISABLED", "false".into()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{closed}"),
        ),
        ("ECS_CONTAINER_METADATA_URI_V4", format!("http://{ecs}/v4")),
    ]);
    let d = detect(&env, &opts()).await;
    assert_eq!(
        (d.region.as_str(), d.step),
        ("eu-north-1", Step::EcsMetadata)
    );
    let imds = d.attempts.iter().find(|a| a.step == Step::Imds).unwrap();
    assert!(imds.region.is_none());
    assert!(imds.detail.contains(&closed.to_string()), "{}", imds.detail);
}

#[tokio::test]
async fn falls_back_to_us_east_1() {
    let d = detect(&base_env(&[]), &opts()).await;
    assert_eq!((d.region.as_str(), d.step), ("us-east-1", Step::Fallback));
    let steps: Vec<Step> = d.attempts.iter().map(|a| a.step).collect();
    assert_eq!(
        steps,
        [
            Step::MeridianRegion,
            Step::AwsRegion,
            Step::AwsDefaultRegion,
            Step::ProfileConfig,
            Step::Imds,
            Step::EcsMetadata,
            Step::Fallback
        ]
    );
}
