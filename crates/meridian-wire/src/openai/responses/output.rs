//! Converse answers → Responses output items and response objects.

use serde_json::{Map, Value, json};

use super::input::Request;
use super::reasoning;
use super::tools::Tools;
use crate::converse::estimate_tokens;

/// What a response object repeats from its request, and how its items are named.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model as the client named it.
    pub model: String,
    /// Request fields the response object echoes.
    pub echo: Map<String, Value>,
    /// The request's tools, for the names the client gave them.
    pub tools: Tools,
}

impl Meta {
    /// The meta of a response to `req`.
    pub fn new(id: String, created_at: u64, req: &Request, tools: Tools, stored: bool) -> Meta {
        let mut echo = Map::new();
        let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
        echo.insert(
            "instructions".into(),
            or_null(req.instructions.clone().map(Value::String)),
        );
        echo.insert(
            "max_output_tokens".into(),
            or_null(req.max_output_tokens.map(Value::from)),
        );
        echo.insert(
            "metadata".into(),
            req.metadata
                .clone()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({})),
        );
        echo.insert(
            "parallel_tool_calls".into(),
            req.rest
                .get("parallel_tool_calls")
                .cloned()
                .unwrap_or(json!(true)),
        );
        echo.insert(
            "previous_response_id".into(),
            or_null(req.previous_response_id.clone().map(Value::String)),
        );
        echo.insert(
            "reasoning".into(),
            req.reasoning
                .clone()
                .unwrap_or_else(|| json!({"effort": null, "summary": null})),
        );
        echo.insert("store".into(), json!(stored));
        echo.insert(
            "temperature".into(),
            or_null(req.temperature.map(Value::from)),
        );
        echo.insert(
            "text".into(),
            req.text
                .clone()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        );
        echo.insert(
            "tool_choice".into(),
            req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        );
        echo.insert("tools".into(), Value::Array(req.tools.clone()));
        echo.insert("top_p".into(), or_null(req.top_p.map(Value::from)));
        echo.insert(
            "truncation".into(),
            req.rest
                .get("truncation")
                .cloned()
                .unwrap_or(json!("disabled")),
        );
        Meta {
            id,
            created_at,
            model: req.model.clone(),
            echo,
            tools,
        }
    }

    /// An item ID of this response: `{prefix}_{response id}{n}`.
    pub fn item_id(&self, prefix: &str, n: usize) -> String {
        let tail = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{tail}{n:03}")
    }

    /// The response object.
    pub fn response(&self, status: Status, output: Vec<Value>, usage: Option<Value>) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), json!(self.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.created_at));
        r.insert("status".into(), json!(status.name()));
        r.insert("background".into(), json!(false));
        r.insert("error".into(), Value::Null);
        r.insert(
            "incomplete_details".into(),
            status
                .incomplete()
                .map_or(Value::Null, |why| json!({"reason": why})),
        );
        r.insert("model".into(), json!(self.model));
        r.insert("output".into(), Value::Array(output));
        r.insert("usage".into(), usage.unwrap_or(Value::Null));
        for (k, v) in &self.echo {
            r.insert(k.clone(), v.clone());
        }
        Value::Object(r)
    }

    /// A function call item for a Converse tool use.
    pub fn function_call(
        &self,
        id: String,
        call_id: &Value,
        flat: &str,
        arguments: String,
        done: bool,
    ) -> Value {
        let (name, namespace) = self.tools.unflatten(flat);
        let mut item = json!({"id": id, "type": "function_call", "status": if done { "completed" } else { "in_progress" },
            "call_id": call_id, "name": name, "arguments": arguments});
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        item
    }
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still running (stream events before the end).
    InProgress,
    /// Finished.
    Completed,
    /// Cut at the output limit.
    Incomplete,
    /// Stopped by a content filter or guardrail.
    Filtered,
    /// Failed.
    Failed,
}

