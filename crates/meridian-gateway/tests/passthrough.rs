//! Forward compatibility and limits, against an upstream that records what
//! it receives: fields Meridian does not know pass through untouched both
//! ways, and oversized request heads are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An upstream that records each request and answers a Converse response
/// carrying fields no current SDK knows.
async fn recording_upstream() -> (String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let rec = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let rec = rec.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let rec = rec.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        rec.lock()
                            .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                        let answer = json!({
                            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}, {"futureBlock": {"x": 1}}]}},
                            "stopReason": "end_turn",
                            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 1},
                            "futureTopLevel": {"kept": true}
                        });
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn gateway(upstream: &str) -> String {
    let toml = "region = \"us-east-1\"\n[models.chat]\nmodel = \"claude-3-haiku\"\n";
    let url = common::gateway_in_front(upstream, toml, &["us-east-1"], |state| {
        state.runtime_mut().max_body = 1_000_000;
        state.max_attempts = 1;
    })
    .await;
    url.trim_start_matches("http://").to_string()
}

async fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn unknown_fields_pass_through_both_ways() {
    let (upstream, seen) = recording_upstream().await;
    let addr = gateway(&upstream).await;
    let body = json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}, {"newContentBlock": {"y": 2}}]}],
        "inferenceConfig": {"maxTokens": 5, "newParameter": 0.5},
        "additionalModelRequestFields": {"top_k": 7},
        "brandNewMember": ["a", "b"]
    })
    .to_string();
    let req = format!(
        "POST /model/chat/converse HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw(&addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let json_body: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json_body["futureTopLevel"], json!({"kept": true}));
    assert_eq!(
        json_body["output"]["message"]["content"][1],
        json!({"futureBlock": {"x": 1}})
    );
    let (path, sent) = seen.lock()[0].clone();
    assert_eq!(
        path,
        "/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        sent,
        serde_json::from_str::<Value>(&body).unwrap(),
        "the body reaches Bedrock byte for byte"
    );
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let (upstream, seen) = recording_upstream().await;
    let addr = gateway(&upstream).await;
    let big = "a".repeat(100 * 1024);
    let req = format!(
        "POST /model/chat/converse HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    let resp = raw(&addr, req.as_bytes()).await;
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{}",
        &resp[..resp.len().min(900)]
    );
    assert!(seen.lock().is_empty());
}

/// Reads one HTTP/1 response with a `content-length` from `s`.
async fn one_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let whole: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return String::from_utf8_lossy(&whole).into_owned();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "the connection closed early: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_keep_alive_connection_is_parked_between_requests_and_kept() {
    // Between requests Meridian ends hyper's connection and keeps the
    // socket; the client sees one ordinary keep-alive connection: answers
    // in order, pipelined requests included, and no `connection: close`.
    let (upstream, _) = recording_upstream().await;
    let addr = gateway(&upstream).await;
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let get = |id: &str| format!("GET /health?n={id} HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut buf = Vec::new();
    s.write_all(get("1").as_bytes()).await.unwrap();
    let first = one_response(&mut s, &mut buf).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Two requests in one write, after the connection was parked.
    s.write_all(format!("{}{}", get("2"), get("3")).as_bytes())
        .await
        .unwrap();
    for _ in 0..2 {
        let r = one_response(&mut s, &mut buf).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r}");
    }
    // A request split across writes, the second part after a pause.
    let split = get("4");
    s.write_all(&split.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    s.write_all(&split.as_bytes()[10..]).await.unwrap();
    let r = one_response(&mut s, &mut buf).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Asked to close: answered, then closed.
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = one_response(&mut s, &mut buf).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed after a `connection: close` request")
        .unwrap();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
}
