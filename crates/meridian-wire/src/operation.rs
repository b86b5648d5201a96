//! Which operation a request is, from its method and raw (still encoded) path.

use crate::error::{BedrockError, ErrorKind};

/// Longest model identifier Bedrock accepts.
pub const MAX_MODEL_ID_LEN: usize = 2048;

/// A Bedrock Runtime or control-plane operation Meridian serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `POST /model/{id}/converse`.
    Converse { model_id: String },
    /// `POST /model/{id}/converse-stream`.
    ConverseStream { model_id: String },
    /// `POST /model/{id}/invoke`.
    InvokeModel { model_id: String },
    /// `POST /model/{id}/invoke-with-response-stream`.
    InvokeModelWithResponseStream { model_id: String },
    /// `POST /model/{id}/count-tokens`.
    CountTokens { model_id: String },
    /// `GET /inference-profiles`.
    ListInferenceProfiles,
    /// `GET /inference-profiles/{id}`.
    GetInferenceProfile { id: String },
    /// `GET /foundation-models`.
    ListFoundationModels,
    /// `GET /foundation-models/{id}`.
    GetFoundationModel { id: String },
    /// `POST /guardrail/{id}/version/{version}/apply`.
    ApplyGuardrail {
        guardrail_id: String,
        version: String,
    },
    /// `POST /model-invocation-job`.
    CreateModelInvocationJob,
    /// `GET /model-invocation-job/{id}` (an ARN or a job ID).
    GetModelInvocationJob { id: String },
    /// `GET /model-invocation-jobs`.
    ListModelInvocationJobs,
    /// `POST /model-invocation-job/{id}/stop`.
    StopModelInvocationJob { id: String },
}

impl Operation {
    /// Routes a request. The path must be the raw one: ARNs carry `%2F`,
    /// so the label is split before it is decoded.
    pub fn from_request(method: &str, raw_path: &str) -> Result<Operation, BedrockError> {
        let segments: Vec<&str> = raw_path.trim_start_matches('/').split('/').collect();
        let op = match (method, segments.as_slice()) {
            ("POST", ["model", id, action]) => {
                let model_id = decode_label(id)?;
                match *action {
                    "converse" => Operation::Converse { model_id },
                    "converse-stream" => Operation::ConverseStream { model_id },
                    "invoke" => Operation::InvokeModel { model_id },
                    "invoke-with-response-stream" => {
                        Operation::InvokeModelWithResponseStream { model_id }
                    }
                    "count-tokens" => Operation::CountTokens { model_id },
                    _ => return Err(unknown(method, raw_path)),
                }
            }
            ("POST", ["guardrail", id, "version", version, "apply"]) => Operation::ApplyGuardrail {
                guardrail_id: decode_label(id)?,
                version: decode_label(version)?,
            },
            ("GET", ["inference-profiles"]) => Operation::ListInferenceProfiles,
            ("GET", ["inference-profiles", id]) => Operation::GetInferenceProfile {
                id: decode_label(id)?,
            },
            ("POST", ["model-invocation-job"]) => Operation::CreateModelInvocationJob,
            ("GET", ["model-invocation-job", id]) => Operation::GetModelInvocationJob {
                id: decode_label(id)?,
            },
            ("GET", ["model-invocation-jobs"]) => Operation::ListModelInvocationJobs,
            ("POST", ["model-invocation-job", id, "stop"]) => Operation::StopModelInvocationJob {
                id: decode_label(id)?,
            },
            ("GET", ["foundation-models"]) => Operation::ListFoundationModels,
            ("GET", ["foundation-models", id]) => Operation::GetFoundationModel {
                id: decode_label(id)?,
            },
            _ => return Err(unknown(method, raw_path)),
        };
        Ok(op)
    }

    /// The operation name as Bedrock logs it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Converse { .. } => "Converse",
            Operation::ConverseStream { .. } => "ConverseStream",
            Operation::InvokeModel { .. } => "InvokeModel",
            Operation::InvokeModelWithResponseStream { .. } => "InvokeModelWithResponseStream",
            Operation::CountTokens { .. } => "CountTokens",
            Operation::ListInferenceProfiles => "ListInferenceProfiles",
            Operation::GetInferenceProfile { .. } => "GetInferenceProfile",
            Operation::ListFoundationModels => "ListFoundationModels",
            Operation::GetFoundationModel { .. } => "GetFoundationModel",
            Operation::ApplyGuardrail { .. } => "ApplyGuardrail",
            Operation::CreateModelInvocationJob => "CreateModelInvocationJob",
            Operation::GetModelInvocationJob { .. } => "GetModelInvocationJob",
            Operation::ListModelInvocationJobs => "ListModelInvocationJobs",
            Operation::StopModelInvocationJob { .. } => "StopModelInvocationJob",
        }
    }

    /// The model in the path, for runtime operations.
    pub fn model_id(&self) -> Option<&str> {
        match self {
            Operation::Converse { model_id }
            | Operation::ConverseStream { model_id }
            | Operation::InvokeModel { model_id }
            | Operation::InvokeModelWithResponseStream { model_id }
            | Operation::CountTokens { model_id } => Some(model_id),
            _ => None,
        }
    }

    /// Whether the response is an event stream.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Operation::ConverseStream { .. } | Operation::InvokeModelWithResponseStream { .. }
        )
    }

    /// The path suffix after `/model/{id}/`, for runtime operations.
    pub fn action(&self) -> Option<Action> {
        Some(match self {
            Operation::Converse { .. } => Action::Converse,
            Operation::ConverseStream { .. } => Action::ConverseStream,
            Operation::InvokeModel { .. } => Action::Invoke,
            Operation::InvokeModelWithResponseStream { .. } => Action::InvokeStream,
            Operation::CountTokens { .. } => Action::CountTokens,
            Operation::ApplyGuardrail { .. } => Action::ApplyGuardrail,
            _ => return None,
        })
    }
}

