//! Anthropic's Messages API ⇄ Converse, for models that do not speak it
//! natively on Bedrock (Nova, Llama, …): requests to Converse, Converse
//! answers and stream events back to Messages answers and SSE events.
//!
//! Mapped: text, images and documents (base64), tools and tool results,
//! `tool_choice`, system prompts, stop sequences, `temperature`/`top_p`
//! (`top_k` through `additionalModelRequestFields`), thinking (config and
//! blocks) and `cache_control` (as a `cachePoint` after its block). What has
//! no Converse counterpart is refused with a message naming it.

use serde_json::{Map, Value, json};

/// The `anthropic_version` of Bedrock's Anthropic InvokeModel bodies: the
/// only one the ARN-versioned (legacy) Claude models accept.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// A request Converse cannot carry: the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable(pub String);

fn bad(msg: impl Into<String>) -> Untranslatable {
    Untranslatable(msg.into())
}

/// A `cachePoint` for a block's `cache_control`, if it has one.
fn cache_point(block: &Value) -> Option<Value> {
    let cc = block.get("cache_control")?;
    let mut cp = json!({"type": "default"});
    if let Some(ttl) = cc["ttl"].as_str() {
        cp["ttl"] = json!(ttl);
    }
    Some(json!({"cachePoint": cp}))
}

/// `image/png` → `png`.
fn format_of(media_type: &str) -> &str {
    media_type.rsplit('/').next().unwrap_or(media_type)
}

