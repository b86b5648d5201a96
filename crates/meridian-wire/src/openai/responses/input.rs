//! A Responses request → a Converse request: `instructions` and system or
//! developer messages become the system prompt, input items become turns
//! (function calls and their outputs as tool use and tool results,
//! reasoning items back as signed reasoning blocks), function tools — also
//! those grouped in a `namespace` — become tool specs.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::reasoning;
use super::tools::{Tools, tool_config, tools};
use crate::openai::OpenAiError;
use crate::openai::inbound::{
    image_block, max_tokens, output_config, push, set_additional_fields, thinking_budget,
};

/// Fields of the API that have no Converse counterpart: read by Meridian
/// (`store`, `metadata`, `include` …) or with no meaning for the model;
/// never sent upstream. Anything else unknown goes to
/// `additionalModelRequestFields`, as on `/v1/chat/completions`.
const CONSUMED: [&str; 20] = [
    "include",
    "metadata",
    "store",
    "previous_response_id",
    "stream",
    "stream_options",
    "parallel_tool_calls",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "user",
    "truncation",
    "client_metadata",
    "max_tool_calls",
    "top_logprobs",
    "context_management",
    "background",
    "service_tier",
    "moderation",
];

/// The request, as far as Meridian reads it.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Model asked for.
    pub model: String,
    /// Text, or a list of items.
    #[serde(default)]
    pub input: Option<Input>,
    /// The system prompt of this request (not carried to the next).
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tools offered.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// `auto`, `none`, `required`, or one function.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// `{effort, summary}`.
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// `{format: {type: text | json_object | json_schema …}}`.
    #[serde(default)]
    pub text: Option<Value>,
    /// Most visible output tokens.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Kept with the response.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Keep the response (the API's default is true).
    #[serde(default)]
    pub store: Option<bool>,
    /// The stored response this one continues.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Extra output (`reasoning.encrypted_content`).
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Run in the background (Mantle only).
    #[serde(default)]
    pub background: Option<bool>,
    /// `auto`, `default`, `flex`, `priority`.
    #[serde(default)]
    pub service_tier: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `input`: text, or items.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages, function calls and outputs, reasoning.
    Items(Vec<Value>),
}

impl Input {
    /// As items: text is one user message.
    pub fn into_items(self) -> Vec<Value> {
        match self {
            Input::Text(t) => vec![json!({"type": "message", "role": "user", "content": t})],
            Input::Items(items) => items,
        }
    }
}

/// A translated request.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The Converse body.
    pub converse: Value,
    /// Its tools.
    pub tools: Tools,
    /// Whether `reasoning.effort` asked for thinking.
    pub reasoning: bool,
    /// Whether `text.format` asked for structured output.
    pub structured: bool,
    /// API fields read by Meridian or without a Converse counterpart.
    pub consumed: Vec<String>,
}

