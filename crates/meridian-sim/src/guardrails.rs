//! Bedrock Guardrails, simulated: regional resources (an ID and version
//! exist in one region only) with denied words and PII types. A request
//! naming a guardrail the called region does not have is refused as Bedrock
//! refuses it. An intervention answers what Bedrock answers: the configured
//! blocked message, `stopReason: guardrail_intervened`, and the assessment
//! under `trace.guardrail` when the request asked for a trace.
//!
//! PII detection here is deliberately simple (words with `@` and a dot are
//! e-mail addresses; runs of 13–19 digits are card numbers): the fleet is a
//! stand-in for Bedrock's own detectors, not a copy of Meridian's.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::generate::{Block, Reply};

/// One guardrail in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimGuardrail {
    /// Guardrail ID.
    pub id: String,
    /// Version (`DRAFT` or a number).
    pub version: String,
    /// The only region that has it.
    pub region: String,
    /// Words blocked in input and output (case-insensitive).
    #[serde(default)]
    pub denied_words: Vec<String>,
    /// PII types (`EMAIL`, `CREDIT_DEBIT_CARD_NUMBER`) and what to do:
    /// `BLOCK` or `ANONYMIZE`.
    #[serde(default)]
    pub pii: std::collections::BTreeMap<String, String>,
    /// Answer when the input is blocked.
    #[serde(default = "blocked_default")]
    pub blocked_input_message: String,
    /// Answer when the output is blocked.
    #[serde(default = "blocked_default")]
    pub blocked_output_message: String,
}

fn blocked_default() -> String {
    "Sorry, the model cannot answer this question.".into()
}

/// The message Bedrock gives for a guardrail that does not exist where it
/// was asked for.
pub const NOT_FOUND: &str =
    "The guardrail identifier or version provided in the request does not exist.";

/// What a guardrail found in some text.
#[derive(Debug, Default)]
struct Assessment {
    words: Vec<Value>,
    pii: Vec<Value>,
    blocked: bool,
    /// The text with anonymized entities replaced (`{EMAIL}`).
    text: String,
}

fn pii_type(word: &str) -> Option<&'static str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if w.contains('@') && w.rsplit('@').next().is_some_and(|d| d.contains('.')) {
        return Some("EMAIL");
    }
    let digits = w.bytes().filter(u8::is_ascii_digit).count();
    if (13..=19).contains(&digits) && w.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Some("CREDIT_DEBIT_CARD_NUMBER");
    }
    None
}

impl SimGuardrail {
    fn assess(&self, text: &str) -> Assessment {
        let mut a = Assessment::default();
        let mut out: Vec<String> = Vec::new();
        for word in text.split(' ') {
            let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
            if !bare.is_empty()
                && self
                    .denied_words
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(bare))
            {
                a.words.push(json!({"match": bare, "action": "BLOCKED"}));
                a.blocked = true;
            }
            match pii_type(word).and_then(|t| Some((t, self.pii.get(t)?))) {
                Some((t, action)) => {
                    let m = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                    let done = if action == "BLOCK" {
                        a.blocked = true;
                        "BLOCKED"
                    } else {
                        "ANONYMIZED"
                    };
                    a.pii
                        .push(json!({"match": m, "type": t, "action": done, "detected": true}));
                    out.push(word.replace(m, &format!("{{{t}}}")));
                }
                None => out.push(word.to_string()),
            }
        }
        a.text = out.join(" ");
        a
    }

    fn policies(a: &Assessment) -> Value {
        let mut v = json!({});
        if !a.words.is_empty() {
            v["wordPolicy"] = json!({"customWords": a.words});
        }
        if !a.pii.is_empty() {
            v["sensitiveInformationPolicy"] = json!({"piiEntities": a.pii, "regexes": []});
        }
        v
    }
}

/// The guardrail a request names, if any: Converse's `guardrailConfig`, or
/// InvokeModel's `X-Amzn-Bedrock-GuardrailIdentifier` / `-GuardrailVersion`.
/// Returns (identifier, version, trace asked for).
pub fn requested(
    converse: bool,
    body: &Value,
    headers: &http::HeaderMap,
) -> Option<(String, String, bool)> {
    if converse {
        let g = body.get("guardrailConfig")?;
        let trace = matches!(g["trace"].as_str(), Some("enabled" | "enabled_full"));
        return Some((
            g["guardrailIdentifier"].as_str()?.to_string(),
            g["guardrailVersion"]
                .as_str()
                .unwrap_or("DRAFT")
                .to_string(),
            trace,
        ));
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let id = h("x-amzn-bedrock-guardrailidentifier")?;
    let version = h("x-amzn-bedrock-guardrailversion").unwrap_or_else(|| "DRAFT".into());
    let trace = h("x-amzn-bedrock-trace").is_some_and(|t| t.eq_ignore_ascii_case("ENABLED"));
    Some((id, version, trace))
}

/// ApplyGuardrail: `{"source": "INPUT"|"OUTPUT", "content": [{"text":
/// {"text": …}}]}` assessed by `g`.
pub fn apply(g: &SimGuardrail, body: &Value) -> Result<Value, meridian_wire::BedrockError> {
    let source = body["source"].as_str().unwrap_or_default();
    if !matches!(source, "INPUT" | "OUTPUT") {
        return Err(meridian_wire::BedrockError::validation(
            "1 validation error detected: Value at 'source' failed to satisfy constraint: \
             Member must satisfy enum value set: [INPUT, OUTPUT]",
        ));
    }
    let mut found = Assessment::default();
    let mut texts = Vec::new();
    let mut chars = 0;
    for c in body["content"].as_array().into_iter().flatten() {
        if let Some(t) = c["text"]["text"].as_str() {
            chars += t.chars().count();
            let a = g.assess(t);
            texts.push(a.text);
            found.words.extend(a.words);
            found.pii.extend(a.pii);
            found.blocked |= a.blocked;
        }
    }
    let intervened = found.blocked || !found.pii.is_empty();
    let outputs: Vec<Value> = if found.blocked {
        let m = if source == "INPUT" {
            &g.blocked_input_message
        } else {
            &g.blocked_output_message
        };
        vec![json!({"text": m})]
    } else if intervened {
        texts.into_iter().map(|t| json!({"text": t})).collect()
    } else {
        Vec::new()
    };
    let units = chars.div_ceil(1000).max(1);
    Ok(json!({
        "action": if intervened { "GUARDRAIL_INTERVENED" } else { "NONE" },
        "actionReason": if intervened { "Guardrail blocked." } else { "No action." },
        "outputs": outputs,
        "assessments": if intervened { vec![SimGuardrail::policies(&found)] } else { Vec::new() },
        "usage": {
            "topicPolicyUnits": 0,
            "contentPolicyUnits": 0,
            "wordPolicyUnits": if g.denied_words.is_empty() { 0 } else { units },
            "sensitiveInformationPolicyUnits": if g.pii.is_empty() { 0 } else { units },
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0
        },
        "guardrailCoverage": {"textCharacters": {"guarded": chars, "total": chars}}
    }))
}

/// Every text of a Converse-shaped request, in place, through `f`.
fn texts_mut(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("text", Value::String(s)) => f(s),
                    (_, x) => texts_mut(x, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| texts_mut(x, f)),
        _ => {}
    }
}