impl Status {
    /// From Converse's stop reason.
    pub fn of(stop: &str) -> Status {
        match stop {
            "max_tokens" | "model_context_window_exceeded" => Status::Incomplete,
            "guardrail_intervened" | "content_filtered" => Status::Filtered,
            _ => Status::Completed,
        }
    }

    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete | Status::Filtered => "incomplete",
            Status::Failed => "failed",
        }
    }

    fn incomplete(self) -> Option<&'static str> {
        match self {
            Status::Incomplete => Some("max_output_tokens"),
            Status::Filtered => Some("content_filter"),
            _ => None,
        }
    }

    /// The stream event that ends a response with this status.
    pub fn event(self) -> &'static str {
        match self {
            Status::Incomplete | Status::Filtered => "response.incomplete",
            Status::Failed => "response.failed",
            _ => "response.completed",
        }
    }
}

/// A reasoning item from a Converse reasoning block.
pub fn reasoning_item(id: String, block: &Value, done: bool) -> Value {
    let text = block["reasoningText"]["text"].as_str().unwrap_or_default();
    let summary: Vec<Value> = if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "summary_text", "text": text})]
    };
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
    if done {
        item["encrypted_content"] = json!(reasoning::seal(block));
        item["status"] = json!("completed");
    }
    item
}

/// A message item holding `text`.
pub fn message_item(id: String, text: &str, done: bool) -> Value {
    let content: Vec<Value> = if done {
        vec![output_text(text)]
    } else {
        Vec::new()
    };
    json!({"id": id, "type": "message", "status": if done { "completed" } else { "in_progress" },
        "role": "assistant", "content": content})
}

/// An `output_text` content part.
pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The output items of a Converse answer: reasoning, messages (adjacent
/// text blocks as one), function calls — in the model's order.
pub fn items(meta: &Meta, answer: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut text: Option<String> = None;
    let blocks = answer["output"]["message"]["content"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let flush = |text: &mut Option<String>, out: &mut Vec<Value>| {
        if let Some(t) = text.take() {
            let id = meta.item_id("msg", out.len());
            out.push(message_item(id, &t, true));
        }
    };
    for b in blocks {
        if let Some(t) = b["text"].as_str() {
            text.get_or_insert_default().push_str(t);
        } else if let Some(r) = b.get("reasoningContent") {
            flush(&mut text, &mut out);
            out.push(reasoning_item(meta.item_id("rs", out.len()), r, true));
        } else if let Some(u) = b.get("toolUse") {
            flush(&mut text, &mut out);
            let id = meta.item_id("fc", out.len());
            let flat = u["name"].as_str().unwrap_or_default();
            out.push(meta.function_call(id, &u["toolUseId"], flat, u["input"].to_string(), true));
        }
    }
    flush(&mut text, &mut out);
    out
}

/// The Responses usage of a Converse usage: input tokens include those read
/// from and written to the prompt cache; reasoning tokens are estimated from
/// the reasoning text (Converse counts them inside `outputTokens`).
pub fn usage(u: &Value, reasoning_text_tokens: u64) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    let (i, o) = (n("inputTokens") + read + write, n("outputTokens"));
    json!({"input_tokens": i, "input_tokens_details": {"cached_tokens": read},
        "output_tokens": o, "output_tokens_details": {"reasoning_tokens": reasoning_text_tokens.min(o)},
        "total_tokens": i + o})
}

/// Estimated tokens of the reasoning in `items`.
pub fn reasoning_tokens(items: &[Value]) -> u64 {
    items
        .iter()
        .filter(|i| i["type"] == "reasoning")
        .flat_map(|i| i["summary"].as_array().into_iter().flatten())
        .filter_map(|s| s["text"].as_str())
        .map(estimate_tokens)
        .sum()
}

/// A whole Converse answer as a response object.
pub fn from_converse(meta: &Meta, answer: &Value) -> Value {
    let output = items(meta, answer);
    let status = Status::of(answer["stopReason"].as_str().unwrap_or("end_turn"));
    let usage = usage(&answer["usage"], reasoning_tokens(&output));
    meta.response(status, output, Some(usage))
}