/// One Messages content block as Converse blocks (the block, then its cache point).
fn block(b: &Value, at: &str) -> Result<Vec<Value>, Untranslatable> {
    let converted = match b["type"].as_str() {
        Some("text") => json!({"text": b["text"]}),
        Some("image") => {
            let src = &b["source"];
            if src["type"] != "base64" {
                return Err(bad(format!(
                    "{at}: only base64 image sources can be sent to this model"
                )));
            }
            json!({"image": {"format": format_of(src["media_type"].as_str().unwrap_or("png")),
                             "source": {"bytes": src["data"]}}})
        }
        Some("document") => {
            let src = &b["source"];
            let (format, bytes) = match src["type"].as_str() {
                Some("base64") => (
                    format_of(src["media_type"].as_str().unwrap_or("pdf")).to_string(),
                    src["data"].clone(),
                ),
                Some("text") => {
                    let text = src["data"].as_str().unwrap_or_default();
                    ("txt".to_string(), json!(base64_encode(text.as_bytes())))
                }
                _ => {
                    return Err(bad(format!(
                        "{at}: only base64 and text document sources can be sent to this model"
                    )));
                }
            };
            let name = b["title"].as_str().unwrap_or("document");
            json!({"document": {"format": format, "name": name, "source": {"bytes": bytes}}})
        }
        Some("tool_use") => {
            json!({"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}})
        }
        Some("tool_result") => {
            let content: Vec<Value> = match &b["content"] {
                Value::String(s) => vec![json!({"text": s})],
                Value::Array(parts) => {
                    let mut out = Vec::new();
                    for (k, p) in parts.iter().enumerate() {
                        out.extend(
                            block(p, &format!("{at}.content.{k}"))?
                                .into_iter()
                                .filter(|c| c.get("cachePoint").is_none()),
                        );
                    }
                    out
                }
                _ => Vec::new(),
            };
            let mut tr = json!({"toolUseId": b["tool_use_id"], "content": content});
            if b["is_error"] == true {
                tr["status"] = json!("error");
            }
            json!({"toolResult": tr})
        }
        Some("thinking") => {
            json!({"reasoningContent": {"reasoningText": {"text": b["thinking"], "signature": b["signature"]}}})
        }
        Some("redacted_thinking") => json!({"reasoningContent": {"redactedContent": b["data"]}}),
        other => {
            return Err(bad(format!(
                "{at}: content blocks of type {} cannot be sent to this model",
                other.map_or("(none)".to_string(), |t| format!("'{t}'"))
            )));
        }
    };
    Ok(std::iter::once(converted).chain(cache_point(b)).collect())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Messages content (a string or blocks) as Converse blocks.
fn content(c: &Value, at: &str) -> Result<Vec<Value>, Untranslatable> {
    match c {
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                out.extend(block(b, &format!("{at}.{j}"))?);
            }
            Ok(out)
        }
        _ => Err(bad(format!(
            "{at}: content must be a string or a list of blocks"
        ))),
    }
}

/// A Messages request body (without `model` and `stream`) as a Converse body.
pub fn to_converse(body: &Value) -> Result<Value, Untranslatable> {
    let mut messages: Vec<Value> = Vec::new();
    // System messages inside the conversation (Claude Code sends them):
    // Converse has one system prompt, so their text joins it, after the
    // request's own, in order — it keeps a system message's authority
    // rather than passing it off as the user's words.
    let mut later_system = Vec::new();
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let role = m["role"].as_str().unwrap_or_default();
        let at = format!("messages.{i}.content");
        if role == "system" {
            for b in content(&m["content"], &at)? {
                if b.get("text").is_none() && b.get("cachePoint").is_none() {
                    return Err(bad(format!("{at}: a system message carries text only")));
                }
                later_system.push(b);
            }
            continue;
        }
        if !matches!(role, "user" | "assistant") {
            return Err(bad(format!(
                "messages.{i}.role: must be user, assistant or system"
            )));
        }
        let blocks = content(&m["content"], &at)?;
        // Turns of one role side by side (a system message between them
        // was lifted out, or the client sent them so) are one turn, as
        // Anthropic's API treats them; Converse wants roles to alternate.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(c) = last["content"].as_array_mut() {
                    c.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut out = json!({"messages": messages});
    let mut system = match &body["system"] {
        Value::Null => Vec::new(),
        s => content(s, "system")?,
    };
    system.extend(later_system);
    if !system.is_empty() {
        out["system"] = Value::Array(system);
    }
    let mut cfg = Map::new();
    for (from, to) in [
        ("max_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            cfg.insert(to.into(), v.clone());
        }
    }
    if !cfg.is_empty() {
        out["inferenceConfig"] = Value::Object(cfg);
    }
    let mut extra = Map::new();
    for key in ["top_k", "thinking"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            extra.insert(key.into(), v.clone());
        }
    }
    if !extra.is_empty() {
        out["additionalModelRequestFields"] = Value::Object(extra);
    }
    if let Some(tools) = body["tools"].as_array().filter(|t| !t.is_empty()) {
        let mut specs = Vec::new();
        for t in tools {
            let mut spec = json!({"name": t["name"], "inputSchema": {"json": t["input_schema"]}});
            if let Some(d) = t["description"].as_str() {
                spec["description"] = json!(d);
            }
            if let Some(s) = t["strict"].as_bool() {
                spec["strict"] = json!(s);
            }
            specs.push(json!({"toolSpec": spec}));
            specs.extend(cache_point(t));
        }
        let mut tc = json!({"tools": specs});
        match body["tool_choice"]["type"].as_str() {
            None | Some("auto") => {}
            Some("any") => tc["toolChoice"] = json!({"any": {}}),
            Some("tool") => {
                tc["toolChoice"] = json!({"tool": {"name": body["tool_choice"]["name"]}})
            }
            Some("none") => tc = Value::Null,
            Some(other) => return Err(bad(format!("tool_choice.type: unknown '{other}'"))),
        }
        if !tc.is_null() {
            out["toolConfig"] = tc;
        }
    }
    Ok(out)
}

/// Converse stop reason → Messages stop reason.
pub fn stop_reason(converse: &str) -> &'static str {
    match converse {
        "tool_use" => "tool_use",
        "max_tokens" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        "model_context_window_exceeded" => "model_context_window_exceeded",
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    }
}

/// Converse usage → Messages usage.
fn usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    json!({"input_tokens": n("inputTokens"), "output_tokens": n("outputTokens"),
           "cache_read_input_tokens": n("cacheReadInputTokens"),
           "cache_creation_input_tokens": n("cacheWriteInputTokens")})
}

