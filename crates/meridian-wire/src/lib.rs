//! Bedrock Runtime and OpenAI wire formats: eventstream framing, error shapes,
//! operation routing from raw paths, Converse validation and translation.
//!
//! Pure: no I/O, no routing. Request and response bodies stay
//! `serde_json::Value` wherever Meridian does not need to look inside, so
//! fields it does not know pass through untouched.

pub mod civil;
pub mod control;
pub mod converse;
pub mod error;
pub mod event;
pub mod eventstream;
pub mod messages;
pub mod openai;
pub mod operation;
pub mod sigv4;
pub mod sse_decode;

pub use error::{BedrockError, ErrorKind};
pub use operation::{Action, Operation};

/// A JSON value's compact text as bytes. Serialized straight into a buffer:
/// `Value::to_string` goes through the formatting machinery and costs more.
pub fn json_bytes(v: &serde_json::Value) -> bytes::Bytes {
    // A `Value`'s map keys are strings, so it always serializes.
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_bytes_is_the_compact_text() {
        let v = serde_json::json!({"a": [1, "x\"y", null], "b": {"c": 1.5}});
        assert_eq!(super::json_bytes(&v), v.to_string());
    }
}
