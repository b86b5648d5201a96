//! The one request every front door decodes into, whatever its wire format:
//! the operation, the model asked for, the body to send upstream (Converse
//! shape or a model's native body), whether it streams, and the headers to
//! forward. The pipeline's stages only ever see this.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use meridian_wire::Action;
use serde_json::Value;

/// A model invocation, decoded.
#[derive(Debug, Clone)]
pub struct Call {
    /// Bedrock operation name (`Converse`, `InvokeModelWithResponseStream`, …),
    /// in records and metrics.
    pub operation: &'static str,
    /// The Bedrock Runtime call it becomes upstream.
    pub action: Action,
    /// Model name, ID or ARN as the client sent it.
    pub requested: String,
    /// Body sent upstream, unchanged by every attempt.
    pub body: Bytes,
    /// The body as JSON, when it is.
    pub json: Option<Value>,
    /// Whether the answer is an event stream.
    pub streaming: bool,
    /// Request headers forwarded upstream.
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// Bodies sent after `body`, each as its own upstream call under the
    /// same plan and deadline (an embedding model that takes one input per
    /// call); the answers reach the front door as one JSON array.
    pub more: Vec<Bytes>,
    /// Where the body carries the content it sends on as base64 inside
    /// JSON (a JSON pointer: CountTokens' `/input/invokeModel/body`), so the
    /// guard reads and rewrites it there; `None`: the body is the content.
    pub envelope: Option<&'static str>,
    /// The body is an Anthropic Messages request (without `model` and
    /// `stream`) that Bedrock's native Messages surfaces take whole.
    pub messages: bool,
    /// The client's OpenAI request, for Bedrock's OpenAI-compatible
    /// endpoints (a model Mantle serves there), which take it as it is.
    pub openai: Option<OpenAiBody>,
}

/// An OpenAI request as an OpenAI-compatible endpoint takes it.
#[derive(Debug, Clone)]
pub struct OpenAiBody {
    /// Its path under the endpoint's base (`/v1/chat/completions`,
    /// `/v1/responses`).
    pub path: &'static str,
    /// The request (its `model` is set per candidate).
    pub body: Bytes,
}

/// Where a CountTokens body carries the InvokeModel body it counts, base64.
pub const COUNT_TOKENS_INVOKE_BODY: &str = "/input/invokeModel/body";

/// What a front door can say about a request from its head alone, so a
/// request refused before its body is read is still accounted for.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Operation name, as far as the head tells.
    pub operation: &'static str,
    /// Model asked for, when the path names it.
    pub requested: String,
    /// Whether it is a model invocation (which gets an invocation record);
    /// control-plane reads are counted in metrics only.
    pub invocation: bool,
}

impl Head {
    /// A request the head does not identify (an unknown path).
    pub fn unknown() -> Head {
        Head {
            operation: "Unknown",
            requested: String::new(),
            invocation: false,
        }
    }
}
