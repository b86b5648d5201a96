//! Guard output on a stream of event-stream frames, event by event.
//!
//! Text deltas (Converse `contentBlockDelta` text, tool input and reasoning;
//! Anthropic `content_block_delta` chunks) are scanned as they pass. Only the
//! tail a pattern could still be completing is held back — the word being
//! written, a run of digits and separators, the words of a listed phrase, at
//! most [`MAX_HOLD`] bytes — and it goes out at the front of the next delta
//! of the same block, or in one delta of its own just before the block
//! stops. Events keep their order and their number; no event is merged into
//! another. Other model families' chunks are scanned one by one.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use meridian_wire::BedrockError;
use meridian_wire::eventstream::{self, FrameKind};
use serde_json::{Value, json};

use super::{Direction, Session};

/// Most bytes held back from one block.
pub const MAX_HOLD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Text,
    ToolInput,
    Reasoning,
}

/// Which wire a delta came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wire {
    Converse,
    Anthropic,
}

/// A stream's guard.
#[derive(Debug)]
pub struct StreamGuard {
    session: Session,
    pending: BTreeMap<(u64, Field), (Wire, String)>,
    phrase_words: usize,
}

impl StreamGuard {
    pub fn new(session: Session) -> StreamGuard {
        let phrase_words = session.phrase_words();
        StreamGuard {
            session,
            pending: BTreeMap::new(),
            phrase_words,
        }
    }

    /// What the guards did, once the stream is over.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// One upstream frame in; the frames to send out.
    pub fn frame(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> Result<(), BedrockError> {
        let Ok(f) = eventstream::decode_one(&frame) else {
            out.push(frame);
            return Ok(());
        };
        let FrameKind::Event(kind) = &f.kind else {
            out.push(frame);
            return Ok(());
        };
        match kind.as_str() {
            "contentBlockDelta" => {
                let Ok(mut v) = serde_json::from_slice::<Value>(&f.payload) else {
                    out.push(frame);
                    return Ok(());
                };
                let idx = v["contentBlockIndex"].as_u64().unwrap_or(0);
                let delta = &mut v["delta"];
                let (field, slot) = if delta["text"].is_string() {
                    (Field::Text, &mut delta["text"])
                } else if delta["toolUse"]["input"].is_string() {
                    (Field::ToolInput, &mut delta["toolUse"]["input"])
                } else if delta["reasoningContent"]["text"].is_string() {
                    (Field::Reasoning, &mut delta["reasoningContent"]["text"])
                } else {
                    out.push(frame);
                    return Ok(());
                };
                let text = slot.as_str().unwrap_or_default().to_string();
                *slot = Value::String(self.feed(idx, field, Wire::Converse, &text)?);
                out.push(eventstream::event(kind, v.to_string().as_bytes()));
            }
            "contentBlockStop" => {
                let idx = serde_json::from_slice::<Value>(&f.payload)
                    .ok()
                    .and_then(|v| v["contentBlockIndex"].as_u64())
                    .unwrap_or(0);
                self.flush(Some(idx), out)?;
                out.push(frame);
            }
            "messageStop" | "metadata" => {
                self.flush(None, out)?;
                out.push(frame);
            }
            "chunk" => self.chunk(frame, &f.payload, out)?,
            _ => out.push(frame),
        }
        Ok(())
    }

    /// The stream ended: anything still held goes out.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), BedrockError> {
        self.flush(None, out)
    }

