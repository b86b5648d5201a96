//! Converse requests to OpenAI, OpenAI responses back (for OpenAI-compatible upstreams).

use serde_json::{Value, json};

/// Converse request → OpenAI chat request, for OpenAI-compatible upstreams.
pub fn converse_to_openai(converse: &Value, model: &str, stream: bool) -> Value {
    let mut messages = Vec::new();
    let system: Vec<&str> = converse["system"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect();
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system.join("\n")}));
    }
    for m in converse["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("user");
        let mut parts: Vec<Value> = Vec::new();
        let mut calls = Vec::new();
        for b in m["content"].as_array().into_iter().flatten() {
            if let Some(t) = b["text"].as_str() {
                parts.push(json!({"type": "text", "text": t}));
            } else if let Some(img) = b.get("image") {
                let url = format!(
                    "data:image/{};base64,{}",
                    img["format"].as_str().unwrap_or("png"),
                    img["source"]["bytes"].as_str().unwrap_or("")
                );
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            } else if let Some(u) = b.get("toolUse") {
                calls.push(json!({"id": u["toolUseId"], "type": "function", "function": {"name": u["name"], "arguments": u["input"].to_string()}}));
            } else if let Some(r) = b.get("toolResult") {
                let text: Vec<String> = r["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        c["text"]
                            .as_str()
                            .map_or_else(|| c["json"].to_string(), str::to_string)
                    })
                    .collect();
                messages.push(json!({"role": "tool", "tool_call_id": r["toolUseId"], "content": text.join("\n")}));
            }
        }
        if parts.is_empty() && calls.is_empty() {
            continue;
        }
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if parts.is_empty() {
            Value::Null
        } else if only_text {
            json!(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            )
        } else {
            json!(parts)
        };
        let mut msg = json!({"role": role, "content": content});
        if !calls.is_empty() {
            msg["tool_calls"] = json!(calls);
        }
        messages.push(msg);
    }
    let mut out = json!({"model": model, "messages": messages, "stream": stream});
    let cfg = &converse["inferenceConfig"];
    for (from, to) in [
        ("maxTokens", "max_tokens"),
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("stopSequences", "stop"),
    ] {
        if !cfg[from].is_null() {
            out[to] = cfg[from].clone();
        }
    }
    if stream {
        out["stream_options"] = json!({"include_usage": true});
    }
    if let Some(tools) = converse["toolConfig"]["tools"].as_array() {
        let fs: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("toolSpec"))
            .map(|s| json!({"type": "function", "function": {"name": s["name"], "description": s["description"], "parameters": s["inputSchema"]["json"]}}))
            .collect();
        out["tools"] = json!(fs);
        let choice = &converse["toolConfig"]["toolChoice"];
        if choice.get("any").is_some() {
            out["tool_choice"] = json!("required");
        } else if let Some(name) = choice["tool"]["name"].as_str() {
            out["tool_choice"] = json!({"type": "function", "function": {"name": name}});
        }
    }
    if let Some(extra) = converse["additionalModelRequestFields"].as_object() {
        for (k, v) in extra {
            out[k] = v.clone();
        }
    }
    out
}

/// OpenAI finish reason → Converse stop reason.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "content_filtered",
        _ => "end_turn",
    }
}

/// OpenAI chat completion → Converse response.
pub fn openai_to_converse_response(resp: &Value, latency_ms: u64) -> Value {
    let choice = &resp["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"text": t}));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        let input: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}"))
                .unwrap_or_else(|_| json!({}));
        content.push(json!({"toolUse": {"toolUseId": c["id"], "name": c["function"]["name"], "input": input}}));
    }
    let (i, o) = (
        resp["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        resp["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    );
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "usage": {"inputTokens": i, "outputTokens": o, "totalTokens": i + o},
        "metrics": {"latencyMs": latency_ms},
    })
}
