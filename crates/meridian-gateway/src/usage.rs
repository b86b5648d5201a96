//! Token usage read from answers: Converse's `usage` and `metadata` event,
//! Bedrock's token-count headers, an Anthropic or OpenAI body's `usage`,
//! OpenAI's last chunk or completed response, or the
//! `amazon-bedrock-invocationMetrics` InvokeModel streams put in their last chunk.

use meridian_catalog::ServiceTier;
use meridian_wire::event::{Event, INVOCATION_METRICS, Kind, Vocabulary};
use serde_json::Value;

/// Token counts. `input` excludes tokens read from or written to the
/// prompt cache, as Bedrock and Anthropic report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// The service tier a Converse answer says served it (`serviceTier`;
    /// InvokeModel's response header is read by `account`).
    pub service_tier: Option<ServiceTier>,
}

/// The tier a Converse answer or metadata event names.
fn tier_of(v: &Value) -> Option<ServiceTier> {
    ServiceTier::parse(v.get("serviceTier")?.get("type")?.as_str()?)
}

/// The tier Bedrock says served a request.
pub(crate) const TIER: http::HeaderName = http::HeaderName::from_static(crate::plan::TIER_HEADER);

/// The tier in InvokeModel's response header.
pub fn tier_header(headers: &http::HeaderMap) -> Option<ServiceTier> {
    ServiceTier::parse(headers.get(TIER)?.to_str().ok()?)
}

/// Bedrock's token-count headers (constants: a lookup by `&str` parses the
/// name each time).
const INPUT_TOKENS: http::HeaderName =
    http::HeaderName::from_static("x-amzn-bedrock-input-token-count");
const OUTPUT_TOKENS: http::HeaderName =
    http::HeaderName::from_static("x-amzn-bedrock-output-token-count");
const CACHE_READ_TOKENS: http::HeaderName =
    http::HeaderName::from_static("x-amzn-bedrock-cache-read-input-token-count");
const CACHE_WRITE_TOKENS: http::HeaderName =
    http::HeaderName::from_static("x-amzn-bedrock-cache-write-input-token-count");

/// Usage of a whole (non-streaming) answer: Converse's `usage`, Bedrock's
/// token-count headers, or an Anthropic body's `usage`.
pub fn unary_usage(headers: &http::HeaderMap, body: &[u8]) -> Usage {
    let header = |n: http::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    // Only `usage` and `serviceTier` are read; the rest is skipped unparsed.
    #[derive(serde::Deserialize)]
    struct Counts {
        #[serde(
            rename = "inputTokens",
            alias = "input_tokens",
            alias = "prompt_tokens"
        )]
        input: Option<u64>,
        #[serde(
            rename = "outputTokens",
            alias = "output_tokens",
            alias = "completion_tokens"
        )]
        output: Option<u64>,
        #[serde(rename = "cacheReadInputTokens", alias = "cache_read_input_tokens")]
        cache_read: Option<u64>,
        #[serde(
            rename = "cacheWriteInputTokens",
            alias = "cache_creation_input_tokens"
        )]
        cache_write: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Tier<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        usage: Option<Counts>,
        #[serde(rename = "serviceTier", borrow)]
        service_tier: Option<Tier<'a>>,
    }
    let answer = serde_json::from_slice::<Answer<'_>>(body).ok();
    let service_tier = answer
        .as_ref()
        .and_then(|a| ServiceTier::parse(a.service_tier.as_ref()?.kind.as_deref()?));
    if let Some(Counts {
        input: Some(input),
        output,
        cache_read,
        cache_write,
    }) = answer.and_then(|a| a.usage)
    {
        return Usage {
            input,
            output: output.unwrap_or(0),
            cache_read: cache_read.unwrap_or(0),
            cache_write: cache_write.unwrap_or(0),
            service_tier,
        };
    }
    match (header(INPUT_TOKENS), header(OUTPUT_TOKENS)) {
        (Some(input), Some(output)) => Usage {
            input,
            output,
            cache_read: header(CACHE_READ_TOKENS).unwrap_or(0),
            cache_write: header(CACHE_WRITE_TOKENS).unwrap_or(0),
            service_tier,
        },
        _ => Usage::default(),
    }
}

