//! Events are forwarded as they arrive: the upstream sends its next event
//! only after the client has received the previous one through the gateway,
//! so a gateway that holds an event back until the next arrives never
//! finishes. Only the stream's closing frame (Converse's `metadata`) waits
//! for the upstream's end, so the request is accounted for first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meridian_wire::eventstream::{self, FrameKind};
use tokio::sync::mpsc;

type Feed = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// A Bedrock-compatible upstream that answers one streaming request with
/// whatever the test feeds it, as it is fed; its URL and the feed.
async fn scripted_upstream() -> (String, Feed) {
    let (feed, events) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(Some(events)));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let events = events.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let events = events.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        let rx = events.lock().await.take().expect("one stream only");
                        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/vnd.amazon.eventstream")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (upstream, feed)
}

fn event(t: &str, p: &str) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(eventstream::event(t, p.as_bytes())))
}

#[tokio::test]
async fn events_are_forwarded_as_they_arrive() {
    let (upstream, feed) = scripted_upstream().await;
    let gateway = common::gateway_before(&upstream, None).await;

    let tcp = tokio::net::TcpStream::connect(gateway.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/model/chat/converse-stream")
        .header("host", "gateway")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
        )))
        .unwrap();
    // The first event is sent before the request is, so the attempt has its
    // first byte as soon as it is made.
    feed.send(event("messageStart", r#"{"role":"assistant"}"#))
        .await
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut decoder = eventstream::Decoder::new();
    // The next event through the gateway, within 10 s (a gateway that held
    // it back would wait forever: nothing more is sent until it arrives).
    let mut next = async || -> Option<String> {
        loop {
            if let Some(f) = decoder.next_frame().unwrap() {
                let FrameKind::Event(kind) = f.kind else {
                    panic!("exception {:?}", f.payload)
                };
                return Some(kind);
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("an event was held back")?
                .unwrap();
            if let Ok(d) = frame.into_data() {
                decoder.push(&d);
            }
        }
    };
    assert_eq!(next().await.as_deref(), Some("messageStart"));
    for (t, p) in [
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"one "}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"two"}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        ("messageStop", r#"{"stopReason":"end_turn"}"#),
    ] {
        feed.send(event(t, p)).await.unwrap();
        assert_eq!(
            next().await.as_deref(),
            Some(t),
            "{t} was not forwarded at once"
        );
    }
    // The closing frame waits for the upstream's end.
    feed.send(event(
        "metadata",
        r#"{"usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5},"metrics":{"latencyMs":1}}"#,
    ))
    .await
    .unwrap();
    drop(feed);
    assert_eq!(next().await.as_deref(), Some("metadata"));
    assert_eq!(next().await, None, "the stream ends after metadata");
}

/// The invocation record of the one request a gateway served.
async fn only_record(log: &std::path::Path) -> serde_json::Value {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(log)
            && let Some(line) = text.lines().next()
        {
            return serde_json::from_str(line).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no invocation record in {}", log.display());
}

#[tokio::test]
async fn an_upstream_exception_mid_stream_ends_it_and_is_recorded_as_that_error() {
    for door in ["bedrock", "openai"] {
        let (upstream, feed) = scripted_upstream().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.ndjson");
        let gateway = common::gateway_before(&upstream, Some(&log)).await;
        feed.send(event("messageStart", r#"{"role":"assistant"}"#))
            .await
            .unwrap();
        feed.send(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"twelve bytes and more"}}"#,
        ))
        .await
        .unwrap();
        feed.send(Ok(Frame::data(eventstream::exception(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait."}"#,
        ))))
        .await
        .unwrap();
        drop(feed);
        let (path, body) = match door {
            "bedrock" => (
                "/model/chat/converse-stream",
                r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
            ),
            _ => (
                "/v1/chat/completions",
                r#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            ),
        };
        let reply = common::send("POST", &format!("{gateway}{path}"), body, &[]).await;
        assert_eq!(reply.status, 200, "{door}");
        if door == "bedrock" {
            let mut decoder = eventstream::Decoder::new();
            decoder.push(&reply.body);
            let mut kinds = Vec::new();
            while let Some(f) = decoder.next_frame().unwrap() {
                kinds.push(f.kind);
            }
            assert_eq!(
                kinds,
                vec![
                    FrameKind::Event("messageStart".into()),
                    FrameKind::Event("contentBlockDelta".into()),
                    FrameKind::Exception("throttlingException".into()),
                ]
            );
        } else {
            let text = String::from_utf8_lossy(&reply.body);
            assert!(text.contains("twelve bytes and more"), "{text}");
            assert!(text.contains("Too many tokens, please wait."), "{text}");
            assert!(
                !text.contains("[DONE]"),
                "a failed stream is not done: {text}"
            );
        }
        let record = only_record(&log).await;
        assert_eq!(
            record["errorCode"], "ThrottlingException",
            "{door}: {record}"
        );
        assert!(
            record["output"]["outputTokenCount"].as_u64().unwrap() >= 1,
            "{door}: {record}"
        );
    }
}

/// An upstream that takes one call and answers with `head` (nothing when
/// empty), then holds the connection: reports when the request arrived and
/// when the gateway closed the connection (the call was cancelled).
async fn holding_upstream(
    head: Vec<u8>,
) -> (
    String,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, arrived_rx) = tokio::sync::oneshot::channel();
    let (closed, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // The head and the (small) body: up to the JSON's closing brace.
        while !(seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.ends_with(b"}")) {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed before its request was whole");
            seen.extend_from_slice(&buf[..n]);
        }
        if !head.is_empty() {
            tcp.write_all(&head).await.unwrap();
        }
        let _ = arrived.send(());
        // Wait for the gateway to close the connection.
        while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed.send(());
    });
    (url, arrived_rx, closed_rx)
}

/// A client that hangs up while its request is in flight — before the
/// upstream's answer, or mid-stream while no event is due — has its call
/// cancelled upstream and recorded as `client-gone`. The gateway's HTTP/1
/// connections do not read while a request is in flight (they keep one
/// read buffer); the socket is watched for the client leaving instead.
#[tokio::test]
async fn a_client_that_hangs_up_mid_request_cancels_the_call() {
    use tokio::io::AsyncWriteExt;
    let mut stream_head = b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let start = eventstream::event("messageStart", br#"{"role":"assistant"}"#);
    stream_head.extend_from_slice(format!("{:x}\r\n", start.len()).as_bytes());
    stream_head.extend_from_slice(&start);
    stream_head.extend_from_slice(b"\r\n");
    for (path, head) in [
        ("/model/chat/converse", Vec::new()),
        ("/model/chat/converse-stream", stream_head),
    ] {
        let (upstream, arrived, closed) = holding_upstream(head).await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.ndjson");
        let gateway = common::gateway_before(&upstream, Some(&log)).await;
        let mut client = tokio::net::TcpStream::connect(gateway.trim_start_matches("http://"))
            .await
            .unwrap();
        let body = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(req.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), arrived)
            .await
            .expect("the call did not reach the upstream")
            .unwrap();
        // Let the gateway forward what the upstream sent, then hang up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .unwrap_or_else(|_| panic!("{path}: the upstream call was not cancelled"))
            .unwrap();
        let record = only_record(&log).await;
        assert_eq!(record["errorCode"], "client-gone", "{path}: {record}");
    }
}