/// Runs a request under guardrail `g`: the input is assessed (blocked, or
/// anonymized before the model sees it), the reply `generate` makes is
/// assessed too.
pub fn run(
    g: &SimGuardrail,
    trace: bool,
    conv: &Value,
    generate: impl FnOnce(&Value) -> Reply,
) -> Reply {
    let mut input = conv.clone();
    let mut found = Assessment::default();
    for part in ["system", "messages"] {
        texts_mut(&mut input[part], &mut |s| {
            let a = g.assess(s);
            *s = a.text.clone();
            found.words.extend(a.words);
            found.pii.extend(a.pii);
            found.blocked |= a.blocked;
        });
    }
    let key = g.id.clone();
    if found.blocked {
        let mut reply = generate(&input);
        reply.blocks = vec![Block::Text(g.blocked_input_message.clone())];
        reply.stop_reason = "guardrail_intervened";
        reply.output_tokens = 0;
        if trace {
            reply.trace = Some(json!({"guardrail": {
                "inputAssessment": {key: SimGuardrail::policies(&found)},
                "actionReason": "Guardrail blocked."
            }}));
        }
        return reply;
    }
    let mut reply = generate(&input);
    let mut out = Assessment::default();
    for b in &mut reply.blocks {
        if let Block::Text(t) = b {
            let a = g.assess(t);
            *t = a.text;
            out.words.extend(a.words);
            out.pii.extend(a.pii);
            out.blocked |= a.blocked;
        }
    }
    if out.blocked {
        reply.blocks = vec![Block::Text(g.blocked_output_message.clone())];
        reply.stop_reason = "guardrail_intervened";
    }
    if trace {
        let mut t = json!({"guardrail": {}});
        if !found.pii.is_empty() || !found.words.is_empty() {
            t["guardrail"]["inputAssessment"] = json!({&key: SimGuardrail::policies(&found)});
        }
        if !out.pii.is_empty() || !out.words.is_empty() {
            t["guardrail"]["outputAssessments"] = json!({&key: [SimGuardrail::policies(&out)]});
        }
        reply.trace = Some(t);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> SimGuardrail {
        serde_json::from_value(json!({
            "id": "gr1", "version": "1", "region": "eu-west-1",
            "denied_words": ["bluebird"],
            "pii": {"EMAIL": "ANONYMIZE", "CREDIT_DEBIT_CARD_NUMBER": "BLOCK"},
            "blocked_input_message": "Blocked by gr1."
        }))
        .unwrap()
    }

    fn echo(conv: &Value) -> Reply {
        let text = conv["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        Reply {
            blocks: vec![Block::Text(text)],
            stop_reason: "end_turn",
            input_tokens: 3,
            output_tokens: 3,
            cache: Default::default(),
            service_tier: None,
            trace: None,
        }
    }

    fn conv(text: &str) -> Value {
        json!({"messages": [{"role": "user", "content": [{"text": text}]}]})
    }

    #[test]
    fn denied_words_and_blocked_pii_intervene_with_the_configured_message() {
        for text in ["the Bluebird plan", "card 4111111111111111"] {
            let r = run(&g(), true, &conv(text), echo);
            assert_eq!(r.stop_reason, "guardrail_intervened", "{text}");
            assert_eq!(r.blocks, vec![Block::Text("Blocked by gr1.".into())]);
            assert!(r.trace.unwrap()["guardrail"]["inputAssessment"]["gr1"].is_object());
        }
    }

    #[test]
    fn anonymized_pii_never_reaches_the_model() {
        let r = run(&g(), false, &conv("mail jane@example.com now"), echo);
        assert_eq!(r.stop_reason, "end_turn");
        assert_eq!(r.blocks, vec![Block::Text("mail {EMAIL} now".into())]);
        assert!(r.trace.is_none());
    }
}
