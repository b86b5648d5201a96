//! InvokeModel bodies in provider-native formats: Anthropic Messages, Amazon
//! Nova and Titan Text Embeddings. Each is mapped onto the Converse-shaped
//! reply generator and back.

use base64::Engine;
use meridian_wire::BedrockError;
use meridian_wire::converse::estimate_tokens;
use serde_json::{Value, json};

use crate::generate::{Block, Reply};
use crate::rng::Rng;

/// The native dialect of a base model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Anthropic,
    Nova,
    TitanEmbed,
    CohereEmbed,
}

impl Dialect {
    /// The dialect of a base model ID.
    pub fn of(base_model_id: &str) -> Result<Dialect, BedrockError> {
        if base_model_id.starts_with("anthropic.") {
            Ok(Dialect::Anthropic)
        } else if base_model_id.starts_with("amazon.nova") {
            Ok(Dialect::Nova)
        } else if base_model_id.starts_with("amazon.titan-embed") {
            Ok(Dialect::TitanEmbed)
        } else if base_model_id.starts_with("cohere.embed") {
            Ok(Dialect::CohereEmbed)
        } else {
            Err(BedrockError::validation(format!(
                "the simulated fleet does not speak the native InvokeModel format of {base_model_id}; use Converse"
            )))
        }
    }
}

fn bad(msg: &str) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {msg}, please reformat your input and try again."
    ))
}

