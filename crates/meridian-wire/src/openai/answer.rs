//! A Converse answer to an OpenAI chat completion without `Value` trees:
//! read with borrowed strings, written from typed structs whose fields are
//! in the order `serde_json::Map` sorts keys, so the bytes are those of
//! [`super::from_converse`] (a test compares them over many answers).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// What Converse answered; what the translation does not read is skipped.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    output: Option<Output<'a>>,
    #[serde(rename = "stopReason", borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Value,
    #[serde(rename = "serviceTier", default)]
    service_tier: Value,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow, default)]
    message: Option<AnswerMessage<'a>>,
}

#[derive(Deserialize)]
struct AnswerMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
}

/// One content block. Reasoning and tool calls are rare and are kept as
/// they came (present, even as `null`, counts as present, as in the `Value`
/// translation).
#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(rename = "reasoningContent", default, deserialize_with = "present")]
    reasoning: Option<Value>,
    #[serde(rename = "toolUse", default, deserialize_with = "present")]
    tool_use: Option<Value>,
}

/// A field that is there, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The chat completion, its fields in sorted order.
#[derive(Serialize)]
struct Completion<'a> {
    choices: [Choice<'a>; 1],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    usage: Value,
}

#[derive(Serialize)]
struct Choice<'a> {
    finish_reason: &'static str,
    index: u32,
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    role: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    function: Function<'a>,
    id: &'a Value,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Function<'a> {
    arguments: String,
    name: &'a Value,
}

/// The OpenAI chat completion for Converse answer `body`, serialized; `None`
/// when the answer has a shape the typed read does not take (then the
/// `Value` translation answers, with the same result for what it can read).
pub fn completion_json(body: &[u8], id: &str, model: &str, created: u64) -> Option<Vec<u8>> {
    let a: Answer<'_> = serde_json::from_slice(body).ok()?;
    let blocks = a
        .output
        .and_then(|o| o.message)
        .and_then(|m| m.content)
        .unwrap_or_default();
    // One text block (the usual answer) is borrowed as it is.
    let mut text: Cow<'_, str> = Cow::Borrowed("");
    let mut reasoning: Option<String> = None;
    let mut uses = Vec::new();
    for b in &blocks {
        if let Some(t) = &b.text {
            if text.is_empty() {
                text = Cow::Borrowed(t.as_ref());
            } else {
                text.to_mut().push_str(t);
            }
        } else if let Some(r) = &b.reasoning {
            let r = r["reasoningText"]["text"].as_str().unwrap_or_default();
            reasoning.get_or_insert_default().push_str(r);
        } else if let Some(u) = &b.tool_use {
            uses.push(u);
        }
    }
    let tool_calls: Vec<ToolCall<'_>> = uses
        .iter()
        .map(|u| ToolCall {
            function: Function {
                arguments: u["input"].to_string(),
                name: &u["name"],
            },
            id: &u["toolUseId"],
            kind: "function",
        })
        .collect();
    let reasoning_tokens = reasoning.as_deref().map(crate::converse::estimate_tokens);
    let out = Completion {
        choices: [Choice {
            finish_reason: super::finish_reason(a.stop_reason.as_deref().unwrap_or("end_turn")),
            index: 0,
            message: Message {
                // Only tool calls and no text: `null`, as OpenAI answers.
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text.as_ref()),
                reasoning_content: reasoning.as_deref(),
                role: "assistant",
                tool_calls,
            },
        }],
        created,
        id,
        model,
        object: "chat.completion",
        service_tier: a.service_tier["type"].as_str(),
        usage: super::inbound::usage(&a.usage, reasoning_tokens),
    };
    serde_json::to_vec(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed translation writes exactly what the `Value` one does, or
    /// declines; answers it declines still translate the `Value` way.
    #[test]
    fn writes_the_bytes_of_the_value_translation() {
        let answers = [
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello! A fixed reply."}]}},"stopReason":"end_turn","usage":{"inputTokens":9,"outputTokens":31,"totalTokens":40},"metrics":{"latencyMs":12}}"#,
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"quote \" and \\ and \u00e9 and \n"},{"text":" second"}]}},"stopReason":"max_tokens","usage":{"inputTokens":1,"outputTokens":2}}"#,
            r#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"Think.","signature":"s"}}},{"text":"About 480 km."},{"toolUse":{"toolUseId":"t1","name":"get","input":{"to":"B","from":"A"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":21,"outputTokens":17,"cacheReadInputTokens":4,"cacheWriteInputTokens":2}}"#,
            r#"{"output":{"message":{"content":[{"toolUse":{"toolUseId":"t1","name":"a","input":{}}},{"toolUse":{"toolUseId":"t2","name":"b"}}]}},"stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4}}"#,
            r#"{"output":{"message":{"content":[{"reasoningContent":null},{"toolUse":null},{"text":null},{"other":1}]}},"usage":null}"#,
            r#"{"output":{"message":{"content":[]}},"stopReason":"guardrail_intervened","usage":{"inputTokens":5,"outputTokens":0},"serviceTier":{"type":"priority"}}"#,
            r#"{"output":null,"stopReason":"content_filtered"}"#,
            r#"{"stopReason":"stop_sequence","serviceTier":{"type":7}}"#,
            r#"{"output":{"message":{"content":[{"text":"a"}]}},"stopReason":"end_turn","usage":{"inputTokens":1.5,"outputTokens":-2}}"#,
            r#"{}"#,
            r#"{"output":{"message":{"content":null}}}"#,
        ];
        let declined = [
            r#"{"output":{"message":{"content":[{"text":5}]}}}"#,
            r#"{"output":"x"}"#,
            r#"{"stopReason":3}"#,
            r#"{"stopReason":"end_turn","stopReason":"max_tokens"}"#,
            r#"[1,2]"#,
            r#"not json"#,
        ];
        for a in answers {
            let v: Value = serde_json::from_slice(a.as_bytes()).unwrap();
            let want =
                serde_json::to_vec(&super::super::from_converse(&v, "chatcmpl-1", "m", 7)).unwrap();
            let got = completion_json(a.as_bytes(), "chatcmpl-1", "m", 7)
                .unwrap_or_else(|| panic!("declined {a}"));
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{a}"
            );
        }
        for a in declined {
            assert!(completion_json(a.as_bytes(), "c", "m", 7).is_none(), "{a}");
        }
    }
}