/// A `usage` object in Converse's or Anthropic's names.
fn usage_of(v: &Value) -> Option<Usage> {
    counts(v.get("usage")?)
}

fn counts(u: &Value) -> Option<Usage> {
    let get = |a: &str, b: &str| u.get(a).or_else(|| u.get(b)).and_then(Value::as_u64);
    Some(Usage {
        input: get("inputTokens", "input_tokens").or_else(|| get("prompt_tokens", ""))?,
        output: get("outputTokens", "output_tokens")
            .or_else(|| get("completion_tokens", ""))
            .unwrap_or(0),
        cache_read: get("cacheReadInputTokens", "cache_read_input_tokens").unwrap_or(0),
        cache_write: get("cacheWriteInputTokens", "cache_creation_input_tokens").unwrap_or(0),
        service_tier: None,
    })
}

/// Reads usage out of streamed events as they pass: Converse's `metadata`
/// event; in InvokeModel chunks, Anthropic's `message_start` (input and
/// cache) and `message_delta` (output) usage, or the
/// `amazon-bedrock-invocationMetrics` of the last chunk.
///
/// Output is also estimated as deltas pass (about four bytes of text a
/// token, at least one a delta), so a stream cut before its usage arrived —
/// the client went away, the deadline passed, the upstream broke — is
/// settled with what it consumed, not with nothing ([`StreamUsage::settled`]).
#[derive(Debug, Default)]
pub struct StreamUsage {
    pub usage: Usage,
    /// Output tokens estimated from the deltas that passed.
    passed: u64,
    /// Whether the upstream reported its final output count.
    output_reported: bool,
}

/// Bytes of text per token, for estimates.
const BYTES_PER_TOKEN: u64 = 4;
/// What an Anthropic `content_block_delta` chunk carries besides its text.
const CHUNK_DELTA_OVERHEAD: u64 = 75;
/// What an OpenAI chunk or Responses delta event carries besides its text.
const OPENAI_DELTA_OVERHEAD: u64 = 120;

/// Tokens in `text_bytes` of streamed text: at least one a delta.
fn delta_tokens(text_bytes: u64) -> u64 {
    (text_bytes / BYTES_PER_TOKEN).max(1)
}

/// The text bytes of a Converse `contentBlockDelta` (text, reasoning text or
/// tool input); `None` for deltas that carry no generated text (signatures).
fn converse_delta_bytes(payload: &[u8]) -> Option<u64> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Reasoning<'a> {
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct ToolUse<'a> {
        #[serde(borrow)]
        input: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Delta<'a> {
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
        #[serde(rename = "reasoningContent", borrow)]
        reasoning: Option<Reasoning<'a>>,
        #[serde(rename = "toolUse", borrow)]
        tool_use: Option<ToolUse<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        delta: Delta<'a>,
    }
    let e: Event<'_> = serde_json::from_slice(payload).ok()?;
    let d = e.delta;
    let text = d
        .text
        .or(d.reasoning.and_then(|r| r.text))
        .or(d.tool_use.and_then(|t| t.input))?;
    Some(text.len() as u64)
}

impl StreamUsage {
    /// The usage to settle: what the upstream reported, with output no less
    /// than the deltas that passed when the final count never came, and the
    /// input estimate when no input count came either.
    pub fn settled(&self, input_estimate: u64) -> Usage {
        let mut u = self.usage;
        if !self.output_reported {
            u.output = u.output.max(self.passed);
        }
        if u.input == 0 && u.cache_read == 0 && u.cache_write == 0 {
            u.input = input_estimate;
        }
        u
    }

