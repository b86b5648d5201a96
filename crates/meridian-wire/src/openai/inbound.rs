//! OpenAI requests to Converse, Converse responses and events back.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::OpenAiError;

/// Top-level request keys handled here; anything else passes through to the model.
const KNOWN: [&str; 20] = [
    "model",
    "reasoning_effort",
    "service_tier",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "stream",
    "stream_options",
    "n",
    "user",
    "metadata",
    "store",
    "parallel_tool_calls",
    "seed",
];

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The model name asked for.
    pub model: String,
    /// The Converse body.
    pub converse: Value,
    /// Whether the client wants SSE.
    pub stream: bool,
    /// Whether the stream should end with a usage chunk.
    pub include_usage: bool,
    /// Whether `reasoning_effort` asked for thinking (the model must take it).
    pub reasoning: bool,
    /// Whether `response_format` asked for structured output (the model must take it).
    pub structured: bool,
}

/// Thinking budget in tokens for an OpenAI `reasoning_effort`; `None` for
/// efforts that mean no thinking.
pub fn thinking_budget(effort: &str) -> Result<Option<u64>, OpenAiError> {
    match effort {
        "none" | "minimal" => Ok(None),
        "low" => Ok(Some(1_024)),
        "medium" => Ok(Some(4_096)),
        "high" => Ok(Some(16_384)),
        "xhigh" => Ok(Some(32_000)),
        other => Err(OpenAiError::invalid(
            "reasoning_effort",
            format!(
                "'{other}' is not a reasoning effort; use none, minimal, low, medium, high or xhigh"
            ),
        )),
    }
}

/// Visible output tokens when a request with thinking names no maximum.
const DEFAULT_VISIBLE_TOKENS: u64 = 4_096;

/// OpenAI chat request → Converse request.
pub fn to_converse(req: &Value) -> Result<Translated, OpenAiError> {
    let obj = req
        .as_object()
        .ok_or_else(|| OpenAiError::invalid("body", "the request body must be a JSON object"))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| OpenAiError::invalid("model", "'model' is required"))?;
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(OpenAiError::invalid("n", "only n = 1 is supported"));
    }
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| OpenAiError::invalid("messages", "'messages' must be a non-empty list"))?;
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let at = format!("messages[{i}]");
        match role {
            "system" | "developer" => system.extend(
                text_parts(&m["content"], &at)?
                    .into_iter()
                    .map(|t| json!({"text": t})),
            ),
            "user" => push(&mut messages, "user", user_content(&m["content"], &at)?),
            "assistant" => {
                let mut blocks: Vec<Value> = Vec::new();
                if !m["content"].is_null() {
                    blocks.extend(
                        text_parts(&m["content"], &at)?
                            .into_iter()
                            .filter(|t| !t.is_empty())
                            .map(|t| json!({"text": t})),
                    );
                }
                for (j, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value =
                        serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
                            .map_err(|_| {
                                OpenAiError::invalid(
                                    &format!("{at}.tool_calls[{j}].function.arguments"),
                                    "arguments must be a JSON object string",
                                )
                            })?;
                    blocks.push(json!({"toolUse": {"toolUseId": call["id"], "name": call["function"]["name"], "input": input}}));
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        OpenAiError::invalid(
                            &format!("{at}.tool_call_id"),
                            "tool messages need 'tool_call_id'",
                        )
                    })?;
                let content: Vec<Value> = text_parts(&m["content"], &at)?
                    .into_iter()
                    .map(|t| json!({"text": t}))
                    .collect();
                push(
                    &mut messages,
                    "user",
                    vec![json!({"toolResult": {"toolUseId": id, "content": content}})],
                );
            }
            other => {
                return Err(OpenAiError::invalid(
                    &format!("{at}.role"),
                    format!("unknown role '{other}'"),
                ));
            }
        }
    }
    let mut converse = json!({"messages": messages});
    if !system.is_empty() {
        converse["system"] = json!(system);
    }
    let mut cfg = Map::new();
    let max = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64);
    let budget = match obj.get("reasoning_effort") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => thinking_budget(e)?,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "reasoning_effort",
                "reasoning_effort must be a string",
            ));
        }
    };
    if let Some(n) = max_tokens(max, budget) {
        cfg.insert("maxTokens".into(), json!(n));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            cfg.insert(to.into(), v.clone());
        }
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            cfg.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            cfg.insert("stopSequences".into(), json!(a));
        }
        _ => {}
    }
    if !cfg.is_empty() {
        converse["inferenceConfig"] = Value::Object(cfg);
    }
    if let Some(tc) = tool_config(obj)? {
        converse["toolConfig"] = tc;
    }
    let mut structured = false;
    if let Some(rf) = obj.get("response_format") {
        // Converse structured output takes a schema as a JSON string;
        // json_object is the schema of any object.
        let (schema, name, description) = match rf["type"].as_str() {
            Some("text") | None => (None, "", None),
            Some("json_schema") => {
                let js = &rf["json_schema"];
                if !js["schema"].is_object() {
                    return Err(OpenAiError::invalid(
                        "response_format.json_schema.schema",
                        "a JSON schema object is required",
                    ));
                }
                (
                    Some(js["schema"].to_string()),
                    js["name"].as_str().unwrap_or("response"),
                    js["description"].as_str(),
                )
            }
            Some("json_object") => (
                Some(json!({"type": "object"}).to_string()),
                "json_object",
                None,
            ),
            Some(other) => {
                return Err(OpenAiError::invalid(
                    "response_format",
                    format!(
                        "response_format '{other}' is not supported; use text, json_object or json_schema"
                    ),
                ));
            }
        };
        if let Some(schema) = schema {
            converse["outputConfig"] = output_config(schema, name, description);
            structured = true;
        }
    }
    match obj.get("service_tier") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "auto" => {}
        Some(Value::String(t)) if matches!(t.as_str(), "default" | "flex" | "priority") => {
            converse["serviceTier"] = json!({"type": t});
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "service_tier",
                "service_tier must be auto, default, flex or priority",
            ));
        }
    }
    let extra: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    set_additional_fields(&mut converse, extra, budget);
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Translated {
        model: model.to_string(),
        converse,
        stream,
        include_usage,
        reasoning: budget.is_some(),
        structured,
    })
}