/// One Converse answer block as a Messages block.
fn answer_block(b: &Value) -> Option<Value> {
    if let Some(t) = b.get("text") {
        return Some(json!({"type": "text", "text": t}));
    }
    if let Some(u) = b.get("toolUse") {
        return Some(
            json!({"type": "tool_use", "id": u["toolUseId"], "name": u["name"], "input": u["input"]}),
        );
    }
    let r = b.get("reasoningContent")?;
    Some(match r.get("redactedContent") {
        Some(data) => json!({"type": "redacted_thinking", "data": data}),
        None => json!({"type": "thinking", "thinking": r["reasoningText"]["text"],
                       "signature": r["reasoningText"]["signature"]}),
    })
}

/// A Converse answer as a Messages answer.
pub fn from_converse(resp: &Value, id: &str, model: &str) -> Value {
    let content: Vec<Value> = resp["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(answer_block)
        .collect();
    json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": content,
           "stop_reason": stop_reason(resp["stopReason"].as_str().unwrap_or("end_turn")),
           "stop_sequence": null, "usage": usage(&resp["usage"])})
}

/// What kind of Messages block is open at a Converse block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    ToolUse,
}

/// ConverseStream events → Messages SSE events (as JSON; the caller names
/// each event after its `type`). Converse opens text and reasoning blocks
/// implicitly with their first delta; Messages opens every block with
/// `content_block_start`, so the translator opens them as they appear.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    open: Option<(u64, Open)>,
    stop: &'static str,
}

impl StreamTranslator {
    /// A translator for one answer.
    pub fn new(id: &str, model: &str) -> Self {
        StreamTranslator {
            id: id.into(),
            model: model.into(),
            open: None,
            stop: "end_turn",
        }
    }

    /// Closes the open block if it is not `index` of `kind`; opens `index`
    /// as `kind` with `start` when nothing is open.
    fn ensure(&mut self, index: u64, kind: Open, start: Value, out: &mut Vec<Value>) {
        if self.open == Some((index, kind)) {
            return;
        }
        if let Some((i, _)) = self.open.take() {
            out.push(json!({"type": "content_block_stop", "index": i}));
        }
        out.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
        self.open = Some((index, kind));
    }

