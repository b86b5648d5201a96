//! Extended thinking: when a request enables it, the reply opens with a
//! reasoning block signed by the fleet. A later turn that sends a reasoning
//! block back must carry it unmodified — a changed text or a lost signature
//! is refused, as Bedrock refuses it — so a gateway that mangles thinking
//! fails its round-trip tests. Signatures do not depend on the region, so a
//! conversation can fail over between regions.

use base64::Engine;
use meridian_wire::BedrockError;
use serde_json::Value;

use crate::generate::{Block, Reply};
use crate::rng::{Rng, hash};

/// The thinking budget a Converse-shaped request asks for, if any:
/// `additionalModelRequestFields.thinking` `{"type":"enabled","budget_tokens":N}`
/// or `{"type":"adaptive"}`.
pub fn requested(conv: &Value) -> Option<u64> {
    let t = &conv["additionalModelRequestFields"]["thinking"];
    match t["type"].as_str() {
        Some("enabled") => Some(t["budget_tokens"].as_u64().unwrap_or(1024)),
        Some("adaptive") => Some(2048),
        _ => None,
    }
}

/// The fleet's signature of a reasoning text.
pub fn sign(text: &str) -> String {
    let a = hash(format!("meridian-sim-thinking\0{text}").as_bytes());
    let b = hash(format!("{text}\0meridian-sim-thinking").as_bytes());
    let mut bytes = a.to_be_bytes().to_vec();
    bytes.extend_from_slice(&b.to_be_bytes());
    format!(
        "EqSim{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Refuses thinking for a model without it, and any reasoning block sent
/// back with a signature that does not match its text.
pub fn check(conv: &Value, model_reasons: bool, model: &str) -> Result<(), BedrockError> {
    if requested(conv).is_some() && !model_reasons {
        return Err(BedrockError::validation(format!(
            "The model returned the following errors: thinking: {model} does not support extended thinking"
        )));
    }
    let messages = conv["messages"].as_array().map_or(&[][..], Vec::as_slice);
    for (i, m) in messages.iter().enumerate() {
        let blocks = m["content"].as_array().map_or(&[][..], Vec::as_slice);
        for (j, b) in blocks.iter().enumerate() {
            let Some(r) = b.get("reasoningContent") else {
                continue;
            };
            if r.get("redactedContent").is_some() {
                continue;
            }
            let text = r["reasoningText"]["text"].as_str().unwrap_or_default();
            let signature = r["reasoningText"]["signature"].as_str();
            if signature != Some(sign(text).as_str()) {
                return Err(BedrockError::validation(format!(
                    "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )));
            }
        }
    }
    Ok(())
}

/// Opens `reply` with a signed reasoning block when `conv` asks for
/// thinking; its words count as output tokens.
pub fn think(conv: &Value, reply: &mut Reply, region: &str, rng: &mut Rng) {
    let Some(budget) = requested(conv) else {
        return;
    };
    let n = (6 + rng.next_u64() % 10).min(budget.max(1));
    let mut words = vec![
        "Thinking".to_string(),
        "it".into(),
        "over".into(),
        "in".into(),
        format!("{region}:"),
    ];
    while (words.len() as u64) < n + 5 {
        words.push(format!("step{}", words.len() - 4));
    }
    let text = words.join(" ");
    reply.output_tokens += words.len() as u64;
    reply.blocks.insert(
        0,
        Block::Reasoning {
            signature: sign(&text),
            text,
        },
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_replayed_block_must_be_unmodified() {
        let text = "Thinking it over in eu-west-1: step1";
        let turn = |t: &str, sig: &str| {
            json!({"messages": [
                {"role": "user", "content": [{"text": "q"}]},
                {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": t, "signature": sig}}}, {"text": "a"}]},
                {"role": "user", "content": [{"text": "again"}]}]})
        };
        assert!(check(&turn(text, &sign(text)), true, "m").is_ok());
        let changed = check(&turn("Thinking it over", &sign(text)), true, "m").unwrap_err();
        assert!(
            changed.message.contains("Invalid `signature`"),
            "{}",
            changed.message
        );
        assert!(check(&turn(text, ""), true, "m").is_err());
        let asks = json!({"messages": [], "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}});
        assert!(
            check(&asks, false, "nova").is_err(),
            "a model without thinking refuses it"
        );
    }
}