/// Converse's `maxTokens` for a visible-answer maximum and a thinking
/// budget: thinking comes out of maxTokens on Bedrock, so the budget is
/// added on top of what the client allowed for the visible answer.
pub(super) fn max_tokens(max: Option<u64>, budget: Option<u64>) -> Option<u64> {
    match (max, budget) {
        (n, Some(b)) => Some(b + n.unwrap_or(DEFAULT_VISIBLE_TOKENS)),
        (n, None) => n,
    }
}

/// `additionalModelRequestFields`: the request's fields Converse does not
/// name, and the thinking configuration for a budget.
pub(super) fn set_additional_fields(
    converse: &mut Value,
    mut extra: Map<String, Value>,
    budget: Option<u64>,
) {
    if let Some(b) = budget {
        extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": b}),
        );
    }
    if !extra.is_empty() {
        converse["additionalModelRequestFields"] = Value::Object(extra);
    }
}

/// Converse's `outputConfig` for a JSON schema (sent as a JSON string).
pub(super) fn output_config(schema: String, name: &str, description: Option<&str>) -> Value {
    let mut js = json!({"schema": schema, "name": name});
    if let Some(d) = description {
        js["description"] = json!(d);
    }
    json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": js}}})
}

/// Appends blocks, merging with the previous message of the same role (Converse alternates roles).
pub(super) fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn text_parts(content: &Value, at: &str) -> Result<Vec<String>, OpenAiError> {
    match content {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                p["text"].as_str().map(str::to_string).ok_or_else(|| {
                    OpenAiError::invalid(&format!("{at}.content"), "expected text parts")
                })
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(OpenAiError::invalid(
            &format!("{at}.content"),
            "content must be a string or a list of parts",
        )),
    }
}

pub(super) fn image_block(url: &str, at: &str) -> Result<Value, OpenAiError> {
    let (meta, data) = url
        .strip_prefix("data:")
        .and_then(|u| u.split_once(','))
        .ok_or_else(|| {
            OpenAiError::invalid(at, "only data: URLs (base64) are supported for images")
        })?;
    let format = meta
        .trim_end_matches(";base64")
        .strip_prefix("image/")
        .unwrap_or("png");
    let format = if format == "jpg" { "jpeg" } else { format };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn user_content(content: &Value, at: &str) -> Result<Vec<Value>, OpenAiError> {
    let Value::Array(parts) = content else {
        return Ok(text_parts(content, at)?
            .into_iter()
            .map(|t| json!({"text": t}))
            .collect());
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match p["type"].as_str() {
            Some("text") => out.push(json!({"text": p["text"]})),
            Some("image_url") => out.push(image_block(
                p["image_url"]["url"].as_str().unwrap_or_default(),
                &format!("{at}.content[{j}].image_url"),
            )?),
            other => {
                return Err(OpenAiError::invalid(
                    &format!("{at}.content[{j}].type"),
                    format!("content part type {other:?} is not supported"),
                ));
            }
        }
    }
    Ok(out)
}

fn tool_config(obj: &Map<String, Value>) -> Result<Option<Value>, OpenAiError> {
    let Some(tools) = obj
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "none" => return Ok(None),
        Some(v) if v["function"]["name"].is_string() => {
            Some(json!({"tool": {"name": v["function"]["name"]}}))
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "tool_choice",
                "expected auto, required, none or a function",
            ));
        }
    };
    let specs: Vec<Value> = tools
        .iter()
        .map(|t| {
            let f = &t["function"];
            tool_spec(&f["name"], f)
        })
        .collect();
    let mut tc = json!({"tools": specs});
    if let Some(c) = choice {
        tc["toolChoice"] = c;
    }
    Ok(Some(tc))
}

