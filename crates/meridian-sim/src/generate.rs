//! Deterministic replies: text, and a tool call when one is asked for, with
//! exact token counts. One output word is one output token.
//!
//! The model calls a tool only when asked: `toolChoice` names one or
//! requires one (`any`), or the last user text names an offered tool. An
//! agent that offers tools on every turn (Claude Code offers a dozen,
//! sub-agents among them) gets text unless it asks, so its turns end.

use meridian_wire::converse::{estimate_input_tokens, estimate_tokens};
use serde_json::{Map, Value, json};

use crate::prompt_cache::CacheUse;
use crate::rng::Rng;

const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "region", "latency", "quota",
    "profile", "model", "stream",
];

/// One block of a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text(String),
    /// A tool call.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Extended thinking, signed (see `thinking`).
    Reasoning { text: String, signature: String },
}

/// A generated reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    /// Input tokens not read from or written to the prompt cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the request did with the region's prompt cache.
    pub cache: CacheUse,
    /// The service tier that served it, when the request named one.
    pub service_tier: Option<&'static str>,
    /// Converse's `trace` (a guardrail's assessment), when asked for.
    pub trace: Option<Value>,
}

/// Generates the reply to a Converse-shaped request processed in `region`.
pub fn reply(body: &Value, region: &str, max_tokens: u64, rng: &mut Rng) -> Reply {
    let input_tokens = estimate_input_tokens(body);
    let last = body["messages"].as_array().and_then(|m| m.last());
    let last_content = last
        .and_then(|m| m["content"].as_array())
        .cloned()
        .unwrap_or_default();
    let tool_result = last_content.iter().find_map(|b| b.get("toolResult"));
    let tools = body["toolConfig"]["tools"]
        .as_array()
        .filter(|t| !t.is_empty());

    let asked_in = user_words(body);
    // After a tool's result, only a tool the user named that this turn has
    // not called yet (an agent's plan of several steps, as a hand-off then
    // the next agent's tool); otherwise the turn ends in text.
    let pick = tools.and_then(|tools| match tool_result {
        None => pick_tool(tools, &body["toolConfig"]["toolChoice"], &asked_in),
        Some(_) => next_named(tools, &asked_in, &called_this_turn(body)),
    });
    if let Some(spec) = pick {
        let name = spec["name"].as_str().unwrap_or("tool").to_string();
        let mut input = sample_input(&spec["inputSchema"]["json"]);
        quote_into(&mut input, &spec["inputSchema"]["json"], &asked_in);
        let preface = format!("Calling {name}.");
        let output_tokens = 2 + estimate_tokens(&input.to_string());
        return Reply {
            blocks: vec![
                Block::Text(preface),
                Block::ToolUse {
                    id: tool_use_id(rng),
                    name,
                    input,
                },
            ],
            stop_reason: "tool_use",
            input_tokens,
            output_tokens,
            cache: CacheUse::default(),
            service_tier: None,
            trace: None,
        };
    }

    // Structured output: a JSON value of the requested schema, as text.
    if let Some(schema) = structured_schema(body) {
        let text = sample_value(&schema).to_string();
        let output_tokens = estimate_tokens(&text).max(1);
        return Reply {
            blocks: vec![Block::Text(text)],
            stop_reason: "end_turn",
            input_tokens,
            output_tokens,
            cache: CacheUse::default(),
            service_tier: None,
            trace: None,
        };
    }
    let mut words: Vec<String> = vec![
        "Simulated".into(),
        "reply".into(),
        "from".into(),
        format!("{region}."),
    ];
    let echo_source = match tool_result {
        Some(tr) => {
            words.push("Tool".into());
            words.push("result:".into());
            tr["content"]
                .as_array()
                .and_then(|c| c.first())
                .map(|c| match c.get("text") {
                    Some(t) => t.as_str().unwrap_or_default().to_string(),
                    None => c.get("json").map(Value::to_string).unwrap_or_default(),
                })
        }
        None => {
            words.push("You".into());
            words.push("said:".into());
            Some(asked_in)
        }
    };
    words.extend(
        echo_source
            .unwrap_or_default()
            .split_whitespace()
            .take(8)
            .flat_map(said),
    );
    let target = words.len() + 8 + (rng.next_u64() % 16) as usize;
    while words.len() < target {
        words.push(WORDS[(rng.next_u64() % WORDS.len() as u64) as usize].to_string());
    }
    let (stop_reason, n) = if (words.len() as u64) > max_tokens {
        ("max_tokens", max_tokens as usize)
    } else {
        ("end_turn", words.len())
    };
    words.truncate(n);
    Reply {
        blocks: vec![Block::Text(words.join(" "))],
        stop_reason,
        input_tokens,
        output_tokens: n as u64,
        cache: CacheUse::default(),
        service_tier: None,
        trace: None,
    }
}

