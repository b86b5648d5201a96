//! OpenAI chat completions ⇄ Bedrock Converse.
//!
//! `inbound`: clients speaking OpenAI to Meridian (requests to Converse,
//! responses and stream events back). `outbound`: Meridian speaking OpenAI to
//! an OpenAI-compatible upstream. OpenAI fields with no Converse equivalent
//! that a model may still accept (`top_k`, ...) go to
//! `additionalModelRequestFields` untouched.

mod answer;
pub mod embeddings;
mod inbound;
mod outbound;
pub mod responses;

use serde_json::{Value, json};

use crate::error::{BedrockError, ErrorKind};

pub use answer::completion_json;
pub use inbound::{StreamTranslator, Translated, finish_reason, from_converse, to_converse};
pub use outbound::{converse_to_openai, openai_to_converse_response, stop_reason};

/// An error in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    /// HTTP status.
    pub status: u16,
    /// `invalid_request_error`, `rate_limit_error`, ...
    pub kind: &'static str,
    /// Message.
    pub message: String,
    /// Offending parameter, when known.
    pub param: Option<String>,
    /// Machine code, when there is one.
    pub code: Option<&'static str>,
}

impl OpenAiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        OpenAiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// The body `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<&BedrockError> for OpenAiError {
    fn from(e: &BedrockError) -> Self {
        let (status, kind, code) = match e.kind {
            ErrorKind::Validation | ErrorKind::IncompleteSignature => {
                (400, "invalid_request_error", None)
            }
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => {
                (404, "invalid_request_error", Some("model_not_found"))
            }
            // A permission the caller lacks (a model its tenant may not
            // call, IAM upstream) — not a wrong key.
            ErrorKind::AccessDenied if !e.unauthenticated => {
                (403, "permission_denied", Some("permission_denied"))
            }
            ErrorKind::AccessDenied
            | ErrorKind::InvalidSignature
            | ErrorKind::UnrecognizedClient
            | ErrorKind::MissingAuthenticationToken => {
                (401, "authentication_error", Some("invalid_api_key"))
            }
            ErrorKind::Throttling | ErrorKind::ModelNotReady => {
                (429, "rate_limit_error", Some("rate_limit_exceeded"))
            }
            // A spent quota or budget: retrying will not help until it resets.
            ErrorKind::ServiceQuotaExceeded => {
                (429, "insufficient_quota", Some("insufficient_quota"))
            }
            ErrorKind::ModelTimeout => (408, "timeout", None),
            ErrorKind::ServiceUnavailable => (503, "server_error", None),
            ErrorKind::ModelError | ErrorKind::ModelStreamError | ErrorKind::InternalServer => {
                (500, "server_error", None)
            }
        };
        OpenAiError {
            status,
            kind,
            message: format!("{}: {}", e.kind.name(), e.message),
            param: None,
            code,
        }
    }
}