/// A Converse tool spec named `name` for an OpenAI function definition
/// (`parameters`, `description`, `strict`).
pub(super) fn tool_spec(name: &Value, f: &Value) -> Value {
    let params = if f["parameters"].is_object() {
        f["parameters"].clone()
    } else {
        json!({"type": "object", "properties": {}})
    };
    let mut spec = json!({"name": name, "inputSchema": {"json": params}});
    if let Some(d) = f["description"].as_str().filter(|d| !d.is_empty()) {
        spec["description"] = json!(d);
    }
    if let Some(strict) = f["strict"].as_bool() {
        spec["strict"] = json!(strict);
    }
    json!({"toolSpec": spec})
}

/// Converse stop reason → OpenAI finish reason.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's usage from Converse's: prompt tokens include those read from and
/// written to the prompt cache (Converse counts them apart), and the reads
/// are `prompt_tokens_details.cached_tokens`.
/// `reasoning` is the thinking's token count, estimated from its text
/// (Converse does not report it apart; it is inside `outputTokens`).
pub(super) fn usage(u: &Value, reasoning: Option<u64>) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    let (i, o) = (n("inputTokens") + read + write, n("outputTokens"));
    let mut out = json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o});
    if u.get("cacheReadInputTokens").is_some() || u.get("cacheWriteInputTokens").is_some() {
        out["prompt_tokens_details"] = json!({"cached_tokens": read, "cache_write_tokens": write});
    }
    if let Some(r) = reasoning {
        out["completion_tokens_details"] = json!({"reasoning_tokens": r.min(o)});
    }
    out
}

/// Converse response → OpenAI chat completion.
pub fn from_converse(resp: &Value, id: &str, model: &str, created: u64) -> Value {
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    let mut calls = Vec::new();
    for b in resp["output"]["message"]["content"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(t) = b["text"].as_str() {
            text.push_str(t);
        } else if let Some(r) = b.get("reasoningContent") {
            let r = r["reasoningText"]["text"].as_str().unwrap_or_default();
            reasoning.get_or_insert_default().push_str(r);
        } else if let Some(u) = b.get("toolUse") {
            calls.push(json!({"id": u["toolUseId"], "type": "function", "function": {"name": u["name"], "arguments": u["input"].to_string()}}));
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    // The thinking text, as OpenAI-compatible servers name it.
    let reasoning_tokens = reasoning.as_deref().map(crate::converse::estimate_tokens);
    if let Some(r) = reasoning {
        message["reasoning_content"] = json!(r);
    }
    let mut out = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(resp["stopReason"].as_str().unwrap_or("end_turn"))}],
        "usage": usage(&resp["usage"], reasoning_tokens),
    });
    if let Some(t) = resp["serviceTier"]["type"].as_str() {
        out["service_tier"] = json!(t);
    }
    out
}

/// Turns ConverseStream events into OpenAI `chat.completion.chunk`s.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    tool_index: HashMap<u64, usize>,
    /// Estimated tokens of the thinking seen so far, once there is any.
    reasoning_tokens: Option<u64>,
}