/// Translates `req` whose conversation so far is `items` (a stored
/// conversation followed by this request's input).
pub fn to_converse(req: &Request, items: &[Value]) -> Result<Translated, OpenAiError> {
    for (field, why) in [
        (
            "conversation",
            "stored conversations are not supported; use previous_response_id",
        ),
        (
            "prompt",
            "stored prompt templates are not supported; send instructions and input",
        ),
    ] {
        if req.rest.get(field).is_some_and(|v| !v.is_null()) {
            return Err(OpenAiError::invalid(field, why));
        }
    }
    let tools = tools(&req.tools)?;
    let mut system: Vec<Value> = Vec::new();
    if let Some(i) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        system.push(json!({"text": i}));
    }
    let mut messages: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        turn(
            item,
            &format!("input[{i}]"),
            &tools,
            &mut system,
            &mut messages,
        )?;
    }
    if messages.is_empty() {
        return Err(OpenAiError::invalid(
            "input",
            "'input' must hold at least one user message",
        ));
    }
    let mut converse = json!({"messages": messages});
    if !system.is_empty() {
        converse["system"] = json!(system);
    }
    let budget = match req.reasoning.as_ref().map(|r| &r["effort"]) {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => {
            thinking_budget(e).map_err(|e| OpenAiError::invalid("reasoning.effort", e.message))?
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "reasoning.effort",
                "reasoning.effort must be a string",
            ));
        }
    };
    let mut cfg = Map::new();
    if let Some(n) = max_tokens(req.max_output_tokens, budget) {
        cfg.insert("maxTokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        cfg.insert("topP".into(), json!(p));
    }
    if !cfg.is_empty() {
        converse["inferenceConfig"] = Value::Object(cfg);
    }
    if let Some(tc) = tool_config(&tools, &req.tools, req.tool_choice.as_ref())? {
        converse["toolConfig"] = tc;
    }
    let structured = match req.text.as_ref().map(|t| &t["format"]) {
        Some(f) if f.is_object() => text_format(f)?,
        _ => None,
    };
    if let Some(oc) = &structured {
        converse["outputConfig"] = oc.clone();
    }
    match req.service_tier.as_deref() {
        None | Some("auto") => {}
        Some(t @ ("default" | "flex" | "priority")) => {
            converse["serviceTier"] = json!({"type": t});
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "service_tier",
                "service_tier must be auto, default, flex or priority",
            ));
        }
    }
    let extra: Map<String, Value> = req
        .rest
        .iter()
        .filter(|(k, _)| !CONSUMED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    set_additional_fields(&mut converse, extra, budget);
    let consumed = req
        .rest
        .keys()
        .filter(|k| CONSUMED.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(Translated {
        converse,
        tools,
        reasoning: budget.is_some(),
        structured: structured.is_some(),
        consumed,
    })
}

/// One input item into the system prompt or the turns.
fn turn(
    item: &Value,
    at: &str,
    tools: &Tools,
    system: &mut Vec<Value>,
    messages: &mut Vec<Value>,
) -> Result<(), OpenAiError> {
    let kind = match item["type"].as_str() {
        Some(k) => k,
        // An "easy" message: role and content, no type.
        None if item.get("role").is_some() => "message",
        None => {
            return Err(OpenAiError::invalid(
                &format!("{at}.type"),
                "each input item needs a 'type'",
            ));
        }
    };
    match kind {
        "message" => {
            let role = item["role"].as_str().unwrap_or_default();
            let blocks = content(&item["content"], &format!("{at}.content"))?;
            match role {
                "system" | "developer" => {
                    system.extend(blocks.into_iter().filter(|b| b.get("text").is_some()))
                }
                "user" => push(messages, "user", blocks),
                "assistant" => push(messages, "assistant", blocks),
                other => {
                    return Err(OpenAiError::invalid(
                        &format!("{at}.role"),
                        format!("unknown role '{other}'; use user, assistant, system or developer"),
                    ));
                }
            }
        }
        "function_call" => {
            let call_id = str_field(item, "call_id", at)?;
            let name = str_field(item, "name", at)?;
            let args = item["arguments"].as_str().unwrap_or("{}");
            let input: Value =
                serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        OpenAiError::invalid(
                            &format!("{at}.arguments"),
                            "arguments must be a JSON object string",
                        )
                    })?;
            let flat = tools.flatten(name, item["namespace"].as_str());
            push(
                messages,
                "assistant",
                vec![json!({"toolUse": {"toolUseId": call_id, "name": flat, "input": input}})],
            );
        }
        "function_call_output" => {
            let call_id = str_field(item, "call_id", at)?;
            let mut out = content(&item["output"], &format!("{at}.output"))?;
            if out.is_empty() {
                out.push(json!({"text": ""}));
            }
            push(
                messages,
                "user",
                vec![json!({"toolResult": {"toolUseId": call_id, "content": out}})],
            );
        }
        "reasoning" => {
            // Only a reasoning item this gateway produced carries what the
            // model needs back (its text and signature); others are left out.
            let sealed = item["encrypted_content"].as_str().unwrap_or_default();
            match reasoning::open(sealed) {
                Ok(Some(block)) => push(messages, "assistant", vec![block]),
                Ok(None) => {}
                Err(_) => {
                    return Err(OpenAiError::invalid(
                        &format!("{at}.encrypted_content"),
                        "this reasoning item's encrypted_content was changed; send it back as it came",
                    ));
                }
            }
        }
        "item_reference" => {
            return Err(OpenAiError::invalid(
                &format!("{at}.type"),
                "item_reference is not supported; send the item itself or use previous_response_id",
            ));
        }
        other => {
            return Err(OpenAiError::invalid(
                &format!("{at}.type"),
                format!("input items of type '{other}' are not supported on Bedrock"),
            ));
        }
    }
    Ok(())
}

pub(super) fn str_field<'a>(item: &'a Value, key: &str, at: &str) -> Result<&'a str, OpenAiError> {
    item[key]
        .as_str()
        .ok_or_else(|| OpenAiError::invalid(&format!("{at}.{key}"), format!("'{key}' is required")))
}

/// Message content or a function output: text, or parts.
fn content(c: &Value, at: &str) -> Result<Vec<Value>, OpenAiError> {
    let parts = match c {
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::String(s) => return Ok(vec![json!({"text": s})]),
        Value::Null => return Ok(Vec::new()),
        Value::Array(parts) => parts,
        _ => {
            return Err(OpenAiError::invalid(
                at,
                "content must be a string or a list of parts",
            ));
        }
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let here = format!("{at}[{j}]");
        match p["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(json!({"text": t}));
                }
            }
            Some("refusal") => {
                if let Some(t) = p["refusal"].as_str().filter(|t| !t.is_empty()) {
                    out.push(json!({"text": t}));
                }
            }
            Some("input_image") => match p["image_url"].as_str() {
                Some(url) => out.push(image_block(url, &format!("{here}.image_url"))?),
                None => {
                    return Err(OpenAiError::invalid(
                        &here,
                        "images must be sent as image_url data: URLs (file IDs are not supported)",
                    ));
                }
            },
            other => {
                return Err(OpenAiError::invalid(
                    &format!("{here}.type"),
                    format!("content part type {other:?} is not supported"),
                ));
            }
        }
    }
    Ok(out)
}

/// `text.format` → Converse's `outputConfig`, when it asks for JSON.
fn text_format(f: &Value) -> Result<Option<Value>, OpenAiError> {
    match f["type"].as_str() {
        Some("text") | None => Ok(None),
        Some("json_schema") => {
            if !f["schema"].is_object() {
                return Err(OpenAiError::invalid(
                    "text.format.schema",
                    "a JSON schema object is required",
                ));
            }
            Ok(Some(output_config(
                f["schema"].to_string(),
                f["name"].as_str().unwrap_or("response"),
                f["description"].as_str(),
            )))
        }
        Some("json_object") => Ok(Some(output_config(
            json!({"type": "object"}).to_string(),
            "json_object",
            None,
        ))),
        Some(other) => Err(OpenAiError::invalid(
            "text.format.type",
            format!("text format '{other}' is not supported; use text, json_object or json_schema"),
        )),
    }
}
