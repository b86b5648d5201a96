#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

fn request(v: Value) -> Request {
    serde_json::from_value(v).unwrap()
}

fn translate(v: Value) -> Translated {
    let req = request(v);
    let items = req.input.clone().map(Input::into_items).unwrap_or_default();
    to_converse(&req, &items).unwrap()
}

fn meta(req: &Request, tools: Tools) -> Meta {
    Meta::new("resp_abc".into(), 7, req, tools, false)
}

#[test]
fn a_codex_turn_becomes_converse() {
    let t = translate(json!({
    "model": "claude-sonnet-4-5", "stream": true, "store": false, "instructions": "be brief",
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "client_metadata": {"a": "b"},
    "tools": [
        {"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "namespace", "name": "agents", "description": "d", "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": false}
    ],
    "tool_choice": "auto", "parallel_tool_calls": true, "reasoning": {"summary": "auto"},
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "you are codex"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run ls"}]},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call", "call_id": "c2", "name": "spawn", "namespace": "agents", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "ok"}]},
        {"role": "user", "content": "thanks"}
    ]}));
    let c = &t.converse;
    assert_eq!(
        c["system"],
        json!([{"text": "be brief"}, {"text": "you are codex"}])
    );
    let m = c["messages"].as_array().unwrap();
    assert_eq!(
        m.len(),
        3,
        "user, assistant (two calls), user (two results and text)"
    );
    assert_eq!(
        m[1]["content"][0]["toolUse"],
        json!({"toolUseId": "c1", "name": "exec_command", "input": {"cmd": "ls"}})
    );
    assert_eq!(m[1]["content"][1]["toolUse"]["name"], "agents__spawn");
    assert_eq!(m[1]["content"][1]["toolUse"]["input"], json!({}));
    assert_eq!(
        m[2]["content"][0]["toolResult"]["content"],
        json!([{"text": "a.txt"}])
    );
    assert_eq!(m[2]["content"][2], json!({"text": "thanks"}));
    let names: Vec<&str> = c["toolConfig"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["toolSpec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exec_command", "agents__spawn"]);
    assert_eq!(t.tools.dropped, ["web_search"]);
    assert_eq!(
        t.tools.unflatten("agents__spawn"),
        ("spawn", Some("agents"))
    );
    assert!(
        c.get("additionalModelRequestFields").is_none(),
        "no API field reaches the model: {c}"
    );
    assert!(t.consumed.contains(&"client_metadata".to_string()));
    assert!(crate::converse::validate_request(c).is_ok());
}

#[test]
fn effort_format_limits_and_refusals() {
    let t = translate(
        json!({"model": "m", "input": "hi", "max_output_tokens": 100,
        "reasoning": {"effort": "low"}, "top_k": 5,
        "text": {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}}}}),
    );
    assert!(t.reasoning && t.structured);
    assert_eq!(t.converse["inferenceConfig"]["maxTokens"], 1124);
    assert_eq!(
        t.converse["additionalModelRequestFields"],
        json!({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    );
    let js = &t.converse["outputConfig"]["textFormat"]["structure"]["jsonSchema"];
    assert_eq!(js["name"], "city");
    for (bad, param) in [
        (
            json!({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "file_search"}], "tool_choice": {"type": "file_search"}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}, {"role": "user", "content": "x"}]}),
            "input[0].arguments",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}),
            "input[0].content[0].image_url",
        ),
        (json!({"model": "m", "input": []}), "input"),
    ] {
        let req = request(bad);
        let items = req.input.clone().map(Input::into_items).unwrap_or_default();
        let e = to_converse(&req, &items).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
    }
}

#[test]
fn answers_become_items_and_reasoning_comes_back_signed() {
    let req = request(json!({"model": "m", "input": "hi", "tools": [
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]}]}));
    let t = to_converse(&req, &req.input.clone().unwrap().into_items()).unwrap();
    let m = meta(&req, t.tools);
    let answer = json!({"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig"}}},
        {"text": "a"}, {"text": "b"},
        {"toolUse": {"toolUseId": "t1", "name": "ns__f", "input": {"x": 1}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 10, "outputTokens": 20, "cacheReadInputTokens": 5}});
    let r = from_converse(&m, &answer);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["id"], "resp_abc");
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(out[0]["summary"][0]["text"], "think");
    assert_eq!(out[1]["content"][0]["text"], "ab");
    assert_eq!(out[2]["name"], "f");
    assert_eq!(out[2]["namespace"], "ns");
    assert_eq!(out[2]["arguments"], "{\"x\":1}");
    assert_eq!(r["usage"]["input_tokens"], 15);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 5);
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 2);

    // The next turn sends the output back: the reasoning block returns signed.
    let mut items = vec![json!({"role": "user", "content": "hi"})];
    items.extend(out.iter().cloned());
    items.push(json!({"type": "function_call_output", "call_id": "t1", "output": "done"}));
    let next = to_converse(&req, &items).unwrap();
    assert_eq!(
        next.converse["messages"][1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig"}}})
    );
    assert_eq!(
        next.converse["messages"][1]["content"][2]["toolUse"]["name"],
        "ns__f"
    );

    let cut = from_converse(
        &m,
        &json!({"output": {"message": {"content": [{"text": "x"}]}}, "stopReason": "max_tokens", "usage": {}}),
    );
    assert_eq!(cut["status"], "incomplete");
    assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn a_stream_is_told_in_the_apis_order() {
    let req =
        request(json!({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}]}));
    let tools = to_converse(&req, &req.input.clone().unwrap().into_items())
        .unwrap()
        .tools;
    let mut s = Stream::new(meta(&req, tools));
    let mut events = Vec::new();
    for (name, p) in [
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "lo"}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\":"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 3, "outputTokens": 4}}),
        ),
    ] {
        events.extend(s.event(name, &p));
    }
    assert!(s.finish().is_empty(), "the usage event ended it");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
    let done = s.finished().unwrap();
    assert_eq!(done["usage"]["total_tokens"], 7);
    assert_eq!(done["output"][1]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][2]["arguments"], "{\"a\":1}");
    assert_eq!(done["output"][2]["call_id"], "t1");
    // The streamed reasoning item opens back into the signed block.
    let next = to_converse(
        &req,
        &[
            json!({"role": "user", "content": "x"}),
            done["output"][0].clone(),
            json!({"role": "user", "content": "y"}),
        ],
    )
    .unwrap();
    assert_eq!(
        next.converse["messages"][1]["content"][0]["reasoningContent"]["reasoningText"],
        json!({"text": "hm", "signature": "sig"})
    );
}

#[test]
fn a_broken_stream_fails_with_what_was_produced() {
    let req = request(json!({"model": "m", "input": "hi"}));
    let mut s = Stream::new(meta(&req, Tools::default()));
    s.event(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": "par"}}),
    );
    let out = s.fail("ThrottlingException", "slow down");
    assert_eq!(out.last().unwrap()["type"], "response.failed");
    assert_eq!(
        out.last().unwrap()["response"]["error"]["code"],
        "ThrottlingException"
    );
    // A stream that ends without a usage event still completes.
    let mut s = Stream::new(meta(&req, Tools::default()));
    s.event(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": "x"}}),
    );
    let end = s.finish();
    assert_eq!(end.last().unwrap()["type"], "response.completed");
    assert_eq!(
        s.finished().unwrap()["output"][0]["content"][0]["text"],
        "x"
    );
}