impl StreamTranslator {
    /// A translator for one response.
    pub fn new(id: &str, model: &str, created: u64, include_usage: bool) -> Self {
        StreamTranslator {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            tool_index: HashMap::new(),
            reasoning_tokens: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// The chunks for one Converse event (none for events with no OpenAI counterpart).
    pub fn event(&mut self, event_type: &str, p: &Value) -> Vec<Value> {
        match event_type {
            "messageStart" => vec![self.chunk(json!({"role": "assistant", "content": ""}), None)],
            "contentBlockStart" => {
                let Some(tu) = p["start"].get("toolUse") else {
                    return Vec::new();
                };
                let block = p["contentBlockIndex"].as_u64().unwrap_or(0);
                let n = self.tool_index.len();
                let idx = *self.tool_index.entry(block).or_insert(n);
                vec![self.chunk(
                    json!({"tool_calls": [{"index": idx, "id": tu["toolUseId"], "type": "function",
                    "function": {"name": tu["name"], "arguments": ""}}]}),
                    None,
                )]
            }
            "contentBlockDelta" => {
                let d = &p["delta"];
                if let Some(t) = d["text"].as_str() {
                    vec![self.chunk(json!({"content": t}), None)]
                } else if let Some(t) = d["reasoningContent"]["text"].as_str() {
                    *self.reasoning_tokens.get_or_insert(0) += crate::converse::estimate_tokens(t);
                    vec![self.chunk(json!({"reasoning_content": t}), None)]
                } else if let Some(input) = d["toolUse"]["input"].as_str() {
                    let idx = self
                        .tool_index
                        .get(&p["contentBlockIndex"].as_u64().unwrap_or(0))
                        .copied()
                        .unwrap_or(0);
                    vec![self.chunk(
                        json!({"tool_calls": [{"index": idx, "function": {"arguments": input}}]}),
                        None,
                    )]
                } else {
                    Vec::new()
                }
            }
            "messageStop" => vec![self.chunk(
                json!({}),
                Some(finish_reason(
                    p["stopReason"].as_str().unwrap_or("end_turn"),
                )),
            )],
            "metadata" if self.include_usage => vec![
                json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage(&p["usage"], self.reasoning_tokens)}),
            ],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_a_tool_conversation() {
        let req = json!({"model": "m", "max_tokens": 9, "stop": "END", "top_k": 3,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}], "tool_choice": "required"});
        let t = to_converse(&req).unwrap();
        let c = &t.converse;
        assert_eq!(c["system"][0]["text"], "be brief");
        assert_eq!(
            c["messages"][1]["content"][0]["toolUse"]["input"]["city"],
            "Paris"
        );
        assert_eq!(
            c["messages"][2]["content"][0]["toolResult"]["toolUseId"],
            "c1"
        );
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 9, "stopSequences": ["END"]})
        );
        assert_eq!(c["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(c["additionalModelRequestFields"], json!({"top_k": 3}));
        assert!(crate::converse::validate_request(c).is_ok());
    }

    #[test]
    fn rejects_what_it_cannot_translate() {
        assert_eq!(
            to_converse(&json!({"messages": []}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("model")
        );
        let e = to_converse(&json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})).unwrap_err();
        assert!(e.message.contains("data: URLs"));
    }

    #[test]
    fn reasoning_structured_output_tiers_and_strict_tools() {
        let req = json!({"model": "m", "max_tokens": 100, "reasoning_effort": "low", "service_tier": "flex",
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}},
            "tools": [{"type": "function", "function": {"name": "f", "strict": true, "parameters": {"type": "object"}}}],
            "messages": [{"role": "user", "content": "hi"}]});
        let t = to_converse(&req).unwrap();
        let c = &t.converse;
        assert!(t.reasoning && t.structured);
        assert_eq!(
            c["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024})
        );
        assert_eq!(
            c["inferenceConfig"]["maxTokens"], 1124,
            "the budget on top of the answer's"
        );
        assert_eq!(c["serviceTier"], json!({"type": "flex"}));
        let js = &c["outputConfig"]["textFormat"]["structure"]["jsonSchema"];
        assert_eq!(js["name"], "city");
        let schema: Value = serde_json::from_str(js["schema"].as_str().unwrap()).unwrap();
        assert_eq!(
            schema["properties"]["name"]["type"], "string",
            "a JSON string"
        );
        assert_eq!(c["toolConfig"]["tools"][0]["toolSpec"]["strict"], true);

        let plain = json!({"model": "m", "reasoning_effort": "minimal", "service_tier": "auto",
            "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "hi"}]});
        let t = to_converse(&plain).unwrap();
        assert!(!t.reasoning && t.structured);
        assert!(t.converse.get("serviceTier").is_none());
        assert!(t.converse.get("additionalModelRequestFields").is_none());
        for (k, v) in [("reasoning_effort", "huge"), ("service_tier", "cheap")] {
            let mut bad = plain.clone();
            bad[k] = json!(v);
            assert_eq!(to_converse(&bad).unwrap_err().param.as_deref(), Some(k));
        }
    }

    #[test]
    fn thinking_and_tiers_come_back_in_openai_fields() {
        let resp = json!({"output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "let me think about it", "signature": "s"}}},
            {"text": "42"}]}},
            "stopReason": "end_turn", "serviceTier": {"type": "priority"},
            "usage": {"inputTokens": 5, "outputTokens": 12, "totalTokens": 17}});
        let out = from_converse(&resp, "id", "m", 0);
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["content"], "42");
        assert_eq!(msg["reasoning_content"], "let me think about it");
        assert_eq!(
            out["usage"]["completion_tokens_details"]["reasoning_tokens"],
            6
        );
        assert_eq!(out["service_tier"], "priority");

        let mut st = StreamTranslator::new("id", "m", 0, true);
        let chunks = st.event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm "}}}),
        );
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["reasoning_content"],
            "hmm "
        );
        let end = st.event(
            "metadata",
            &json!({"usage": {"inputTokens": 1, "outputTokens": 3}}),
        );
        assert_eq!(
            end[0]["usage"]["completion_tokens_details"]["reasoning_tokens"],
            1
        );
    }
}
