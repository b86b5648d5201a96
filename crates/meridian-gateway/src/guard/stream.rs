//! Guard output on a stream of typed events, event by event.
//!
//! Text deltas (Converse `contentBlockDelta` text, tool input and reasoning;
//! Anthropic `content_block_delta`, whatever encoding it came in) are
//! scanned as they pass. Only the tail a pattern could still be completing
//! is held back — the word being written, a run of digits and separators,
//! the words of a listed phrase, at most [`MAX_HOLD`] bytes — and it goes
//! out at the front of the next delta of the same block, or in one delta of
//! its own just before the block stops. Events keep their order and their
//! number; no event is merged into another. Other model families' chunks
//! are scanned one by one. An event the guard changed loses the bytes it
//! arrived as; each front door encodes it at its edge.

use std::collections::BTreeMap;

use meridian_wire::BedrockError;
use meridian_wire::event::{Event, Kind, Vocabulary};
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

/// A stream's guard.
#[derive(Debug)]
pub struct StreamGuard {
    session: Session,
    /// Text held back per (block, field), with the vocabulary its delta
    /// goes out in.
    pending: BTreeMap<(u64, Field), (Vocabulary, String)>,
    phrase_words: usize,
}

/// Where a delta's text is in its payload, for each vocabulary.
fn delta_slot(v: &mut Value, vocabulary: Vocabulary) -> Option<(Field, &mut Value)> {
    let delta = &mut v["delta"];
    let paths: [(Field, &str, &str); 3] = match vocabulary {
        Vocabulary::Converse => [
            (Field::Text, "text", ""),
            (Field::ToolInput, "toolUse", "input"),
            (Field::Reasoning, "reasoningContent", "text"),
        ],
        _ => [
            (Field::Text, "text", ""),
            (Field::ToolInput, "partial_json", ""),
            (Field::Reasoning, "thinking", ""),
        ],
    };
    let (field, a, b) = paths.into_iter().find(|(_, a, b)| {
        let x = &delta[*a];
        if b.is_empty() {
            x.is_string()
        } else {
            x[*b].is_string()
        }
    })?;
    let slot = if b.is_empty() {
        &mut delta[a]
    } else {
        &mut delta[a][b]
    };
    Some((field, slot))
}

fn block_index(v: &Value, vocabulary: Vocabulary) -> u64 {
    let key = match vocabulary {
        Vocabulary::Converse => "contentBlockIndex",
        _ => "index",
    };
    v[key].as_u64().unwrap_or(0)
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

    /// One upstream event in; the events to send out.
    pub fn event(&mut self, ev: Event, out: &mut Vec<Event>) -> Result<(), BedrockError> {
        let vocabulary = ev.vocabulary();
        match (vocabulary, ev.kind()) {
            (_, Kind::Exception) => out.push(ev),
            // Other model families, and OpenAI's events passed through:
            // each chunk on its own.
            (Vocabulary::Chunk | Vocabulary::OpenAi, _) => {
                let Ok(mut v) = ev.json().map(std::borrow::Cow::into_owned) else {
                    out.push(ev);
                    return Ok(());
                };
                match self.session.json(&mut v, Direction::Output) {
                    Ok(true) => out.push(ev.with_json(v)),
                    Ok(false) => out.push(ev),
                    Err(b) => return Err(b.error()),
                }
            }
            (_, Kind::BlockDelta) => {
                let Ok(mut v) = ev.json().map(std::borrow::Cow::into_owned) else {
                    out.push(ev);
                    return Ok(());
                };
                let idx = block_index(&v, vocabulary);
                let Some((field, slot)) = delta_slot(&mut v, vocabulary) else {
                    out.push(ev);
                    return Ok(());
                };
                let text = slot.as_str().unwrap_or_default().to_string();
                *slot = Value::String(self.feed(idx, field, vocabulary, &text)?);
                out.push(ev.with_json(v));
            }
            (_, Kind::BlockStop) => {
                let idx = ev.json().map_or(0, |v| block_index(&v, vocabulary));
                self.flush(Some(idx), out)?;
                out.push(ev);
            }
            (_, Kind::MessageDelta | Kind::MessageStop | Kind::Metadata) => {
                self.flush(None, out)?;
                out.push(ev);
            }
            (_, Kind::MessageStart | Kind::BlockStart | Kind::Ping | Kind::Other) => out.push(ev),
        }
        Ok(())
    }

    /// The stream ended: anything still held goes out.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), BedrockError> {
        self.flush(None, out)
    }

    fn feed(
        &mut self,
        idx: u64,
        field: Field,
        vocabulary: Vocabulary,
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
            self.pending.insert((idx, field), (vocabulary, keep));
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
    fn flush(&mut self, idx: Option<u64>, out: &mut Vec<Event>) -> Result<(), BedrockError> {
        let keys: Vec<(u64, Field)> = self
            .pending
            .keys()
            .filter(|(i, _)| idx.is_none_or(|x| x == *i))
            .copied()
            .collect();
        for key in keys {
            let Some((vocabulary, text)) = self.pending.remove(&key) else {
                continue;
            };
            let text = self.apply(text, key.1)?;
            out.extend(delta_event(vocabulary, key.0, key.1, text));
        }
        Ok(())
    }
}