    /// The Messages events for one ConverseStream event.
    pub fn event(&mut self, event_type: &str, p: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        let index = p["contentBlockIndex"].as_u64().unwrap_or(0);
        match event_type {
            "messageStart" => out.push(json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})),
            "contentBlockStart" => {
                if let Some(u) = p["start"].get("toolUse") {
                    let start = json!({"type": "tool_use", "id": u["toolUseId"], "name": u["name"], "input": {}});
                    self.ensure(index, Open::ToolUse, start, &mut out);
                }
            }
            "contentBlockDelta" => {
                let d = &p["delta"];
                if let Some(t) = d.get("text") {
                    self.ensure(index, Open::Text, json!({"type": "text", "text": ""}), &mut out);
                    out.push(json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "text_delta", "text": t}}));
                } else if let Some(r) = d.get("reasoningContent") {
                    let start = json!({"type": "thinking", "thinking": "", "signature": ""});
                    self.ensure(index, Open::Thinking, start, &mut out);
                    if let Some(t) = r.get("text") {
                        out.push(json!({"type": "content_block_delta", "index": index,
                                        "delta": {"type": "thinking_delta", "thinking": t}}));
                    }
                    if let Some(s) = r.get("signature") {
                        out.push(json!({"type": "content_block_delta", "index": index,
                                        "delta": {"type": "signature_delta", "signature": s}}));
                    }
                } else if let Some(input) = d["toolUse"].get("input") {
                    out.push(json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "input_json_delta", "partial_json": input}}));
                }
            }
            "contentBlockStop" if self.open.is_some_and(|(i, _)| i == index) => {
                self.open = None;
                out.push(json!({"type": "content_block_stop", "index": index}));
            }
            "messageStop" => {
                if let Some((i, _)) = self.open.take() {
                    out.push(json!({"type": "content_block_stop", "index": i}));
                }
                self.stop = stop_reason(p["stopReason"].as_str().unwrap_or("end_turn"));
            }
            "metadata" => {
                out.push(json!({"type": "message_delta",
                                "delta": {"stop_reason": self.stop, "stop_sequence": null},
                                "usage": usage(&p["usage"])}));
                out.push(json!({"type": "message_stop"}));
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messages_request_becomes_converse() {
        let body = json!({
            "max_tokens": 100, "temperature": 0.2, "top_k": 5, "stop_sequences": ["END"],
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA="}},
                                             {"type": "text", "text": "what?"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok", "is_error": true}]}]});
        let c = to_converse(&body).unwrap();
        assert_eq!(
            c["system"],
            json!([{"text": "be brief"}, {"cachePoint": {"type": "default", "ttl": "1h"}}])
        );
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.2, "stopSequences": ["END"]})
        );
        assert_eq!(c["additionalModelRequestFields"], json!({"top_k": 5}));
        assert_eq!(c["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(c["messages"][0]["content"][0]["image"]["format"], "jpeg");
        assert_eq!(
            c["messages"][1]["content"][0]["toolUse"]["input"],
            json!({"a": 1})
        );
        assert_eq!(
            c["messages"][2]["content"][0]["toolResult"]["status"],
            "error"
        );
        let e = to_converse(
            &json!({"messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]}),
        )
        .unwrap_err();
        assert!(
            e.0.contains("messages.0.content.0") && e.0.contains("server_tool_use"),
            "{}",
            e.0
        );
    }

    #[test]
    fn system_messages_in_the_conversation_join_the_system_prompt() {
        let body = json!({
            "system": "be brief",
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "system", "content": [{"type": "text", "text": "answer in French"}]},
                {"role": "user", "content": "again"},
                {"role": "assistant", "content": "salut"},
                {"role": "system", "content": "now in German"},
                {"role": "user", "content": "once more"}]});
        let c = to_converse(&body).unwrap();
        assert_eq!(
            c["system"],
            json!([{"text": "be brief"}, {"text": "answer in French"}, {"text": "now in German"}])
        );
        // The two user turns the first system message stood between are one.
        assert_eq!(
            c["messages"],
            json!([
                {"role": "user", "content": [{"text": "hello"}, {"text": "again"}]},
                {"role": "assistant", "content": [{"text": "salut"}]},
                {"role": "user", "content": [{"text": "once more"}]}])
        );
        crate::converse::validate_request(&c).unwrap();
        let e = to_converse(&json!({"messages": [{"role": "system", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}}]}]}))
        .unwrap_err();
        assert!(
            e.0.contains("messages.0.content") && e.0.contains("text only"),
            "{}",
            e.0
        );
        let e = to_converse(&json!({"messages": [{"role": "tool", "content": "x"}]})).unwrap_err();
        assert!(e.0.contains("messages.0.role"), "{}", e.0);
    }

    #[test]
    fn a_converse_stream_becomes_messages_events() {
        let mut t = StreamTranslator::new("msg_1", "nova");
        let events = [
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
                json!({"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\":"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 2})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 3, "outputTokens": 4}}),
            ),
        ];
        let out: Vec<Value> = events.iter().flat_map(|(k, v)| t.event(k, v)).collect();
        let kinds: Vec<String> = out
            .iter()
            .map(|e| match e["delta"]["type"].as_str() {
                Some(d) => d.to_string(),
                None => e["type"].as_str().unwrap().to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "thinking_delta",
                "signature_delta",
                "content_block_stop",
                "content_block_start",
                "text_delta",
                "content_block_stop",
                "content_block_start",
                "input_json_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out[11]["delta"]["stop_reason"], "tool_use");
        assert_eq!(out[11]["usage"]["output_tokens"], 4);
    }
}
