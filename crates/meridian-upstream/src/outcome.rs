//! What happened to an upstream attempt, in the terms the router acts on.

use std::time::Duration;

use meridian_wire::ErrorKind;

/// The classification of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, and for streams the stream ended cleanly.
    Success,
    /// ThrottlingException (or 429 without a known shape), with any retry-after.
    Throttled { retry_after: Option<Duration> },
    /// ServiceUnavailable, InternalServer, or another 5xx.
    Unavailable { status: u16 },
    /// ModelNotReadyException.
    ModelNotReady,
    /// No response head within the first-byte timeout.
    TimeoutBeforeFirstByte,
    /// The stream stalled or broke after the first byte.
    TimeoutMidStream,
    /// Connection refused: the endpoint is down.
    ConnectionRefused,
    /// Connection reset, or a broken stream that was not a timeout.
    ConnectionReset,
    /// ValidationException and other caller errors.
    Validation,
    /// AccessDenied or a signature/credential problem.
    AccessDenied,
    /// ResourceNotFound.
    NotFound,
    /// ModelTimeoutException (the model itself timed out; not retried).
    ModelTimeout,
    /// ModelErrorException / ModelStreamErrorException.
    ModelError,
    /// ServiceQuotaExceededException.
    QuotaExceeded,
}

/// Coarse buckets, for metrics and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    /// It worked.
    Success,
    /// Worth another attempt, preferably elsewhere.
    Retryable,
    /// The caller's fault or a permanent condition: never retried.
    Fatal,
}

impl Outcome {
    /// Classifies an error answer from its status, its error shape and its
    /// `x-amz-retry-after` (milliseconds) / `retry-after` (seconds) headers.
    pub fn from_error(
        status: u16,
        kind: Option<ErrorKind>,
        retry_after: Option<Duration>,
    ) -> Outcome {
        match kind {
            Some(ErrorKind::Throttling) => Outcome::Throttled { retry_after },
            Some(ErrorKind::ModelNotReady) => Outcome::ModelNotReady,
            Some(ErrorKind::ServiceUnavailable | ErrorKind::InternalServer) => {
                Outcome::Unavailable { status }
            }
            Some(
                ErrorKind::Validation
                | ErrorKind::UnknownOperation
                | ErrorKind::IncompleteSignature,
            ) => Outcome::Validation,
            Some(
                ErrorKind::AccessDenied
                | ErrorKind::InvalidSignature
                | ErrorKind::UnrecognizedClient
                | ErrorKind::MissingAuthenticationToken,
            ) => Outcome::AccessDenied,
            Some(ErrorKind::ResourceNotFound) => Outcome::NotFound,
            Some(ErrorKind::ModelTimeout) => Outcome::ModelTimeout,
            Some(ErrorKind::ModelError | ErrorKind::ModelStreamError) => Outcome::ModelError,
            Some(ErrorKind::ServiceQuotaExceeded) => Outcome::QuotaExceeded,
            None => match status {
                429 => Outcome::Throttled { retry_after },
                500..=599 => Outcome::Unavailable { status },
                401 | 403 => Outcome::AccessDenied,
                404 => Outcome::NotFound,
                _ => Outcome::Validation,
            },
        }
    }

    /// Retryable or not.
    pub fn class(&self) -> OutcomeClass {
        match self {
            Outcome::Success => OutcomeClass::Success,
            Outcome::Throttled { .. }
            | Outcome::Unavailable { .. }
            | Outcome::ModelNotReady
            | Outcome::TimeoutBeforeFirstByte
            | Outcome::TimeoutMidStream
            | Outcome::ConnectionRefused
            | Outcome::ConnectionReset => OutcomeClass::Retryable,
            Outcome::Validation
            | Outcome::AccessDenied
            | Outcome::NotFound
            | Outcome::ModelTimeout
            | Outcome::ModelError
            | Outcome::QuotaExceeded => OutcomeClass::Fatal,
        }
    }

    /// A stable label for metrics (`reason`).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Unavailable { .. } => "unavailable",
            Outcome::ModelNotReady => "model_not_ready",
            Outcome::TimeoutBeforeFirstByte => "timeout_first_byte",
            Outcome::TimeoutMidStream => "timeout_mid_stream",
            Outcome::ConnectionRefused => "connection_refused",
            Outcome::ConnectionReset => "connection_reset",
            Outcome::Validation => "validation",
            Outcome::AccessDenied => "access_denied",
            Outcome::NotFound => "not_found",
            Outcome::ModelTimeout => "model_timeout",
            Outcome::ModelError => "model_error",
            Outcome::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// Reads a retry hint: `x-amz-retry-after` in milliseconds, else `retry-after` in seconds.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    get("x-amz-retry-after")
        .map(Duration::from_millis)
        .or_else(|| get("retry-after").map(Duration::from_secs))
}
