//! Building responses in Bedrock's shape.

use axum::body::Body;
use axum::response::Response;
use meridian_wire::BedrockError;

/// A fresh request ID (UUID v4, as Bedrock's).
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An error exactly as Bedrock sends it: status, `x-amzn-ErrorType`,
/// `x-amzn-RequestId` and `{"message": …}`.
pub fn error(request_id: &str, e: &BedrockError, attempts: usize) -> Response {
    let mut b = Response::builder()
        .status(e.kind.status())
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id)
        .header("x-amzn-errortype", e.error_type_header());
    if attempts > 0 {
        b = b.header(crate::ATTEMPTS_HEADER, attempts.to_string());
    }
    b.body(Body::from(e.body())).unwrap_or_default()
}

/// A JSON 200.
pub fn json(request_id: &str, value: &serde_json::Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id)
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}
