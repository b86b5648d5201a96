//! Identity binds what it authorizes: a SigV4 signature covers the body it
//! came with, unsigned payloads and signatures without `host` are refused,
//! an unknown caller is refused before its body is read; and the server's
//! own limits (body read time, concurrent requests) answer in Bedrock's shape.
//!
//! Requests are written byte for byte on a TCP socket, so nothing between
//! the test and the gateway can fix them up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use meridian_router::health::Health;
use meridian_sim::FaultSet;
use meridian_wire::sigv4::{self, PathEncoding, Rules};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY_ID: &str = "AKIDPIPELINE";
const SECRET: &str = "pipeline-secret";
const API_KEY: &str = "mk-inbound-auth-00001";
const PATH: &str = "/model/chat/converse";
const BODY: &str = r#"{"messages":[{"role":"user","content":[{"text":"signed"}]}],"inferenceConfig":{"maxTokens":8}}"#;
const SWAPPED: &str = r#"{"messages":[{"role":"user","content":[{"text":"forged"}]}],"inferenceConfig":{"maxTokens":8}}"#;

fn config(extra: &str) -> String {
    format!(
        "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n\
         [auth]\ncredentials = [{{ access_key_id = \"{KEY_ID}\", secret_access_key = \"{SECRET}\" }}]\n\
         api_keys = [\"{API_KEY}\"]\n{extra}"
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn amz_now() -> String {
    // 2026-11-22T07:05:09.123Z → 20261122T070509Z
    let iso = meridian_gateway::invocation::rfc3339(SystemTime::now());
    format!("{}Z", iso[..19].replace(['-', ':'], ""))
}

/// Headers for a request signed over `signed` (lowercase names, in the
/// order given) and `body`.
fn signed_headers(
    host: &str,
    body: &str,
    mut headers: Vec<(String, String)>,
    signed: &[&str],
) -> Vec<(String, String)> {
    let date = amz_now();
    headers.push(("host".into(), host.into()));
    headers.push(("x-amz-date".into(), date.clone()));
    headers.push(("content-type".into(), "application/json".into()));
    let mut map = http::HeaderMap::new();
    for (k, v) in &headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let req = sigv4::Request {
        method: "POST",
        raw_path: PATH,
        raw_query: "",
        headers: &map,
        body: body.as_bytes(),
    };
    let rules = Rules {
        service: "bedrock",
        normalize: true,
        encoding: PathEncoding::Double,
        now: None,
    };
    let mut names = signed.to_vec();
    names.sort_unstable();
    let names = names.join(";");
    let canonical = sigv4::canonical_request(&req, &names, &rules).unwrap();
    let scope = format!("{}/us-east-1/bedrock/aws4_request", &date[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{SECRET}").as_bytes(), &date.as_bytes()[..8]);
    let k = hmac(&k, b"us-east-1");
    let k = hmac(&k, b"bedrock");
    let k = hmac(&k, b"aws4_request");
    let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, SignedHeaders={names}, Signature={sig}"
        ),
    ));
    headers
}

struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Writes a request head and `body` (which may be shorter than the
/// `content-length` the head declares), then reads the answer within `wait`.
async fn raw(
    addr: &str,
    headers: &[(String, String)],
    length: usize,
    body: &[u8],
    wait: Duration,
) -> Option<Raw> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {PATH} HTTP/1.1\r\n");
    for (k, v) in headers {
        if k != "content-length" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "content-length: {length}\r\nconnection: close\r\n\r\n"
    ));
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before taking the whole body.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&buf);
            if let Some((h, b)) = text.split_once("\r\n\r\n") {
                let len = h
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|n| b.len() >= n) {
                    break;
                }
            }
        }
    })
    .await;
    if read.is_err() && buf.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// Asserts a Bedrock-shaped refusal.
fn refused(r: &Raw, status: u16, error_type: &str) {
    assert_eq!(
        (r.status, self::error_type(r)),
        (status, error_type),
        "{}",
        r.body
    );
}

fn error_type(r: &Raw) -> &str {
    r.head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-amzn-errortype: "))
        .map_or("", |l| {
            l["x-amzn-errortype: ".len()..]
                .split(':')
                .next()
                .unwrap_or("")
        })
}

