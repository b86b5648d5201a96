//! Token usage read from answers: Converse's `usage` and `metadata` event,
//! Bedrock's token-count headers, an Anthropic body's `usage`, or the
//! `amazon-bedrock-invocationMetrics` InvokeModel streams put in their last chunk.

use base64::Engine as _;
use serde_json::Value;

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

/// Usage of a whole (non-streaming) answer: Converse's `usage`, Bedrock's
/// token-count headers, or an Anthropic body's `usage`.
pub fn unary_usage(headers: &http::HeaderMap, body: &[u8]) -> Usage {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    if let (Some(input), Some(output)) = (
        header("x-amzn-bedrock-input-token-count"),
        header("x-amzn-bedrock-output-token-count"),
    ) {
        return Usage { input, output };
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    usage_of(&v).unwrap_or_default()
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let get = |a: &str, b: &str| u.get(a).or_else(|| u.get(b)).and_then(Value::as_u64);
    Some(Usage {
        input: get("inputTokens", "input_tokens")?,
        output: get("outputTokens", "output_tokens").unwrap_or(0),
    })
}

/// Reads usage out of streamed events as they pass: Converse's `metadata`
/// event, or the `amazon-bedrock-invocationMetrics` InvokeModel puts in its
/// last chunk.
#[derive(Debug, Default)]
pub struct StreamUsage {
    pub usage: Usage,
}

impl StreamUsage {
    /// Looks at one event frame's payload.
    pub fn see(&mut self, event_type: &str, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        match event_type {
            "metadata" => {
                if let Some(u) = usage_of(&v) {
                    self.usage = u;
                }
            }
            "chunk" => {
                let inner = v
                    .get("bytes")
                    .and_then(Value::as_str)
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                if let Some(m) = inner
                    .as_ref()
                    .and_then(|i| i.get("amazon-bedrock-invocationMetrics"))
                {
                    let get = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
                    self.usage = Usage {
                        input: get("inputTokenCount"),
                        output: get("outputTokenCount"),
                    };
                }
            }
            _ => {}
        }
    }
}