fn delta_event(vocabulary: Vocabulary, idx: u64, field: Field, text: String) -> Option<Event> {
    match vocabulary {
        // Read one event at a time: nothing is held back.
        Vocabulary::OpenAi => None,
        Vocabulary::Converse => {
            let delta = match field {
                Field::Text => json!({ "text": text }),
                Field::ToolInput => json!({ "toolUse": { "input": text } }),
                Field::Reasoning => json!({ "reasoningContent": { "text": text } }),
            };
            let v = json!({ "contentBlockIndex": idx, "delta": delta });
            Some(Event::converse("contentBlockDelta", v))
        }
        Vocabulary::Messages | Vocabulary::Chunk => {
            let delta = match field {
                Field::Text => json!({ "type": "text_delta", "text": text }),
                Field::ToolInput => json!({ "type": "input_json_delta", "partial_json": text }),
                Field::Reasoning => json!({ "type": "thinking_delta", "thinking": text }),
            };
            Event::messages(json!({ "type": "content_block_delta", "index": idx, "delta": delta }))
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

    fn delta(text: &str) -> Event {
        let frame = meridian_wire::eventstream::event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": text}})
                .to_string()
                .as_bytes(),
        );
        Event::from_frame(frame).unwrap()
    }

    /// What a client reads: each event as the frame it goes out as.
    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let e = Event::from_frame(e.to_frame()).unwrap();
                match e.kind() {
                    Kind::BlockDelta => e.json().unwrap()["delta"]["text"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    _ => format!("<{}>", e.name()),
                }
            })
            .collect()
    }

    #[test]
    fn a_card_number_split_across_events_is_masked_and_events_keep_their_count() {
        let mut g = guard(GuardAction::Mask);
        let mut out = Vec::new();
        for t in ["Pay ", "with ", "4111", "1111", "1111", "1111 ", "today."] {
            g.event(delta(t), &mut out).unwrap();
        }
        let stop =
            meridian_wire::eventstream::event("contentBlockStop", br#"{"contentBlockIndex":0}"#);
        g.event(Event::from_frame(stop).unwrap(), &mut out).unwrap();
        let t = texts(&out);
        assert_eq!(t.len(), 9, "{t:?}"); // 7 deltas, the held tail, the stop
        assert_eq!(t.concat(), "Pay with [CARD] today.<contentBlockStop>");
        assert!(t.iter().all(|x| !x.contains("1111")), "{t:?}");
    }

    #[test]
    fn a_split_card_number_under_block_ends_the_stream_with_an_error() {
        let mut g = guard(GuardAction::Block);
        let mut out = Vec::new();
        g.event(delta("card 4111 1111 "), &mut out).unwrap();
        let err = g.event(delta("1111 1111 ok"), &mut out).unwrap_err();
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
            g.event(delta(t), &mut out).unwrap();
        }
        g.finish(&mut out).unwrap();
        assert_eq!(texts(&out).concat(), "Sent to jane@example.com today");
    }

    #[test]
    fn messages_events_are_guarded_whatever_encoding_they_came_in() {
        // As a native Messages (SSE) upstream will hand them over: no frame.
        let mut g = guard(GuardAction::Mask);
        let mut out = Vec::new();
        for t in ["card 4111 11", "11 1111 1111 ", "ok"] {
            let ev = Event::messages(json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": t}}))
            .unwrap();
            g.event(ev, &mut out).unwrap();
        }
        let stop = Event::messages(json!({"type": "content_block_stop", "index": 0})).unwrap();
        g.event(stop, &mut out).unwrap();
        let text: String = out
            .iter()
            .filter(|e| e.kind() == Kind::BlockDelta)
            .map(|e| {
                e.json().unwrap()["delta"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, "card [CARD] ok");
        assert_eq!(out.last().unwrap().kind(), Kind::BlockStop);
        // Encoded for the Bedrock door, they are InvokeModel chunks.
        let again = Event::from_frame(out[0].to_frame()).unwrap();
        assert_eq!(again.vocabulary(), Vocabulary::Messages);
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
