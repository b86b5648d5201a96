//! The caller's W3C trace goes upstream as AWS takes it: each attempt
//! carries `X-Amzn-Trace-Id` (X-Ray's form of the same trace), under the
//! caller's span when Meridian exports no spans, under the attempt's own
//! CLIENT span when it does; nothing is added when there is no trace at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::OtlpProtocol;
use meridian_gateway::traces::Tracer;
use parking_lot::Mutex;

const ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4},"metrics":{"latencyMs":1}}"#;
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TOML: &str = "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n";

/// What the upstream saw of `x-amzn-trace-id`, per request.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

async fn recording_upstream(seen: Seen) -> String {
    common::upstream(move |req: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            seen.lock().push(
                req.headers()
                    .get("x-amzn-trace-id")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            http::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                .unwrap()
        }
    })
    .await
}

async fn converse(gateway: &str, traceparent: Option<&str>) {
    let headers: Vec<(&str, &str)> = traceparent
        .map(|t| vec![("traceparent", t)])
        .unwrap_or_default();
    let body = r#"{"messages":[{"role":"user","content":[{"text":"hello"}]}]}"#;
    let reply = common::send(
        "POST",
        &format!("{gateway}/model/chat/converse"),
        body,
        &headers,
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn without_tracing_upstream_continues_the_callers_span() {
    let seen: Seen = Arc::default();
    let upstream = recording_upstream(seen.clone()).await;
    let gateway = common::gateway_in_front(&upstream, TOML, &common::US, |_| {}).await;
    converse(&gateway, Some(CALLER)).await;
    converse(&gateway, None).await;
    converse(&gateway, Some("not-a-traceparent")).await;
    assert_eq!(
        *seen.lock(),
        vec![
            Some(
                "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1".into()
            ),
            None,
            None,
        ]
    );
}

/// Spans an OTLP/HTTP protobuf collector received: (trace, span, parent, kind).
type Spans = Arc<Mutex<Vec<(String, String, String, i32)>>>;

async fn collector(spans: Spans) -> String {
    use http_body_util::BodyExt;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    common::upstream(move |req: http::Request<hyper::body::Incoming>| {
        let spans = spans.clone();
        async move {
            assert_eq!(req.uri().path(), "/v1/traces");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let batch = ExportTraceServiceRequest::decode(body).unwrap();
            for rs in batch.resource_spans {
                for ss in rs.scope_spans {
                    spans.lock().extend(ss.spans.into_iter().map(|s| {
                        (
                            hex::encode(s.trace_id),
                            hex::encode(s.span_id),
                            hex::encode(s.parent_span_id),
                            s.kind,
                        )
                    }));
                }
            }
            http::Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await
}

#[tokio::test]
async fn with_tracing_each_attempt_goes_up_under_the_client_span_it_exports() {
    let (seen, spans): (Seen, Spans) = (Arc::default(), Arc::default());
    let upstream = recording_upstream(seen.clone()).await;
    let otlp = collector(spans.clone()).await;
    let gateway = common::gateway_in_front(&upstream, TOML, &common::US, |state| {
        state.runtime_mut().tracer = Some(Arc::new(Tracer::start(
            &otlp,
            OtlpProtocol::HttpProtobuf,
            "t",
        )));
    })
    .await;
    converse(&gateway, Some(CALLER)).await;
    converse(&gateway, None).await;
    let seen = seen.lock().clone();
    let first = seen[0].as_deref().unwrap();
    let (root, parent) = first.split_once(";Parent=").unwrap();
    assert_eq!(root, "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736");
    let (attempt_span, sampled) = parent.split_once(';').unwrap();
    assert_eq!(sampled, "Sampled=1");
    // A request without a trace starts one of Meridian's.
    let second = seen[1].as_deref().unwrap();
    assert!(second.starts_with("Root=1-"), "{second}");
    assert!(!second.contains("4bf92f35"), "{second}");
    // The exported spans (batched every second) agree with the header: the
    // attempt's CLIENT span is the Parent sent upstream, under the request's
    // SERVER span, under the caller's span, all in the caller's trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut mine = Vec::new();
    for _ in 0..100 {
        mine = spans
            .lock()
            .iter()
            .filter(|s| s.0 == trace)
            .cloned()
            .collect();
        if mine.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let server = mine.iter().find(|s| s.3 == 2).expect("the SERVER span");
    let client = mine.iter().find(|s| s.3 == 3).expect("the CLIENT span");
    assert_eq!(server.2, "00f067aa0ba902b7");
    assert_eq!(client.2, server.1);
    assert_eq!(client.1, attempt_span);
}