    fn chunk(
        &mut self,
        frame: Bytes,
        payload: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), BedrockError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let inner = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|p| p["bytes"].as_str().and_then(|b| b64.decode(b).ok()))
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let Some(mut c) = inner else {
            out.push(frame);
            return Ok(());
        };
        match c["type"].as_str() {
            Some("content_block_delta") => {
                let idx = c["index"].as_u64().unwrap_or(0);
                let delta = &mut c["delta"];
                let (field, slot) = if delta["text"].is_string() {
                    (Field::Text, &mut delta["text"])
                } else if delta["partial_json"].is_string() {
                    (Field::ToolInput, &mut delta["partial_json"])
                } else if delta["thinking"].is_string() {
                    (Field::Reasoning, &mut delta["thinking"])
                } else {
                    out.push(frame);
                    return Ok(());
                };
                let text = slot.as_str().unwrap_or_default().to_string();
                *slot = Value::String(self.feed(idx, field, Wire::Anthropic, &text)?);
                out.push(chunk_frame(&c));
            }
            Some("content_block_stop") => {
                let idx = c["index"].as_u64().unwrap_or(0);
                self.flush(Some(idx), out)?;
                out.push(frame);
            }
            Some("message_delta" | "message_stop") => {
                self.flush(None, out)?;
                out.push(frame);
            }
            Some("message_start" | "content_block_start" | "ping") => out.push(frame),
            // Other model families: each chunk on its own.
            _ => match self.session.json(&mut c, Direction::Output) {
                Ok(true) => out.push(chunk_frame(&c)),
                Ok(false) => out.push(frame),
                Err(b) => return Err(b.error()),
            },
        }
        Ok(())
    }

    fn feed(
        &mut self,
        idx: u64,
        field: Field,
        wire: Wire,
        text: &str,
    ) -> Result<String, BedrockError> {
        let mut buf = self
            .pending
            .remove(&(idx, field))
            .map(|(_, s)| s)
            .unwrap_or_default();
        buf.push_str(text);
        let cut = hold_from(&buf, self.phrase_words);
        let keep = buf.split_off(cut);
        if !keep.is_empty() {
            self.pending.insert((idx, field), (wire, keep));
        }
        self.apply(buf, field)
    }

    fn apply(&mut self, text: String, field: Field) -> Result<String, BedrockError> {
        if text.is_empty() {
            return Ok(text);
        }
        match self
            .session
            .text(&text, Direction::Output, field == Field::ToolInput)
        {
            Ok(None) => Ok(text),
            Ok(Some(s)) => Ok(s),
            Err(b) => Err(b.error()),
        }
    }

    /// Sends what is held for block `idx` (every block: `None`), each as a
    /// delta of its own.
    fn flush(&mut self, idx: Option<u64>, out: &mut Vec<Bytes>) -> Result<(), BedrockError> {
        let keys: Vec<(u64, Field)> = self
            .pending
            .keys()
            .filter(|(i, _)| idx.is_none_or(|x| x == *i))
            .copied()
            .collect();
        for key in keys {
            let Some((wire, text)) = self.pending.remove(&key) else {
                continue;
            };
            let text = self.apply(text, key.1)?;
            out.push(delta_frame(wire, key.0, key.1, text));
        }
        Ok(())
    }
}

fn chunk_frame(c: &Value) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(c.to_string());
    eventstream::event("chunk", json!({ "bytes": b64 }).to_string().as_bytes())
}

fn delta_frame(wire: Wire, idx: u64, field: Field, text: String) -> Bytes {
    match wire {
        Wire::Converse => {
            let delta = match field {
                Field::Text => json!({ "text": text }),
                Field::ToolInput => json!({ "toolUse": { "input": text } }),
                Field::Reasoning => json!({ "reasoningContent": { "text": text } }),
            };
            let v = json!({ "contentBlockIndex": idx, "delta": delta });
            eventstream::event("contentBlockDelta", v.to_string().as_bytes())
        }
        Wire::Anthropic => {
            let delta = match field {
                Field::Text => json!({ "type": "text_delta", "text": text }),
                Field::ToolInput => json!({ "type": "input_json_delta", "partial_json": text }),
                Field::Reasoning => json!({ "type": "thinking_delta", "thinking": text }),
            };
            chunk_frame(&json!({ "type": "content_block_delta", "index": idx, "delta": delta }))
        }
    }
}