/// A word of the prompt as the reply repeats it. `b64:TEXT` is repeated
/// decoded, so a test can have the model say what its prompt does not
/// contain (a card number that no input guard saw).
fn said(word: &str) -> Vec<String> {
    use base64::Engine;
    word.strip_prefix("b64:")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map_or_else(
            || vec![word.to_string()],
            |t| t.split_whitespace().map(str::to_string).collect(),
        )
}

/// What the user last said: the text of the last `user` message with text
/// (not a turn of tool results only; an agent may put other roles after it,
/// as Claude Code's per-turn `system` messages), without `<system-reminder>` blocks an agent adds to the turn.
fn user_words(body: &Value) -> String {
    let Some(content) = body["messages"]
        .as_array()
        .and_then(|m| {
            m.iter().rev().find(|m| {
                m["role"] == "user"
                    && m["content"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|b| b.get("text").is_some()))
            })
        })
        .and_then(|m| m["content"].as_array())
    else {
        return String::new();
    };
    let mut out = String::new();
    for text in content.iter().filter_map(|b| b["text"].as_str()) {
        let mut rest = text;
        while let Some(start) = rest.find("<system-reminder>") {
            out.push_str(&rest[..start]);
            rest = rest[start..]
                .find("</system-reminder>")
                .map_or("", |end| &rest[start + end + "</system-reminder>".len()..]);
        }
        out.push_str(rest);
        out.push(' ');
    }
    out
}

/// The tool the request asks for: the one `choice` names; with `any`, the
/// one `text` names or else the first; otherwise only one `text` names (a
/// whole word of it, as `get_weather` in "use get_weather for Paris").
fn pick_tool<'t>(tools: &'t [Value], choice: &Value, text: &str) -> Option<&'t Value> {
    let mut specs = tools.iter().filter_map(|t| t.get("toolSpec"));
    if let Some(name) = choice["tool"]["name"].as_str() {
        return specs.find(|s| s["name"] == name);
    }
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .collect();
    let named = specs
        .clone()
        .find(|s| s["name"].as_str().is_some_and(|n| words.contains(&n)));
    match named {
        Some(spec) => Some(spec),
        None if choice.get("any").is_some() => specs.next(),
        None => None,
    }
}

/// The first tool `text` names (a whole word of it) that is not in `called`.
fn next_named<'t>(tools: &'t [Value], text: &str, called: &[&str]) -> Option<&'t Value> {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .collect();
    tools.iter().filter_map(|t| t.get("toolSpec")).find(|s| {
        s["name"]
            .as_str()
            .is_some_and(|n| words.contains(&n) && !called.contains(&n))
    })
}

/// Tools called since the last user message with text (this turn).
fn called_this_turn(body: &Value) -> Vec<&str> {
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    let start = messages
        .iter()
        .rposition(|m| {
            m["role"] == "user"
                && m["content"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|b| b.get("text").is_some()))
        })
        .unwrap_or(0);
    messages[start..]
        .iter()
        .filter(|m| m["role"] == "assistant")
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter_map(|b| b["toolUse"]["name"].as_str())
        .collect()
}