/// A native body as a Converse-shaped request, plus its max tokens.
pub fn to_converse(d: Dialect, body: &Value) -> Result<(Value, u64), BedrockError> {
    match d {
        Dialect::Anthropic => {
            let max = body["max_tokens"]
                .as_u64()
                .ok_or_else(|| bad("#: required key [max_tokens] not found"))?;
            let msgs = body["messages"]
                .as_array()
                .ok_or_else(|| bad("#: required key [messages] not found"))?;
            if msgs.is_empty() {
                // As Bedrock and Anthropic: a conversation has a first message.
                return Err(bad("#/messages: expected minimum item count: 1, found: 0"));
            }
            let mut messages = Vec::new();
            for m in msgs {
                let content: Vec<Value> = match &m["content"] {
                    Value::String(s) => vec![json!({"text": s})],
                    Value::Array(blocks) => blocks
                        .iter()
                        .flat_map(|b| {
                            let converted = match b["type"].as_str() {
                            Some("text") => Some(json!({"text": b["text"]})),
                            Some("tool_result") => {
                                let c = match &b["content"] {
                                    Value::String(s) => json!([{"text": s}]),
                                    Value::Array(a) => json!(a.iter().map(|x| json!({"text": x["text"]})).collect::<Vec<_>>()),
                                    _ => json!([]),
                                };
                                Some(json!({"toolResult": {"toolUseId": b["tool_use_id"], "content": c}}))
                            }
                            Some("tool_use") => Some(json!({"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}})),
                            Some("thinking") => Some(json!({"reasoningContent": {"reasoningText": {"text": b["thinking"], "signature": b["signature"]}}})),
                            Some("redacted_thinking") => Some(json!({"reasoningContent": {"redactedContent": b["data"]}})),
                            _ => None,
                            };
                            converted.into_iter().chain(cache_point(b))
                        })
                        .collect(),
                    _ => return Err(bad("#/messages: content must be a string or a list")),
                };
                messages.push(json!({"role": m["role"], "content": content}));
            }
            let mut out = json!({"messages": messages});
            if body["thinking"].is_object() {
                out["additionalModelRequestFields"] = json!({"thinking": body["thinking"]});
            }
            match &body["system"] {
                Value::String(sys) => out["system"] = json!([{"text": sys}]),
                Value::Array(blocks) => {
                    let sys: Vec<Value> = blocks
                        .iter()
                        .flat_map(|b| {
                            std::iter::once(json!({"text": b["text"]})).chain(cache_point(b))
                        })
                        .collect();
                    out["system"] = json!(sys);
                }
                _ => {}
            }
            if let Some(tools) = body["tools"].as_array() {
                let specs: Vec<Value> = tools
                    .iter()
                    .map(|t| json!({"toolSpec": {"name": t["name"], "inputSchema": {"json": t["input_schema"]}}}))
                    .collect();
                out["toolConfig"] = json!({"tools": specs});
                match (
                    body["tool_choice"]["type"].as_str(),
                    body["tool_choice"]["name"].as_str(),
                ) {
                    (_, Some(name)) => {
                        out["toolConfig"]["toolChoice"] = json!({"tool": {"name": name}});
                    }
                    (Some("any"), None) => out["toolConfig"]["toolChoice"] = json!({"any": {}}),
                    (Some("none"), None) => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("toolConfig");
                        }
                    }
                    _ => {}
                }
            }
            Ok((out, max))
        }
        Dialect::Nova => {
            let max = body["inferenceConfig"]["maxTokens"]
                .as_u64()
                .or_else(|| body["inferenceConfig"]["max_new_tokens"].as_u64())
                .unwrap_or(1024);
            if !body["messages"].is_array() {
                return Err(bad("required key [messages] not found"));
            }
            Ok((
                json!({"messages": body["messages"], "system": body["system"]}),
                max,
            ))
        }
        Dialect::TitanEmbed | Dialect::CohereEmbed => {
            Err(bad("embedding models have no conversation"))
        }
    }
}

/// Anthropic's usage object, with its prompt-cache counts.
fn anthropic_usage(r: &Reply, output_tokens: u64) -> Value {
    let c = r.cache;
    let (five, hour) = if c.one_hour {
        (0, c.write)
    } else {
        (c.write, 0)
    };
    json!({"input_tokens": r.input_tokens, "output_tokens": output_tokens,
           "cache_read_input_tokens": c.read, "cache_creation_input_tokens": c.write,
           "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour}})
}

/// A `cachePoint` block for an Anthropic block's `cache_control`, if it has one.
fn cache_point(block: &Value) -> Option<Value> {
    let cc = block.get("cache_control")?;
    let ttl = cc["ttl"].as_str().unwrap_or("5m");
    Some(json!({"cachePoint": {"type": "default", "ttl": ttl}}))
}

/// The native response body.
pub fn response(d: Dialect, r: &Reply, model_id: &str, rng: &mut Rng) -> Value {
    match d {
        Dialect::Anthropic => {
            let content: Vec<Value> = r
                .blocks
                .iter()
                .map(|b| match b {
                    Block::Text(t) => json!({"type": "text", "text": t}),
                    Block::ToolUse { id, name, input } => {
                        json!({"type": "tool_use", "id": id, "name": name, "input": input})
                    }
                    Block::Reasoning { text, signature } => {
                        json!({"type": "thinking", "thinking": text, "signature": signature})
                    }
                })
                .collect();
            json!({
                "id": format!("msg_bdrk_{:016x}", rng.next_u64()),
                "type": "message", "role": "assistant", "model": model_id, "content": content,
                "stop_reason": r.stop_reason, "stop_sequence": null,
                "usage": anthropic_usage(r, r.output_tokens),
            })
        }
        Dialect::Nova | Dialect::TitanEmbed | Dialect::CohereEmbed => {
            let text = r
                .blocks
                .iter()
                .find_map(|b| {
                    if let Block::Text(t) = b {
                        Some(t.clone())
                    } else {
                        None
                    }
                })
                .unwrap_or_default();
            json!({
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": r.stop_reason,
                "usage": {"inputTokens": r.input_tokens, "outputTokens": r.output_tokens, "totalTokens": r.input_tokens + r.output_tokens},
            })
        }
    }
}

/// Native stream chunks (each becomes base64 `bytes` in a `chunk` event), with
/// the output tokens each carries.
pub fn stream_chunks(
    d: Dialect,
    r: &Reply,
    model_id: &str,
    latency: (u64, u64),
    rng: &mut Rng,
) -> Vec<(Value, u64)> {
    let (total_ms, first_ms) = latency;
    match d {
        Dialect::Anthropic => {
            let mut out = vec![(
                json!({"type": "message_start", "message": {"id": format!("msg_bdrk_{:016x}", rng.next_u64()), "type": "message",
                    "role": "assistant", "model": model_id, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": anthropic_usage(r, 1)}}),
                0,
            )];
            for (i, b) in r.blocks.iter().enumerate() {
                match b {
                    Block::Text(t) => {
                        out.push((json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}), 0));
                        for text in crate::generate::word_deltas(t) {
                            out.push((json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}), 1));
                        }
                    }
                    Block::Reasoning { text, signature } => {
                        out.push((json!({"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}), 0));
                        for text in crate::generate::word_deltas(text) {
                            out.push((json!({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": text}}), 1));
                        }
                        out.push((json!({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": signature}}), 0));
                    }
                    Block::ToolUse { id, name, input } => {
                        out.push((json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}), 0));
                        out.push((json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}), 1));
                    }
                }
                out.push((json!({"type": "content_block_stop", "index": i}), 0));
            }
            out.push((json!({"type": "message_delta", "delta": {"stop_reason": r.stop_reason, "stop_sequence": null}, "usage": {"output_tokens": r.output_tokens}}), 0));
            out.push((
                json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": r.input_tokens, "outputTokenCount": r.output_tokens,
                "invocationLatency": total_ms, "firstByteLatency": first_ms}}),
                0,
            ));
            out
        }
        Dialect::Nova | Dialect::TitanEmbed | Dialect::CohereEmbed => {
            let mut out = vec![(json!({"messageStart": {"role": "assistant"}}), 0)];
            for b in &r.blocks {
                if let Block::Text(t) = b {
                    for w in t.split(' ') {
                        out.push((json!({"contentBlockDelta": {"delta": {"text": format!("{w} ")}, "contentBlockIndex": 0}}), 1));
                    }
                }
            }
            out.push((json!({"contentBlockStop": {"contentBlockIndex": 0}}), 0));
            out.push((json!({"messageStop": {"stopReason": r.stop_reason}}), 0));
            out.push((json!({"metadata": {"usage": {"inputTokens": r.input_tokens, "outputTokens": r.output_tokens}},
                "amazon-bedrock-invocationMetrics": {"inputTokenCount": r.input_tokens, "outputTokenCount": r.output_tokens,
                "invocationLatency": total_ms, "firstByteLatency": first_ms}}), 0));
            out
        }
    }
}

impl Dialect {
    /// Whether the model answers with embeddings (InvokeModel only).
    pub fn is_embedding(self) -> bool {
        matches!(self, Dialect::TitanEmbed | Dialect::CohereEmbed)
    }
}

/// A random unit-length vector of `dims` numbers.
fn unit_vector(dims: u64, rng: &mut Rng) -> Vec<f64> {
    let raw: Vec<f64> = (0..dims).map(|_| rng.unit() - 0.5).collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

/// An embedding model's answer and its input tokens: Titan's one vector,
/// or Cohere's vectors for up to 96 texts.
pub fn embedding(
    dialect: Dialect,
    base_model_id: &str,
    body: &Value,
    rng: &mut Rng,
) -> Result<(Value, u64), BedrockError> {
    if dialect == Dialect::CohereEmbed {
        return cohere_embedding(base_model_id, body, rng);
    }
    let text = body["inputText"]
        .as_str()
        .ok_or_else(|| bad("#: required key [inputText] not found"))?;
    let dims = body["dimensions"].as_u64().unwrap_or(1024);
    if ![256, 512, 1024].contains(&dims) {
        return Err(bad("#/dimensions: must be 256, 512 or 1024"));
    }
    let v = unit_vector(dims, rng);
    let tokens = estimate_tokens(text).max(1);
    Ok((
        json!({"embedding": v, "inputTextTokenCount": tokens}),
        tokens,
    ))
}

/// Most texts Cohere Embed takes in one call on Bedrock.
pub const COHERE_MAX_TEXTS: usize = 96;

/// Cohere Embed on Bedrock: `texts` (1 to 96) and `input_type` required;
/// `embedding_types` answers by type; v4 takes `output_dimension`.
fn cohere_embedding(base: &str, body: &Value, rng: &mut Rng) -> Result<(Value, u64), BedrockError> {
    let texts: Vec<&str> = body["texts"]
        .as_array()
        .ok_or_else(|| bad("#: required key [texts] not found"))?
        .iter()
        .map(|t| t.as_str().ok_or_else(|| bad("#/texts: expected strings")))
        .collect::<Result<_, _>>()?;
    if texts.is_empty() || texts.len() > COHERE_MAX_TEXTS {
        return Err(bad(&format!(
            "#/texts: expected 1 to {COHERE_MAX_TEXTS} texts, got {}",
            texts.len()
        )));
    }
    let kinds = [
        "search_document",
        "search_query",
        "classification",
        "clustering",
    ];
    if !body["input_type"]
        .as_str()
        .is_some_and(|t| kinds.contains(&t))
    {
        return Err(bad(
            "#/input_type: expected search_document, search_query, classification or clustering",
        ));
    }
    let v4 = base.starts_with("cohere.embed-v4");
    let dims = match body.get("output_dimension").and_then(Value::as_u64) {
        None => {
            if v4 {
                1536
            } else {
                1024
            }
        }
        Some(d) if v4 && [256, 512, 1024, 1536].contains(&d) => d,
        Some(_) if v4 => return Err(bad("#/output_dimension: must be 256, 512, 1024 or 1536")),
        Some(_) => return Err(bad("#: extraneous key [output_dimension] is not permitted")),
    };
    let vectors: Vec<Vec<f64>> = texts.iter().map(|_| unit_vector(dims, rng)).collect();
    let tokens = texts.iter().map(|t| estimate_tokens(t).max(1)).sum();
    let id = format!("{:016x}", rng.next_u64());
    let answer = match body.get("embedding_types").and_then(Value::as_array) {
        Some(types) => {
            if types.iter().any(|t| t.as_str() != Some("float")) {
                return Err(bad(
                    "#/embedding_types: the simulated fleet answers float only",
                ));
            }
            json!({"id": id, "embeddings": {"float": vectors}, "texts": texts,
                   "response_type": "embeddings_by_type"})
        }
        None => json!({"id": id, "embeddings": vectors, "texts": texts,
                       "response_type": "embeddings_floats"}),
    };
    Ok((answer, tokens))
}

/// Input tokens of a CountTokens request.
pub fn count_tokens(body: &Value) -> Result<u64, BedrockError> {
    if let Some(c) = body["input"].get("converse") {
        return Ok(meridian_wire::converse::estimate_input_tokens(c));
    }
    if let Some(b64) = body["input"]["invokeModel"]["body"].as_str() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| BedrockError::validation("input.invokeModel.body must be base64"))?;
        let text = String::from_utf8_lossy(&raw);
        return Ok(estimate_tokens(&text).max(1));
    }
    Err(BedrockError::validation(
        "input must contain 'converse' or 'invokeModel'",
    ))
}