/// Where the held-back tail of `buf` starts: the word being written, a
/// trailing run of digits, upper-case letters and separators that holds a
/// digit (a card number or IBAN in groups, a phone number), and the words
/// before it that a listed phrase could span; never more than [`MAX_HOLD`]
/// bytes.
pub fn hold_from(buf: &str, phrase_words: usize) -> usize {
    let word_start = |end: usize| {
        buf[..end]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8())
    };
    let mut start = word_start(buf.len());
    let mut run = buf.len();
    for (i, c) in buf.char_indices().rev() {
        if c.is_ascii_digit() || c.is_ascii_uppercase() || " +-.()/".contains(c) {
            run = i;
        } else {
            break;
        }
    }
    if buf[run..].bytes().any(|b| b.is_ascii_digit())
        && let Some(first) =
            buf[run..].find(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '(')
    {
        start = start.min(run + first);
    }
    for _ in 1..phrase_words {
        let before = buf[..start].trim_end_matches(char::is_whitespace).len();
        if before == 0 {
            break;
        }
        start = word_start(before);
    }
    let floor = buf.len().saturating_sub(MAX_HOLD);
    if start < floor {
        start = (floor..=buf.len())
            .find(|&i| buf.is_char_boundary(i))
            .unwrap_or(buf.len());
    }
    start
}

#[cfg(test)]
mod tests {
    use meridian_config::{Builtin, Detector, Guard, GuardAction, GuardRule};

    use super::*;

    fn guard(action: GuardAction) -> StreamGuard {
        let g = Guard {
            name: "g".into(),
            rules: vec![
                GuardRule {
                    detector: Detector::Builtin(Builtin::Card),
                    action,
                },
                GuardRule {
                    detector: Detector::Builtin(Builtin::Email),
                    action: GuardAction::Anonymize,
                },
            ],
        };
        let guards = crate::guard::Guards::of([&g]);
        StreamGuard::new(guards.session([Some("g"), None]).unwrap())
    }

    fn delta(text: &str) -> Bytes {
        eventstream::event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": text}})
                .to_string()
                .as_bytes(),
        )
    }

    fn texts(frames: &[Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let f = eventstream::decode_one(f).unwrap();
                let v: Value = serde_json::from_slice(&f.payload).unwrap();
                match &f.kind {
                    FrameKind::Event(k) if k == "contentBlockDelta" => {
                        v["delta"]["text"].as_str().unwrap().to_string()
                    }
                    FrameKind::Event(k) => format!("<{k}>"),
                    other => format!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn a_card_number_split_across_events_is_masked_and_events_keep_their_count() {
        let mut g = guard(GuardAction::Mask);
        let mut out = Vec::new();
        for t in ["Pay ", "with ", "4111", "1111", "1111", "1111 ", "today."] {
            g.frame(delta(t), &mut out).unwrap();
        }
        g.frame(
            eventstream::event("contentBlockStop", br#"{"contentBlockIndex":0}"#),
            &mut out,
        )
        .unwrap();
        let t = texts(&out);
        assert_eq!(t.len(), 9, "{t:?}"); // 7 deltas, the held tail, the stop
        assert_eq!(t.concat(), "Pay with [CARD] today.<contentBlockStop>");
        assert!(t.iter().all(|x| !x.contains("1111")), "{t:?}");
    }

    #[test]
    fn a_split_card_number_under_block_ends_the_stream_with_an_error() {
        let mut g = guard(GuardAction::Block);
        let mut out = Vec::new();
        g.frame(delta("card 4111 1111 "), &mut out).unwrap();
        let err = g.frame(delta("1111 1111 ok"), &mut out).unwrap_err();
        assert!(err.message.contains("CARD"), "{}", err.message);
        assert!(texts(&out).concat().find("1111").is_none());
    }

    #[test]
    fn placeholders_split_across_events_are_put_back() {
        let mut g = guard(GuardAction::Mask);
        // The input had an address: the model saw its placeholder.
        g.session
            .text("to jane@example.com", Direction::Input, false)
            .unwrap();
        let mut out = Vec::new();
        for t in ["Sent ", "to <EMA", "IL_1> ", "today"] {
            g.frame(delta(t), &mut out).unwrap();
        }
        g.finish(&mut out).unwrap();
        assert_eq!(texts(&out).concat(), "Sent to jane@example.com today");
    }

    #[test]
    fn hold_back_is_the_unfinished_tail_only() {
        assert_eq!(hold_from("hello wor", 1), 6);
        assert_eq!(hold_from("hello world ", 1), 12);
        assert_eq!(hold_from("card 4111 1111 ", 1), 5);
        assert_eq!(hold_from("a night ", 2), 2);
        let long = "x".repeat(200);
        assert_eq!(hold_from(&long, 1), 200 - MAX_HOLD);
    }
}