/// The JSON schema of a Converse `outputConfig.textFormat`, if the request
/// has one (Bedrock sends the schema as a JSON string).
pub fn structured_schema(body: &Value) -> Option<Value> {
    let s = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"].as_str()?;
    serde_json::from_str(s).ok()
}

/// A plausible value of a JSON schema.
fn sample_value(schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("object") | None => sample_input(schema),
        Some("array") => json!([sample_value(&schema["items"])]),
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        _ => schema["enum"]
            .as_array()
            .and_then(|e| e.first())
            .cloned()
            .unwrap_or_else(|| json!("sim")),
    }
}

/// The user's first `quoted` span (between backticks) as the value of the
/// input's first required string property, so "use Bash to run `echo hi`"
/// gets `{"command": "echo hi"}` and an agent's tool does real work.
fn quote_into(input: &mut Value, schema: &Value, text: &str) {
    let Some(quoted) = text.split('`').nth(1).filter(|q| !q.is_empty()) else {
        return;
    };
    let first_string = schema["required"].as_array().and_then(|r| {
        r.iter()
            .filter_map(Value::as_str)
            .find(|name| schema["properties"][*name]["type"] == "string")
    });
    if let Some(name) = first_string {
        input[name] = json!(quoted);
    }
}

/// A plausible input for a JSON schema: required properties with typed values.
fn sample_input(schema: &Value) -> Value {
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = schema["required"].as_array().map_or_else(
        || props.keys().map(String::as_str).collect(),
        |r| r.iter().filter_map(Value::as_str).collect(),
    );
    let mut out = Map::new();
    for name in required {
        let p = &props.get(name).cloned().unwrap_or(Value::Null);
        let v = match (
            p["enum"].as_array().and_then(|e| e.first()),
            p["type"].as_str(),
        ) {
            (Some(first), _) => first.clone(),
            (None, Some("integer")) => json!(1),
            (None, Some("number")) => json!(1.5),
            (None, Some("boolean")) => json!(true),
            (None, Some("array")) => json!([]),
            (None, Some("object")) => sample_input(p),
            _ => json!(format!("sim-{name}")),
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}

fn tool_use_id(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let s: String = (0..22)
        .map(|_| ALNUM[(rng.next_u64() % ALNUM.len() as u64) as usize] as char)
        .collect();
    format!("tooluse_{s}")
}

/// A text split into one streamed delta per word (one word, one token);
/// the deltas concatenate back to the text.
///
/// A word with more than eight digits (a card or account number) comes in
/// pieces of four characters, as a model's tokenizer splits numbers.
pub fn word_deltas(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = text.split(' ').peekable();
    let mut pieces: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    std::iter::from_fn(move || {
        if let Some(p) = pieces.pop_front() {
            return Some(p);
        }
        let w = words.next()?;
        let w = if words.peek().is_some() {
            format!("{w} ")
        } else {
            w.to_string()
        };
        if w.bytes().filter(u8::is_ascii_digit).count() <= 8 {
            return Some(w);
        }
        let chars: Vec<char> = w.chars().collect();
        pieces.extend(chars.chunks(4).map(|c| c.iter().collect::<String>()));
        pieces.pop_front()
    })
}

/// The Converse response body.
pub fn converse_response(r: &Reply, latency_ms: u64) -> Value {
    let content: Vec<Value> = r
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => json!({"text": t}),
            Block::ToolUse { id, name, input } => {
                json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
            }
            Block::Reasoning { text, signature } => {
                json!({"reasoningContent": {"reasoningText": {"text": text, "signature": signature}}})
            }
        })
        .collect();
    let mut body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": r.stop_reason,
        "usage": usage(r),
        "metrics": {"latencyMs": latency_ms},
    });
    if let Some(t) = r.service_tier {
        body["serviceTier"] = json!({"type": t});
    }
    if let Some(t) = &r.trace {
        body["trace"] = t.clone();
    }
    body
}

