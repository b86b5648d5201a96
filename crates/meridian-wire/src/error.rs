//! Bedrock's error shapes: names, status codes, wire form.

use serde_json::json;

/// The Bedrock Runtime error shapes Meridian sends and understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Validation,
    AccessDenied,
    ResourceNotFound,
    ModelTimeout,
    Throttling,
    ModelNotReady,
    ModelError,
    ModelStreamError,
    ServiceQuotaExceeded,
    InternalServer,
    ServiceUnavailable,
    /// No such route; botocore maps it by name like the others.
    UnknownOperation,
    /// SigV4 signature does not match (AWS's common error, not in the Bedrock model).
    InvalidSignature,
    /// The access key is not known.
    UnrecognizedClient,
    /// The Authorization header is malformed.
    IncompleteSignature,
    /// No credentials at all.
    MissingAuthenticationToken,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::Validation,
        ErrorKind::AccessDenied,
        ErrorKind::ResourceNotFound,
        ErrorKind::ModelTimeout,
        ErrorKind::Throttling,
        ErrorKind::ModelNotReady,
        ErrorKind::ModelError,
        ErrorKind::ModelStreamError,
        ErrorKind::ServiceQuotaExceeded,
        ErrorKind::InternalServer,
        ErrorKind::ServiceUnavailable,
        ErrorKind::UnknownOperation,
        ErrorKind::InvalidSignature,
        ErrorKind::UnrecognizedClient,
        ErrorKind::IncompleteSignature,
        ErrorKind::MissingAuthenticationToken,
    ];

    /// The shape name, e.g. `ThrottlingException`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ModelTimeout => "ModelTimeoutException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::ModelNotReady => "ModelNotReadyException",
            ErrorKind::ModelError => "ModelErrorException",
            ErrorKind::ModelStreamError => "ModelStreamErrorException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::ServiceUnavailable => "ServiceUnavailableException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        }
    }

    /// The HTTP status Bedrock answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Validation
            | ErrorKind::ServiceQuotaExceeded
            | ErrorKind::IncompleteSignature => 400,
            ErrorKind::AccessDenied
            | ErrorKind::InvalidSignature
            | ErrorKind::UnrecognizedClient
            | ErrorKind::MissingAuthenticationToken => 403,
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => 404,
            ErrorKind::ModelTimeout => 408,
            ErrorKind::Throttling | ErrorKind::ModelNotReady => 429,
            ErrorKind::ModelError | ErrorKind::ModelStreamError => 424,
            ErrorKind::InternalServer => 500,
            ErrorKind::ServiceUnavailable => 503,
        }
    }

    /// The member name used as `:exception-type` inside an event stream.
    pub fn stream_member(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validationException",
            ErrorKind::Throttling => "throttlingException",
            ErrorKind::ServiceUnavailable => "serviceUnavailableException",
            ErrorKind::ModelTimeout => "modelTimeoutException",
            ErrorKind::InternalServer => "internalServerException",
            // Everything else surfaces in-stream as a model stream error.
            _ => "modelStreamErrorException",
        }
    }

    /// Parses a shape name as clients do: cut at the first `:`, keep what
    /// follows the last `#`.
    pub fn from_wire(value: &str) -> Option<ErrorKind> {
        let name = value.split(':').next().unwrap_or(value);
        let name = name.rsplit('#').next().unwrap_or(name).trim();
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Parses a stream member name (`throttlingException`).
    pub fn from_stream_member(member: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| {
            let name = k.name();
            name.len() == member.len()
                && name[..1].eq_ignore_ascii_case(&member[..1])
                && name[1..] == member[1..]
        })
    }
}

/// An error as Bedrock sends it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct BedrockError {
    /// The shape.
    pub kind: ErrorKind,
    /// The human-readable message.
    pub message: String,
    /// The caller's credentials were refused (a wrong or unknown key), as
    /// opposed to a permission it lacks: OpenAI and Anthropic say 401 for
    /// the first and 403 for the second, where Bedrock says 403 for both.
    pub unauthenticated: bool,
}

impl BedrockError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BedrockError {
            kind,
            message: message.into(),
            unauthenticated: false,
        }
    }

    /// An error of `kind` refusing the caller's credentials.
    pub fn unauthenticated(kind: ErrorKind, message: impl Into<String>) -> Self {
        BedrockError {
            unauthenticated: true,
            ..Self::new(kind, message)
        }
    }

    /// `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    /// The JSON body: `{"message": …}`.
    pub fn body(&self) -> Vec<u8> {
        let mut v = json!({"message": self.message});
        if self.kind == ErrorKind::ModelStreamError {
            v["originalStatusCode"] = json!(500);
            v["originalMessage"] = json!(self.message);
        }
        v.to_string().into_bytes()
    }

    /// The `x-amzn-ErrorType` header value, in the form Bedrock sends.
    pub fn error_type_header(&self) -> String {
        format!(
            "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            self.kind.name()
        )
    }

    /// The in-stream exception frame for this error.
    pub fn exception_frame(&self) -> bytes::Bytes {
        crate::eventstream::exception(self.kind.stream_member(), &self.body())
    }
}