    /// Looks at one upstream event (before any guard changed it). Only
    /// events that can carry usage are parsed; a text delta is measured
    /// by the length of its text.
    pub fn see(&mut self, ev: &Event) {
        match (ev.vocabulary(), ev.kind()) {
            (Vocabulary::Converse, Kind::BlockDelta) => {
                if let Some(n) = ev.text().and_then(converse_delta_bytes) {
                    self.passed = self.passed.saturating_add(delta_tokens(n));
                }
            }
            (Vocabulary::Converse, Kind::Metadata) => {
                if let Ok(v) = ev.json()
                    && let Some(u) = usage_of(&v)
                {
                    self.usage = Usage {
                        service_tier: tier_of(&v),
                        ..u
                    };
                    self.output_reported = true;
                }
            }
            (Vocabulary::Messages, Kind::BlockDelta) => {
                let len = ev.text().map_or(0, <[u8]>::len) as u64;
                let text = len.saturating_sub(CHUNK_DELTA_OVERHEAD);
                self.passed = self.passed.saturating_add(delta_tokens(text));
            }
            (Vocabulary::Messages, Kind::MessageStart) => {
                if let Ok(v) = ev.json()
                    && let Some(u) = counts(&v["message"]["usage"])
                {
                    self.usage = Usage {
                        service_tier: self.usage.service_tier,
                        ..u
                    };
                }
            }
            (Vocabulary::Messages, Kind::MessageDelta) => {
                if let Ok(v) = ev.json()
                    && let Some(o) = v["usage"]["output_tokens"].as_u64()
                {
                    self.usage.output = o;
                    self.output_reported = true;
                }
            }
            // OpenAI's: a chat chunk's text, or a Responses text delta.
            (Vocabulary::OpenAi, Kind::BlockDelta) => {
                let len = ev.text().map_or(0, <[u8]>::len) as u64;
                let text = len.saturating_sub(OPENAI_DELTA_OVERHEAD);
                self.passed = self.passed.saturating_add(delta_tokens(text));
            }
            // The chat chunk with `usage`, or the response that ends a
            // Responses stream.
            (Vocabulary::OpenAi, Kind::Metadata | Kind::MessageStop) => {
                if let Ok(v) = ev.json()
                    && let Some(u) = usage_of(&v).or_else(|| usage_of(&v["response"]))
                {
                    self.usage = u;
                    self.output_reported = true;
                }
            }
            (Vocabulary::Messages | Vocabulary::Chunk, Kind::MessageStop | Kind::Metadata) => {
                if let Ok(v) = ev.json()
                    && let Some(m) = v.get(INVOCATION_METRICS)
                {
                    let get = |k: &str| m.get(k).and_then(Value::as_u64);
                    if let (Some(input), Some(output)) =
                        (get("inputTokenCount"), get("outputTokenCount"))
                    {
                        self.usage.input = input;
                        self.usage.output = output;
                        self.output_reported = true;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unary_usage_reads_converse_anthropic_and_headers() {
        let none = http::HeaderMap::new();
        let converse = br#"{"output":{"message":{"role":"assistant","content":[{"text":"a \"usage\" word"}]}},"usage":{"inputTokens":12,"outputTokens":3,"totalTokens":15,"cacheReadInputTokens":100,"cacheWriteInputTokens":7},"serviceTier":{"type":"flex"}}"#;
        assert_eq!(
            unary_usage(&none, converse),
            Usage {
                input: 12,
                output: 3,
                cache_read: 100,
                cache_write: 7,
                service_tier: Some(ServiceTier::Flex),
            }
        );
        let anthropic = br#"{"id":"m","content":[{"type":"text","text":"x"}],"usage":{"input_tokens":5,"cache_creation_input_tokens":9,"cache_read_input_tokens":4,"output_tokens":2}}"#;
        assert_eq!(
            unary_usage(&none, anthropic),
            Usage {
                input: 5,
                output: 2,
                cache_read: 4,
                cache_write: 9,
                service_tier: None,
            }
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amzn-bedrock-input-token-count", "8".parse().unwrap());
        headers.insert("x-amzn-bedrock-output-token-count", "1".parse().unwrap());
        let titan = br#"{"embedding":[0.1,0.2],"inputTextTokenCount":8}"#;
        assert_eq!(unary_usage(&headers, titan).input, 8);
        assert_eq!(unary_usage(&headers, b"not json").output, 1);
        assert_eq!(unary_usage(&none, b"{}"), Usage::default());
    }
}