fn usage(r: &Reply) -> Value {
    let mut u = json!({"inputTokens": r.input_tokens, "outputTokens": r.output_tokens, "totalTokens": r.input_tokens + r.output_tokens});
    let c = r.cache;
    if c.read > 0 || c.write > 0 {
        u["cacheReadInputTokens"] = json!(c.read);
        u["cacheWriteInputTokens"] = json!(c.write);
        let ttl = if c.one_hour { "1h" } else { "5m" };
        u["cacheDetails"] = if c.write > 0 {
            json!([{"ttl": ttl, "inputTokens": c.write}])
        } else {
            json!([])
        };
    }
    u
}

/// ConverseStream events in Bedrock's order, with the number of output
/// tokens each carries (for pacing).
pub fn converse_events(r: &Reply, latency_ms: u64) -> Vec<(&'static str, Value, u64)> {
    let mut ev = vec![("messageStart", json!({"role": "assistant"}), 0)];
    for (i, b) in r.blocks.iter().enumerate() {
        match b {
            Block::Text(t) => {
                // Text blocks have no contentBlockStart; one delta per word.
                for text in word_deltas(t) {
                    ev.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"text": text}}),
                        1,
                    ));
                }
            }
            Block::Reasoning { text, signature } => {
                // Reasoning has no contentBlockStart either: text deltas, then the signature.
                for text in word_deltas(text) {
                    ev.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"text": text}}}),
                        1,
                    ));
                }
                ev.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"signature": signature}}}),
                    0,
                ));
            }
            Block::ToolUse { id, name, input } => {
                ev.push((
                    "contentBlockStart",
                    json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                    0,
                ));
                let s = input.to_string();
                let mid = s
                    .char_indices()
                    .nth(s.chars().count() / 2)
                    .map_or(0, |(k, _)| k);
                for part in [&s[..mid], &s[mid..]] {
                    ev.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": part}}}),
                        1,
                    ));
                }
            }
        }
        ev.push(("contentBlockStop", json!({"contentBlockIndex": i}), 0));
    }
    ev.push(("messageStop", json!({"stopReason": r.stop_reason}), 0));
    let mut metadata = json!({"usage": usage(r), "metrics": {"latencyMs": latency_ms}});
    if let Some(t) = r.service_tier {
        metadata["serviceTier"] = json!({"type": t});
    }
    if let Some(t) = &r.trace {
        metadata["trace"] = t.clone();
    }
    ev.push(("metadata", metadata, 0));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(text: &str) -> Value {
        json!({"messages": [{"role": "user", "content": [{"text": text}]}]})
    }

    #[test]
    fn same_seed_same_reply_and_exact_token_counts() {
        let a = reply(
            &ask("hello there"),
            "eu-west-1",
            1000,
            &mut Rng::new(7, "x"),
        );
        let b = reply(
            &ask("hello there"),
            "eu-west-1",
            1000,
            &mut Rng::new(7, "x"),
        );
        assert_eq!(a, b);
        let Block::Text(t) = &a.blocks[0] else {
            panic!()
        };
        assert!(t.starts_with("Simulated reply from eu-west-1. You said: hello there"));
        assert_eq!(t.split(' ').count() as u64, a.output_tokens);
        assert_eq!(a.stop_reason, "end_turn");
        let short = reply(&ask("hello"), "eu-west-1", 3, &mut Rng::new(7, "x"));
        assert_eq!((short.output_tokens, short.stop_reason), (3, "max_tokens"));
    }

    #[test]
    fn a_tool_is_called_only_when_asked_for() {
        let tools = json!({"tools": [
            {"toolSpec": {"name": "Agent", "inputSchema": {"json": {"type": "object"}}}},
            {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]});
        let call = |text: &str, choice: Value| {
            let mut body = ask(text);
            body["toolConfig"] = tools.clone();
            if !choice.is_null() {
                body["toolConfig"]["toolChoice"] = choice;
            }
            let r = reply(&body, "us-east-1", 1000, &mut Rng::new(1, "x"));
            r.blocks.iter().find_map(|b| match b {
                Block::ToolUse { name, .. } => Some(name.clone()),
                _ => None,
            })
        };
        // Offered, not asked: text (an agent's turn ends).
        assert_eq!(call("weather in Paris?", Value::Null), None);
        assert_eq!(call("weather in Paris?", json!({"auto": {}})), None);
        assert_eq!(
            call("an agentic reply", Value::Null),
            None,
            "a word inside another is not a name"
        );
        assert_eq!(
            call(
                "<system-reminder>Agent and get_weather exist</system-reminder>say hello",
                Value::Null
            ),
            None,
            "an agent's reminders are not the user's words"
        );
        let mut body = ask("use get_weather");
        body["toolConfig"] = tools.clone();
        body["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "system", "content": [{"text": "Agent"}]}));
        let r = reply(&body, "us-east-1", 1000, &mut Rng::new(1, "x"));
        assert!(
            matches!(&r.blocks[1], Block::ToolUse { name, .. } if name == "get_weather"),
            "the last user message counts, not a system turn after it"
        );
        // Named in the text, named by the choice, or required.
        assert_eq!(
            call("use get_weather for Paris", Value::Null).as_deref(),
            Some("get_weather")
        );
        assert_eq!(
            call("hi", json!({"tool": {"name": "get_weather"}})).as_deref(),
            Some("get_weather")
        );
        assert_eq!(call("hi", json!({"any": {}})).as_deref(), Some("Agent"));
        assert_eq!(
            call("get_weather please", json!({"any": {}})).as_deref(),
            Some("get_weather")
        );
        // A quoted span fills the first required string property.
        let mut body = ask("use run to do `echo hi`");
        body["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "run", "inputSchema": {"json": {
            "type": "object", "properties": {"n": {"type": "integer"}, "command": {"type": "string"}},
            "required": ["n", "command"]}}}}]});
        let r = reply(&body, "us-east-1", 1000, &mut Rng::new(1, "x"));
        assert!(
            matches!(&r.blocks[1], Block::ToolUse { input, .. } if input == &json!({"n": 1, "command": "echo hi"})),
            "{:?}",
            r.blocks
        );
    }

    #[test]
    fn after_a_result_only_a_named_tool_not_yet_called_is_next() {
        let tools = json!({"tools": [
            {"toolSpec": {"name": "transfer_to_weather", "inputSchema": {"json": {"type": "object"}}}},
            {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]});
        let mut body = json!({"messages": [
            {"role": "user", "content": [{"text": "transfer_to_weather then get_weather for Paris"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "a", "name": "transfer_to_weather", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "a", "content": [{"text": "ok"}]}}]}]});
        body["toolConfig"] = tools;
        let next = |body: &Value| {
            let r = reply(body, "us-east-1", 1000, &mut Rng::new(1, "x"));
            r.blocks.iter().find_map(|b| match b {
                Block::ToolUse { name, .. } => Some(name.clone()),
                _ => None,
            })
        };
        assert_eq!(next(&body).as_deref(), Some("get_weather"));
        let m = body["messages"].as_array_mut().unwrap();
        m.push(json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "b", "name": "get_weather", "input": {}}}]}));
        m.push(json!({"role": "user", "content": [{"toolResult": {"toolUseId": "b", "content": [{"text": "sunny"}]}}]}));
        assert_eq!(next(&body), None, "every named tool was called: text");
    }

    #[test]
    fn asked_tools_get_a_tool_call() {
        let mut body = ask("use get_weather in Paris");
        body["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]}}}}]});
        let r = reply(&body, "us-east-1", 1000, &mut Rng::new(1, "x"));
        assert_eq!(r.stop_reason, "tool_use");
        let Block::ToolUse { name, input, .. } = &r.blocks[1] else {
            panic!()
        };
        assert_eq!(name, "get_weather");
        assert_eq!(input, &json!({"city": "sim-city", "days": 1}));
        let events = converse_events(&r, 5);
        assert_eq!(events.first().unwrap().0, "messageStart");
        assert_eq!(events.last().unwrap().0, "metadata");
        assert!(events.iter().any(|e| e.0 == "contentBlockStart"));
    }
}
