//! Events are forwarded as they arrive: the upstream sends its next event
//! only after the client has received the previous one through the gateway,
//! so a gateway that holds an event back until the next arrives never
//! finishes. Only the stream's closing frame (Converse's `metadata`) waits
//! for the upstream's end, so the request is accounted for first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test

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

#[tokio::test]
async fn events_are_forwarded_as_they_arrive() {
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
    let event = |t: &str, p: &str| Ok(Frame::data(eventstream::event(t, p.as_bytes())));
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