/// A Bedrock Runtime call Meridian makes upstream: what a canonical
/// request asks for and what its plan executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `Converse`.
    Converse,
    /// `ConverseStream`.
    ConverseStream,
    /// `InvokeModel`.
    Invoke,
    /// `InvokeModelWithResponseStream`.
    InvokeStream,
    /// `CountTokens`.
    CountTokens,
    /// `ApplyGuardrail` (the path names the guardrail, not a model).
    ApplyGuardrail,
}

impl Action {
    /// Its name: the last path segment of a model operation (`converse`,
    /// `invoke-with-response-stream`, …), `apply-guardrail` for ApplyGuardrail.
    pub fn path(self) -> &'static str {
        match self {
            Action::Converse => "converse",
            Action::ConverseStream => "converse-stream",
            Action::Invoke => "invoke",
            Action::InvokeStream => "invoke-with-response-stream",
            Action::CountTokens => "count-tokens",
            Action::ApplyGuardrail => "apply-guardrail",
        }
    }

    /// Bedrock's operation name (`Converse`, `InvokeModelWithResponseStream`, …).
    pub fn operation(self) -> &'static str {
        match self {
            Action::Converse => "Converse",
            Action::ConverseStream => "ConverseStream",
            Action::Invoke => "InvokeModel",
            Action::InvokeStream => "InvokeModelWithResponseStream",
            Action::CountTokens => "CountTokens",
            Action::ApplyGuardrail => "ApplyGuardrail",
        }
    }

    /// Whether the body is Converse's (not the model's native one).
    pub fn is_converse(self) -> bool {
        matches!(self, Action::Converse | Action::ConverseStream)
    }

    /// Whether the body is the model's native one (InvokeModel).
    pub fn is_invoke(self) -> bool {
        matches!(self, Action::Invoke | Action::InvokeStream)
    }

    /// Whether the answer is an event stream.
    pub fn streams(self) -> bool {
        matches!(self, Action::ConverseStream | Action::InvokeStream)
    }
}

fn unknown(method: &str, path: &str) -> BedrockError {
    BedrockError::new(
        ErrorKind::UnknownOperation,
        format!("no operation matches {method} {path}"),
    )
}

/// Percent-decodes one path label; tolerates literal `:`.
pub fn decode_label(raw: &str) -> Result<String, BedrockError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte {
                Some(b) => out.push(b),
                None => {
                    return Err(BedrockError::validation(format!(
                        "malformed percent-encoding in '{raw}'"
                    )));
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out)
        .map_err(|_| BedrockError::validation("model identifier is not valid UTF-8"))?;
    if s.is_empty() || s.len() > MAX_MODEL_ID_LEN {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value at 'modelId' failed to satisfy constraint: Member must have length between 1 and {MAX_MODEL_ID_LEN}"
        )));
    }
    Ok(s)
}

/// Percent-encodes a label as the SDKs do (unreserved characters kept).
pub fn encode_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_action_is_the_operation_its_path_names() {
        let all = [
            Action::Converse,
            Action::ConverseStream,
            Action::Invoke,
            Action::InvokeStream,
            Action::CountTokens,
        ];
        for a in all {
            let op = Operation::from_request("POST", &format!("/model/m/{}", a.path())).unwrap();
            assert_eq!(op.action(), Some(a));
            assert_eq!(op.name(), a.operation());
            assert_eq!(op.is_streaming(), a.streams(), "{a:?}");
            assert_eq!(a.is_converse() || a.is_invoke(), a != Action::CountTokens);
        }
        let g = Operation::from_request("POST", "/guardrail/g1/version/2/apply").unwrap();
        assert_eq!(g.action(), Some(Action::ApplyGuardrail));
        assert_eq!(g.name(), Action::ApplyGuardrail.operation());
        assert_eq!(
            Operation::from_request("GET", "/foundation-models")
                .unwrap()
                .action(),
            None
        );
    }

    #[test]
    fn routes_on_the_raw_path() {
        let op = Operation::from_request(
            "POST",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/invoke-with-response-stream",
        )
        .unwrap();
        assert_eq!(
            op,
            Operation::InvokeModelWithResponseStream {
                model_id:
                    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
                        .into()
            }
        );
        let op = Operation::from_request(
            "POST",
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse",
        )
        .unwrap();
        assert_eq!(
            op.model_id(),
            Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
        assert!(Operation::from_request("POST", "/model/x/explode").is_err());
        assert!(Operation::from_request("GET", "/model/x/converse").is_err());
        assert!(Operation::from_request("POST", "/model/%ZZ/converse").is_err());
    }

    #[test]
    fn labels_round_trip() {
        let id = "arn:aws:bedrock:us-east-1:1:inference-profile/us.a.b-v1:0";
        assert_eq!(decode_label(&encode_label(id)).unwrap(), id);
        assert_eq!(encode_label("a.b:0"), "a.b%3A0");
    }
}
