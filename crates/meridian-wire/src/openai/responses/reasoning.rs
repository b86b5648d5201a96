//! Reasoning items carry the model's signed reasoning back to it. Converse
//! needs a reasoning block returned exactly as it came (its text and its
//! signature, or its redacted bytes), so a reasoning item's
//! `encrypted_content` holds that block — opaque to the client, as OpenAI's
//! is — and its `summary` shows the text. Signatures do not depend on the
//! region, so a conversation continues after a failover.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Marks an `encrypted_content` this gateway wrote.
const PREFIX: &str = "meridian.r1.";

/// A Converse `reasoningContent` block as `encrypted_content`.
pub fn seal(block: &Value) -> String {
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(block.to_string()))
}

/// The Converse block inside an `encrypted_content`: `Ok(None)` for one
/// this gateway did not write (another service's reasoning, of no use to a
/// Bedrock model), `Err` for one it wrote that was changed since.
pub fn open(sealed: &str) -> Result<Option<Value>, Damaged> {
    let Some(body) = sealed.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| Damaged)?;
    let inner: Value = serde_json::from_slice(&raw).map_err(|_| Damaged)?;
    let signed = inner["reasoningText"]["signature"].is_string();
    let redacted = inner["redactedContent"].is_string();
    if signed || redacted {
        Ok(Some(json!({"reasoningContent": inner})))
    } else {
        Err(Damaged)
    }
}

/// An `encrypted_content` this gateway wrote that does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blocks_open_unchanged_and_foreign_content_does_not() {
        let block = json!({"reasoningText": {"text": "think", "signature": "sig"}});
        let sealed = seal(&block);
        assert_eq!(open(&sealed), Ok(Some(json!({"reasoningContent": block}))));
        let redacted = json!({"redactedContent": "AAEC"});
        assert_eq!(
            open(&seal(&redacted)),
            Ok(Some(json!({"reasoningContent": redacted})))
        );
        assert_eq!(open("gAAAAABo-openai-ciphertext"), Ok(None));
        assert_eq!(
            open(&seal(&json!({"reasoningText": {"text": "unsigned"}}))),
            Err(Damaged)
        );
        assert_eq!(
            open(&format!("{}AAAA", &sealed[..sealed.len() - 6])),
            Err(Damaged)
        );
    }
}
