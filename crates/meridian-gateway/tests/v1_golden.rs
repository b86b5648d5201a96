//! The `/v1` doors' bytes, golden-tested: for each request in a fixed set
//! (OpenAI chat completions and Responses, Anthropic Messages; whole and
//! streamed; tools, structured output, reasoning, images, errors), the body
//! the gateway sent upstream and the answer it gave the client are compared
//! byte for byte with `v1_golden.txt`, written by the translation code as it
//! was before a change to it (issue 30: typed wire structs must not change a
//! byte). Only what differs by run is masked: generated IDs and Unix times.
//!
//! `MERIDIAN_BLESS=1 cargo test -p meridian-gateway --test v1_golden`
//! rewrites the file; do that only for a change meant to alter the bytes, and
//! say so in the changelog.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

mod common;

use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use meridian_wire::eventstream;

const GOLDEN: &str = "tests/v1_golden.txt";

/// A Converse answer with reasoning, text and a tool call, and cache usage.
const CONVERSE_ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"The user asks for a distance.","signature":"sig1"}}},{"text":"About 480 km."},{"toolUse":{"toolUseId":"tooluse_abc","name":"get_distance","input":{"from":"Paris","to":"Frankfurt"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":21,"outputTokens":17,"totalTokens":38,"cacheReadInputTokens":4,"cacheWriteInputTokens":2},"metrics":{"latencyMs":120}}"#;

/// An Anthropic Messages answer (InvokeModel).
const INVOKE_ANSWER: &str = r#"{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"About 480 km."},{"type":"tool_use","id":"toolu_01","name":"get_distance","input":{"from":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":17,"cache_read_input_tokens":4}}"#;

/// ConverseStream events: reasoning, text in two deltas, a tool call.
fn converse_events() -> Vec<Bytes> {
    [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Distance asked."}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"About "}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"480 km."}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_abc","name":"get_distance"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"from\":\"Paris\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":2}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"usage":{"inputTokens":21,"outputTokens":17,"totalTokens":38},"metrics":{"latencyMs":120}}"#,
        ),
    ]
    .into_iter()
    .map(|(t, p)| eventstream::event(t, p.as_bytes()))
    .collect()
}

/// InvokeModelWithResponseStream chunks of an Anthropic Messages stream.
fn invoke_chunks() -> Vec<Bytes> {
    [
        r#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"About 480 km."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":17}}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":21,"outputTokenCount":17,"invocationLatency":120,"firstByteLatency":40}}"#,
    ]
    .into_iter()
    .map(|c| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c);
        eventstream::event("chunk", format!(r#"{{"bytes":"{b64}"}}"#).as_bytes())
    })
    .collect()
}

/// What the upstream was sent: path and body, in order.
type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An upstream answering Converse, ConverseStream, InvokeModel and its
/// stream with the fixed answers above, recording what it was sent.
async fn scripted_upstream(seen: Seen) -> String {
    common::upstream(move |req: hyper::Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().push((path.clone(), body));
            let (content_type, body) = if path.ends_with("/converse-stream") {
                (
                    "application/vnd.amazon.eventstream",
                    Bytes::from(converse_events().concat()),
                )
            } else if path.ends_with("/invoke-with-response-stream") {
                (
                    "application/vnd.amazon.eventstream",
                    Bytes::from(invoke_chunks().concat()),
                )
            } else if path.ends_with("/invoke") {
                (
                    "application/json",
                    Bytes::from_static(INVOKE_ANSWER.as_bytes()),
                )
            } else {
                (
                    "application/json",
                    Bytes::from_static(CONVERSE_ANSWER.as_bytes()),
                )
            };
            hyper::Response::builder()
                .header("content-type", content_type)
                .header("x-amzn-bedrock-input-token-count", "21")
                .header("x-amzn-bedrock-output-token-count", "17")
                .body(Full::new(body))
                .unwrap()
        }
    })
    .await
}

