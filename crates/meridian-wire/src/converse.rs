//! Converse request checks and token accounting helpers.
//!
//! Validation is deliberately shallow: it rejects what Bedrock would reject
//! with a clear pointer, and lets unknown members through (new content blocks,
//! new inference parameters), so Meridian never lags behind the service.

use serde_json::Value;

use crate::error::BedrockError;

/// Content-block members whose shape Meridian checks; others pass through.
const KNOWN_BLOCKS: [&str; 14] = [
    "text",
    "image",
    "document",
    "video",
    "audio",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
    "toolAddition",
    "toolRemoval",
];

/// Checks a Converse or ConverseStream request body.
pub fn validate_request(body: &Value) -> Result<(), BedrockError> {
    let obj = body
        .as_object()
        .ok_or_else(|| BedrockError::validation("the request body must be a JSON object"))?;
    let messages = obj
        .get("messages")
        .ok_or_else(|| {
            BedrockError::validation("1 validation error detected: 'messages' is required")
        })?
        .as_array()
        .ok_or_else(|| BedrockError::validation("'messages' must be a list"))?;
    if messages.is_empty() {
        return Err(BedrockError::validation(
            "'messages' must contain at least one message",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(BedrockError::validation(format!(
                "messages[{i}].role must be 'user' or 'assistant', got {}",
                m.get("role")
                    .map_or("nothing".to_string(), Value::to_string)
            )));
        }
        let content = m.get("content").and_then(Value::as_array).ok_or_else(|| {
            BedrockError::validation(format!(
                "messages[{i}].content must be a list of content blocks"
            ))
        })?;
        for (j, block) in content.iter().enumerate() {
            check_block(block, i, j)?;
        }
    }
    if let Some(system) = obj.get("system")
        && !system.is_array()
    {
        return Err(BedrockError::validation(
            "'system' must be a list of system content blocks",
        ));
    }
    if let Some(cfg) = obj.get("inferenceConfig") {
        check_inference_config(cfg)?;
    }
    Ok(())
}

/// Checks block `j` of message `i` (its place is written out only for an error).
fn check_block(block: &Value, i: usize, j: usize) -> Result<(), BedrockError> {
    let at = || format!("messages[{i}].content[{j}]");
    let Some(members) = block.as_object().filter(|o| o.len() == 1) else {
        return Err(BedrockError::validation(format!(
            "{} must be an object with exactly one member, such as {{\"text\": \"…\"}}",
            at()
        )));
    };
    let Some((name, value)) = members.iter().next() else {
        return Err(BedrockError::validation(format!("{} is empty", at())));
    };
    let bad = |what: &str| Err(BedrockError::validation(format!("{}.{name} {what}", at())));
    match name.as_str() {
        "text" if !value.is_string() => bad("must be a string"),
        "image" | "document" | "video" | "audio"
            if value.get("source").is_none_or(|s| !s.is_object()) =>
        {
            bad("needs a 'source' object")
        }
        "toolUse" if value.get("toolUseId").is_none() || value.get("name").is_none() => {
            bad("needs 'toolUseId', 'name' and 'input'")
        }
        "toolResult"
            if value.get("toolUseId").is_none()
                || !value.get("content").is_some_and(Value::is_array) =>
        {
            bad("needs 'toolUseId' and a 'content' list")
        }
        n if KNOWN_BLOCKS.contains(&n) && !value.is_object() && n != "text" => {
            bad("must be an object")
        }
        _ => Ok(()),
    }
}

fn check_inference_config(cfg: &Value) -> Result<(), BedrockError> {
    if !cfg.is_object() {
        return Err(BedrockError::validation(
            "'inferenceConfig' must be an object",
        ));
    }
    if let Some(v) = cfg.get("maxTokens")
        && v.as_u64().is_none_or(|n| n < 1)
    {
        return Err(BedrockError::validation(
            "inferenceConfig.maxTokens must be an integer of at least 1",
        ));
    }
    for key in ["temperature", "topP"] {
        if let Some(v) = cfg.get(key)
            && v.as_f64().is_none_or(|x| !(0.0..=1.0).contains(&x))
        {
            return Err(BedrockError::validation(format!(
                "inferenceConfig.{key} must be a number from 0 to 1"
            )));
        }
    }
    Ok(())
}

/// `inferenceConfig.maxTokens`, if set.
pub fn max_tokens(body: &Value) -> Option<u64> {
    body.get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64)
}

/// Every piece of text in the system prompt and messages, in order.
pub fn texts(body: &Value) -> Vec<&str> {
    fn collect<'v>(blocks: Option<&'v Value>, out: &mut Vec<&'v str>) {
        for b in blocks.and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                out.push(t);
            }
        }
    }
    let mut out = Vec::new();
    collect(body.get("system"), &mut out);
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(m.get("content"), &mut out);
    }
    out
}

/// A token estimate for text: about four characters a token, at least one a
/// non-empty piece. Used for quota admission and by the simulated fleet.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        (text.chars().count() as u64).div_ceil(4)
    }
}

/// Estimated input tokens of a Converse request.
pub fn estimate_input_tokens(body: &Value) -> u64 {
    texts(body)
        .into_iter()
        .map(estimate_tokens)
        .sum::<u64>()
        .max(1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_unknown_blocks_and_rejects_wrong_shapes() {
        let ok = json!({"messages": [{"role": "user", "content": [{"text": "hi"}, {"futureBlock": {"x": 1}}]}]});
        assert!(validate_request(&ok).is_ok());
        for (body, needle) in [
            (json!({}), "'messages' is required"),
            (json!({"messages": []}), "at least one"),
            (
                json!({"messages": [{"role": "system", "content": []}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": ["hi"]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": 5}]}]}),
                "text must be a string",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
                "exactly one member",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"maxTokens": 0}}),
                "maxTokens",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"temperature": 3}}),
                "temperature",
            ),
        ] {
            let e = validate_request(&body).unwrap_err();
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }

    #[test]
    fn estimates_tokens() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        let body = json!({"system": [{"text": "abcd"}], "messages": [{"role": "user", "content": [{"text": "abcdefgh"}]}]});
        assert_eq!(estimate_input_tokens(&body), 3);
    }
}