async fn gateway(extra: &str, max_body: usize) -> (common::Gateway, String) {
    let fleet = common::us_fleet().await;
    let (url, _state) = common::gateway_custom(&fleet, &config(extra), Health::default(), |s| {
        s.runtime_mut().max_body = max_body;
    })
    .await;
    let addr = url.trim_start_matches("http://").to_string();
    (common::Gateway { fleet }, addr)
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_covers_its_body() {
    let (_gw, addr) = gateway("", 1_000_000).await;
    let signed = &["host", "x-amz-date", "content-type"];
    let ok = signed_headers(&addr, BODY, Vec::new(), signed);
    let r = raw(&addr, &ok, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // The captured head with another body.
    let r = raw(&addr, &ok, SWAPPED.len(), SWAPPED.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 403, "InvalidSignatureException");

    // The same, claiming the original body's hash in an unsigned header.
    let mut claimed = ok.clone();
    claimed.push((
        "x-amz-content-sha256".into(),
        hex::encode(Sha256::digest(BODY)),
    ));
    let r = raw(&addr, &claimed, SWAPPED.len(), SWAPPED.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 403, "InvalidSignatureException");

    // A hash header that is right is fine, signed or not.
    let mut right = ok.clone();
    right.push((
        "x-amz-content-sha256".into(),
        hex::encode(Sha256::digest(BODY)),
    ));
    let r = raw(&addr, &right, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_payloads_and_signatures_without_host_are_refused() {
    let (_gw, addr) = gateway("", 1_000_000).await;
    let unsigned = signed_headers(
        &addr,
        BODY,
        vec![("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into())],
        &["host", "x-amz-date", "x-amz-content-sha256"],
    );
    let r = raw(&addr, &unsigned, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 403, "InvalidSignatureException");
    assert!(r.body.contains("UNSIGNED-PAYLOAD"), "{}", r.body);

    let streaming = signed_headers(
        &addr,
        BODY,
        vec![(
            "x-amz-content-sha256".into(),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into(),
        )],
        &["host", "x-amz-date", "x-amz-content-sha256"],
    );
    let r = raw(&addr, &streaming, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 403, "InvalidSignatureException");

    // A valid signature that does not cover `host`.
    let hostless = signed_headers(&addr, BODY, Vec::new(), &["x-amz-date", "content-type"]);
    let r = raw(&addr, &hostless, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 403, "InvalidSignatureException");
    assert!(r.body.contains("'host'"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_callers_are_refused_before_their_body_is_read() {
    let (_gw, addr) = gateway("", 25_000_000).await;
    // A 25 MB upload of which only the first megabyte is ever sent: the
    // answer must come anyway, so it was decided on the head alone.
    let length = 25_000_000;
    let first = vec![b' '; 1 << 20];
    let mut unknown = signed_headers(&addr, BODY, Vec::new(), &["host", "x-amz-date"]);
    for (k, v) in &mut unknown {
        if k == "authorization" {
            *v = v.replace(KEY_ID, "AKIDUNKNOWN");
        }
    }
    let r = raw(&addr, &unknown, length, &first, WAIT)
        .await
        .expect("no answer: the gateway waited for the body");
    refused(&r, 403, "UnrecognizedClientException");

    let none = vec![("host".to_string(), addr.clone())];
    let r = raw(&addr, &none, length, &first, WAIT)
        .await
        .expect("no answer");
    refused(&r, 403, "MissingAuthenticationTokenException");

    let wrong_key = vec![(
        "authorization".to_string(),
        "Bearer mk-not-a-key-at-all".to_string(),
    )];
    let r = raw(&addr, &wrong_key, length, &first, WAIT)
        .await
        .expect("no answer");
    refused(&r, 403, "AccessDeniedException");

    // A known caller's 25 MB upload cut short is read (and times out), not refused early.
    let known = vec![("authorization".to_string(), format!("Bearer {API_KEY}"))];
    assert!(
        raw(&addr, &known, length, &first, Duration::from_millis(500))
            .await
            .is_none(),
        "a known caller's body is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_times_out() {
    let (_gw, addr) = gateway("[server]\nbody_read_timeout_ms = 300\n", 1_000_000).await;
    let known = vec![("authorization".to_string(), format!("Bearer {API_KEY}"))];
    let r = raw(&addr, &known, BODY.len(), &BODY.as_bytes()[..10], WAIT)
        .await
        .expect("no answer");
    refused(&r, 400, "ValidationException");
    assert!(
        r.body.contains("did not arrive within 300 ms"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_cap_get_a_503() {
    let fleet = common::us_fleet().await;
    let toml = config("[server]\nmax_concurrent_requests = 1\n");
    let (url, _state) = common::gateway_custom(&fleet, &toml, Health::default(), |_| {}).await;
    let addr = url.trim_start_matches("http://").to_string();
    for r in common::US {
        fleet.set_faults(
            r,
            FaultSet {
                stall_ms: Some(1_500),
                ..FaultSet::default()
            },
        );
    }
    let known = vec![("authorization".to_string(), format!("Bearer {API_KEY}"))];
    let slow = {
        let (addr, known) = (addr.clone(), known.clone());
        tokio::spawn(async move { raw(&addr, &known, BODY.len(), BODY.as_bytes(), WAIT).await })
    };
    // Wait until the first request holds the only slot: the fleet has it.
    for _ in 0..100 {
        if !fleet.records().is_empty() || _state.admission.available_permits() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        _state.admission.available_permits(),
        0,
        "the first request did not start"
    );
    let r = raw(&addr, &known, BODY.len(), BODY.as_bytes(), WAIT)
        .await
        .unwrap();
    refused(&r, 503, "ServiceUnavailableException");
    assert!(r.body.contains("1 concurrent requests"), "{}", r.body);
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
}