/// A request: its name, door path, body and extra headers.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The requests.
fn cases() -> Vec<Case> {
    const MSG: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];
    vec![
        (
            "chat, plain",
            "/v1/chat/completions",
            r#"{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"How far is Paris from Frankfurt?"}]}"#,
            &[],
        ),
        (
            "chat, every translated field",
            "/v1/chat/completions",
            r#"{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Use km."}]},{"role":"user","content":[{"type":"text","text":"How far?"},{"type":"image_url","image_url":{"url":"data:image/jpg;base64,AAAA"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_distance","arguments":"{\"from\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"480"},{"role":"user","content":"And in miles?"}],"max_completion_tokens":100,"temperature":0.2,"top_p":0.9,"stop":["\n\n"],"tools":[{"type":"function","function":{"name":"get_distance","description":"Distance between cities","parameters":{"type":"object","properties":{"from":{"type":"string"}}},"strict":true}}],"tool_choice":"required","user":"u1","seed":7,"top_k":5,"service_tier":"flex"}"#,
            &[],
        ),
        (
            "chat, reasoning and json_schema",
            "/v1/chat/completions",
            r#"{"model":"chat","reasoning_effort":"low","response_format":{"type":"json_schema","json_schema":{"name":"dist","description":"A distance","schema":{"type":"object","properties":{"km":{"type":"number"}}}}},"tool_choice":{"type":"function","function":{"name":"get_distance"}},"tools":[{"type":"function","function":{"name":"get_distance"}}],"messages":[{"role":"user","content":"How far?"}],"stop":"END"}"#,
            &[],
        ),
        (
            "chat, stream with usage",
            "/v1/chat/completions",
            r#"{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"How far?"}]}"#,
            &[],
        ),
        (
            "chat, stream without usage",
            "/v1/chat/completions",
            r#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"How far?"}]}"#,
            &[],
        ),
        (
            "chat, n = 2 refused",
            "/v1/chat/completions",
            r#"{"model":"chat","n":2,"messages":[{"role":"user","content":"How far?"}]}"#,
            &[],
        ),
        (
            "chat, unknown role refused",
            "/v1/chat/completions",
            r#"{"model":"chat","messages":[{"role":"robot","content":"How far?"}]}"#,
            &[],
        ),
        (
            "chat, body not JSON",
            "/v1/chat/completions",
            r#"{"model":"chat","#,
            &[],
        ),
        (
            "responses, plain",
            "/v1/responses",
            r#"{"model":"chat","max_output_tokens":64,"input":"How far is Paris from Frankfurt?","store":false}"#,
            &[],
        ),
        (
            "responses, instructions, items and tools",
            "/v1/responses",
            r#"{"model":"chat","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"How far?"}]},{"type":"function_call","call_id":"call_1","name":"get_distance","arguments":"{}"},{"type":"function_call_output","call_id":"call_1","output":"480"}],"tools":[{"type":"function","name":"get_distance","parameters":{"type":"object","properties":{}}}],"reasoning":{"effort":"medium"},"temperature":0.5,"store":false}"#,
            &[],
        ),
        (
            "responses, stream",
            "/v1/responses",
            r#"{"model":"chat","input":"How far?","stream":true,"store":false}"#,
            &[],
        ),
        (
            "messages, plain",
            "/v1/messages",
            r#"{"model":"chat","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"How far is Paris from Frankfurt?"}],"tools":[{"name":"get_distance","input_schema":{"type":"object"}}]}"#,
            MSG,
        ),
        (
            "messages, stream",
            "/v1/messages",
            r#"{"model":"chat","max_tokens":64,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"How far?"}]}]}"#,
            MSG,
        ),
        (
            "messages, translated to Converse",
            "/v1/messages",
            r#"{"model":"nova","max_tokens":64,"system":[{"type":"text","text":"Be brief."}],"temperature":0.3,"stop_sequences":["END"],"messages":[{"role":"user","content":"How far?"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_distance","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"480"}]}],"tools":[{"name":"get_distance","description":"Distance","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"}}"#,
            MSG,
        ),
        (
            "messages, translated to Converse, stream",
            "/v1/messages",
            r#"{"model":"nova","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"How far?"}]}"#,
            MSG,
        ),
        (
            "messages, missing max_tokens",
            "/v1/messages",
            r#"{"model":"chat","messages":[{"role":"user","content":"How far?"}]}"#,
            MSG,
        ),
    ]
}

/// IDs and times that differ by run, masked.
fn mask(text: &str) -> String {
    let times = regex::Regex::new(r#""(created|created_at|completed_at)":\s*[0-9.]+"#).unwrap();
    let ids =
        regex::Regex::new(r"\b(chatcmpl-|resp_|msg_|rs_|fc_|call_|toolu_|req_)[0-9A-Za-z]{12,}")
            .unwrap();
    let uuids =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let t = times.replace_all(text, "\"$1\":0");
    let t = ids.replace_all(&t, "${1}ID");
    uuids.replace_all(&t, "UUID").into_owned()
}

#[tokio::test]
async fn v1_requests_and_answers_are_byte_identical_to_the_golden_ones() {
    let seen: Seen = Arc::default();
    let upstream = scripted_upstream(seen.clone()).await;
    let toml = "region = \"us-east-1\"\ndefault_residency = [\"us\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n[models.nova]\nmodel = \"nova-pro\"\n";
    let gateway = common::gateway_in_front(&upstream, toml, &common::US, |_| {}).await;
    let mut out = String::new();
    for (name, path, body, headers) in cases() {
        seen.lock().clear();
        let mut h = vec![("x-request-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")];
        h.extend_from_slice(headers);
        let reply = common::send("POST", &format!("{gateway}{path}"), body, &h).await;
        writeln!(out, "=== {name}: POST {path}").unwrap();
        for (upath, ubody) in seen.lock().iter() {
            writeln!(out, "--- upstream {upath}").unwrap();
            writeln!(out, "{}", String::from_utf8_lossy(ubody)).unwrap();
        }
        writeln!(
            out,
            "--- answer {} {}",
            reply.status,
            reply.header("content-type")
        )
        .unwrap();
        writeln!(out, "{}", mask(&String::from_utf8_lossy(&reply.body))).unwrap();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let bless = meridian_catalog::env::EnvSource::non_empty(
        &meridian_catalog::env::ProcessEnv,
        "MERIDIAN_BLESS",
    );
    if bless.is_some() {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    // Compared case by case, so a failure names the first case that moved.
    let cases = |t: &str| t.split("=== ").map(str::to_string).collect::<Vec<String>>();
    for (now, before) in cases(&out).iter().zip(cases(&golden).iter()) {
        assert_eq!(now, before, "the bytes of a /v1 case changed");
    }
    assert_eq!(out, golden, "the set of /v1 cases changed");
}
