//! One typed stream of model events, whatever encoding it came in.
//!
//! An upstream stream is decoded once, at the edge it arrives on, into
//! [`Event`]s: which vocabulary the event speaks (Converse, Anthropic
//! Messages, another model family's native chunks), what kind of event it is
//! (message start, content block start/delta/stop, message delta, stop,
//! metadata, an exception), and its JSON payload. An event also keeps the
//! bytes it arrived as while nothing changed it, so a front door that speaks
//! the same encoding passes them through untouched; one that does not
//! encodes the event once, at its own edge.
//!
//! Eventstream frames are one encoding of these events
//! ([`Event::from_frame`], [`Event::to_frame`]); an Anthropic SSE stream is
//! another ([`Event::messages`]).

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use crate::eventstream::{self, FrameError, FrameKind};

/// Which vocabulary an event's payload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// ConverseStream events (`messageStart`, `contentBlockDelta`, …).
    Converse,
    /// Anthropic Messages events (`message_start`, `content_block_delta`,
    /// …): Claude's InvokeModel chunks, native Messages streams.
    Messages,
    /// Another model family's native InvokeModel chunks (Titan, Llama, …).
    Chunk,
    /// OpenAI's server-sent events from an OpenAI-compatible endpoint:
    /// Chat Completions chunks (named `chunk`) or Responses events (named by
    /// their `type`), passed on to the OpenAI front doors as they came.
    OpenAi,
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MessageStart,
    BlockStart,
    BlockDelta,
    BlockStop,
    /// Anthropic's `message_delta` (stop reason and output usage).
    MessageDelta,
    MessageStop,
    /// Converse's `metadata` (usage and metrics); for other families' chunks,
    /// the chunk that carries Bedrock's invocation metrics.
    Metadata,
    Ping,
    /// An exception the upstream sent in the stream (its member name is the
    /// event's name, its payload the error body).
    Exception,
    /// Anything else: passed on as it is, read by nobody.
    Other,
}

#[derive(Debug, Clone)]
enum Payload {
    /// The JSON text as it arrived (or as it was built).
    Text(Bytes),
    /// A payload changed on the way (by a guard): text again only when a
    /// front door needs it.
    Json(Value),
}

/// One event of a model's answer stream.
#[derive(Debug, Clone)]
pub struct Event {
    vocabulary: Vocabulary,
    kind: Kind,
    /// The Converse event type or exception member; for chunks, `chunk`.
    name: Cow<'static, str>,
    payload: Payload,
    /// The eventstream frame this event arrived as, while unchanged.
    frame: Option<Bytes>,
}

/// What Bedrock adds to the last chunk of an InvokeModel stream.
pub const INVOCATION_METRICS: &str = "amazon-bedrock-invocationMetrics";

fn converse_kind(name: &str) -> (Kind, Cow<'static, str>) {
    let known = |k: Kind, n: &'static str| (k, Cow::Borrowed(n));
    match name {
        "messageStart" => known(Kind::MessageStart, "messageStart"),
        "contentBlockStart" => known(Kind::BlockStart, "contentBlockStart"),
        "contentBlockDelta" => known(Kind::BlockDelta, "contentBlockDelta"),
        "contentBlockStop" => known(Kind::BlockStop, "contentBlockStop"),
        "messageStop" => known(Kind::MessageStop, "messageStop"),
        "metadata" => known(Kind::Metadata, "metadata"),
        other => (Kind::Other, Cow::Owned(other.to_string())),
    }
}

/// The kind of an Anthropic Messages event from its `type`.
fn messages_kind(t: &str) -> Option<Kind> {
    Some(match t {
        "message_start" => Kind::MessageStart,
        "content_block_start" => Kind::BlockStart,
        "content_block_delta" => Kind::BlockDelta,
        "content_block_stop" => Kind::BlockStop,
        "message_delta" => Kind::MessageDelta,
        "message_stop" => Kind::MessageStop,
        "ping" => Kind::Ping,
        "error" => Kind::Exception,
        _ => return None,
    })
}

/// Vocabulary and kind of a chunk's inner JSON.
fn chunk_kind(inner: &[u8]) -> (Vocabulary, Kind) {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        t: Option<Cow<'a, str>>,
    }
    let t = serde_json::from_slice::<Typed<'_>>(inner)
        .ok()
        .and_then(|t| t.t);
    if let Some(kind) = t.as_deref().and_then(messages_kind) {
        return (Vocabulary::Messages, kind);
    }
    let has_metrics = inner
        .windows(INVOCATION_METRICS.len())
        .any(|w| w == INVOCATION_METRICS.as_bytes());
    let kind = if has_metrics {
        Kind::Metadata
    } else {
        Kind::Other
    };
    (Vocabulary::Chunk, kind)
}

impl Event {
    /// Decodes one whole eventstream frame (as Bedrock's streaming
    /// operations send them): a Converse event, an InvokeModel `chunk`
    /// (its base64 `bytes` decoded), or an exception.
    pub fn from_frame(frame: Bytes) -> Result<Event, FrameError> {
        let f = eventstream::decode_one(&frame)?;
        let (vocabulary, kind, name, payload) = match f.kind {
            FrameKind::Event(name) if name == "chunk" => {
                #[derive(serde::Deserialize)]
                struct Chunk<'a> {
                    #[serde(borrow)]
                    bytes: Cow<'a, str>,
                }
                let chunk: Chunk<'_> = serde_json::from_slice(&f.payload)
                    .map_err(|e| FrameError::new(format!("a chunk that is not JSON: {e}")))?;
                let inner = base64::engine::general_purpose::STANDARD
                    .decode(chunk.bytes.as_bytes())
                    .map_err(|e| FrameError::new(format!("a chunk that is not base64: {e}")))?;
                let (vocabulary, kind) = chunk_kind(&inner);
                (vocabulary, kind, Cow::Borrowed("chunk"), Bytes::from(inner))
            }
            FrameKind::Event(name) => {
                let (kind, name) = converse_kind(&name);
                (Vocabulary::Converse, kind, name, f.payload)
            }
            FrameKind::Exception(member) => (
                Vocabulary::Converse,
                Kind::Exception,
                Cow::Owned(member),
                f.payload,
            ),
            FrameKind::Other(t) => {
                return Err(FrameError::new(format!("a frame of message type '{t}'")));
            }
        };
        Ok(Event {
            vocabulary,
            kind,
            name,
            payload: Payload::Text(payload),
            frame: Some(frame),
        })
    }

    /// A Converse event built here (`name` is its event type).
    pub fn converse(name: &str, payload: Value) -> Event {
        let (kind, name) = converse_kind(name);
        Event {
            vocabulary: Vocabulary::Converse,
            kind,
            name,
            payload: Payload::Json(payload),
            frame: None,
        }
    }

    /// An Anthropic Messages event (from an SSE `data:` line, or built
    /// here); `None` when its `type` is not a Messages event type.
    pub fn messages(payload: Value) -> Option<Event> {
        let kind = payload["type"].as_str().and_then(messages_kind)?;
        Some(Event {
            vocabulary: Vocabulary::Messages,
            kind,
            name: Cow::Borrowed("chunk"),
            payload: Payload::Json(payload),
            frame: None,
        })
    }

    /// An Anthropic Messages event from its JSON text (a server-sent
    /// event's data), kept as it arrived; `None` when its `type` is not a
    /// Messages event's.
    pub fn messages_text(data: Bytes) -> Option<Event> {
        let (vocabulary, kind) = chunk_kind(&data);
        (vocabulary == Vocabulary::Messages).then_some(Event {
            vocabulary,
            kind,
            name: Cow::Borrowed("chunk"),
            payload: Payload::Text(data),
            frame: None,
        })
    }

    /// An OpenAI server-sent event (`name`: its `event:` field, if any),
    /// kept as it arrived; `None` for Chat Completions' `[DONE]`, which
    /// only marks the end.
    pub fn openai_text(name: Option<&str>, data: Bytes) -> Option<Event> {
        if data.as_ref() == b"[DONE]" {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            t: Option<Cow<'a, str>>,
            #[serde(default)]
            usage: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            choices: Option<serde::de::IgnoredAny>,
        }
        let head = serde_json::from_slice::<Head<'_>>(&data).ok();
        let t = head.as_ref().and_then(|h| h.t.as_deref()).or(name);
        let kind = match t {
            Some("response.output_text.delta") => Kind::BlockDelta,
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                Kind::MessageStop
            }
            Some("response.created") => Kind::MessageStart,
            Some("error") => Kind::Exception,
            Some(_) => Kind::Other,
            // A chat chunk: the one with usage ends the stream.
            None if head.as_ref().is_some_and(|h| h.usage.is_some()) => Kind::Metadata,
            None if head.as_ref().is_some_and(|h| h.choices.is_some()) => Kind::BlockDelta,
            None => Kind::Other,
        };
        let name = match t {
            Some(t) => Cow::Owned(t.to_string()),
            None => Cow::Borrowed("chunk"),
        };
        Some(Event {
            vocabulary: Vocabulary::OpenAi,
            kind,
            name,
            payload: Payload::Text(data),
            frame: None,
        })
    }

    /// This event with its payload replaced: the bytes it arrived as no
    /// longer stand for it.
    pub fn with_json(self, payload: Value) -> Event {
        Event {
            payload: Payload::Json(payload),
            frame: None,
            ..self
        }
    }

    pub fn vocabulary(&self) -> Vocabulary {
        self.vocabulary
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The Converse event type, the exception member, or `chunk`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The payload's JSON text as it arrived; `None` once it was changed.
    pub fn text(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Text(b) => Some(b),
            Payload::Json(_) => None,
        }
    }

    /// The payload, parsed (or as it was set).
    pub fn json(&self) -> Result<Cow<'_, Value>, serde_json::Error> {
        match &self.payload {
            Payload::Text(b) => serde_json::from_slice(b).map(Cow::Owned),
            Payload::Json(v) => Ok(Cow::Borrowed(v)),
        }
    }

    /// Whether a stream ends with this event (usage comes with it):
    /// Converse's `metadata`, Anthropic's `message_stop`, the chunk with
    /// Bedrock's invocation metrics.
    pub fn is_last(&self) -> bool {
        matches!(
            (self.vocabulary, self.kind),
            (
                Vocabulary::Converse | Vocabulary::Chunk | Vocabulary::OpenAi,
                Kind::Metadata
            ) | (Vocabulary::Messages | Vocabulary::OpenAi, Kind::MessageStop)
        )
    }

    /// The exception's message, for an exception event.
    pub fn exception_message(&self) -> Option<String> {
        if self.kind != Kind::Exception {
            return None;
        }
        let v = self.json().ok()?;
        let m = v["message"]
            .as_str()
            .or(v["error"]["message"].as_str())
            .unwrap_or("the stream failed");
        Some(m.to_string())
    }

    /// The event as one eventstream frame: the frame it arrived as, or
    /// encoded now (a Messages or chunk event as an InvokeModel `chunk`).
    pub fn to_frame(&self) -> Bytes {
        if let Some(f) = &self.frame {
            return f.clone();
        }
        let text = match &self.payload {
            Payload::Text(b) => Cow::Borrowed(b.as_ref()),
            Payload::Json(v) => Cow::Owned(crate::json_bytes(v).to_vec()),
        };
        match (self.vocabulary, self.kind) {
            (Vocabulary::Converse, Kind::Exception) => eventstream::exception(&self.name, &text),
            (Vocabulary::Converse, _) => eventstream::event(&self.name, &text),
            (Vocabulary::Messages | Vocabulary::Chunk | Vocabulary::OpenAi, _) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
                let chunk = serde_json::json!({ "bytes": b64 });
                eventstream::event("chunk", &crate::json_bytes(&chunk))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn chunk(inner: &Value) -> Bytes {
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner.to_string());
        eventstream::event("chunk", json!({ "bytes": b64 }).to_string().as_bytes())
    }

    #[test]
    fn converse_frames_decode_once_and_pass_through_unchanged() {
        let frame = eventstream::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        );
        let e = Event::from_frame(frame.clone()).unwrap();
        assert_eq!(e.vocabulary(), Vocabulary::Converse);
        assert_eq!(e.kind(), Kind::BlockDelta);
        assert_eq!(e.name(), "contentBlockDelta");
        assert_eq!(e.json().unwrap()["delta"]["text"], "hi");
        assert_eq!(e.to_frame(), frame);
        let meta = Event::from_frame(eventstream::event("metadata", b"{}")).unwrap();
        assert!(meta.is_last());
        // Converse's messageStop is followed by metadata.
        let stop = Event::from_frame(eventstream::event("messageStop", b"{}")).unwrap();
        assert!(!stop.is_last());
        let odd = Event::from_frame(eventstream::event("somethingNew", b"{}")).unwrap();
        assert_eq!((odd.kind(), odd.name()), (Kind::Other, "somethingNew"));
    }

    #[test]
    fn chunks_are_read_by_their_inner_type() {
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}});
        let e = Event::from_frame(chunk(&start)).unwrap();
        assert_eq!(
            (e.vocabulary(), e.kind()),
            (Vocabulary::Messages, Kind::MessageStart)
        );
        assert_eq!(e.json().unwrap().as_ref(), &start);
        let stop = json!({"type": "message_stop", INVOCATION_METRICS: {"inputTokenCount": 3}});
        assert!(Event::from_frame(chunk(&stop)).unwrap().is_last());
        let titan = json!({"outputText": "x", "index": 0});
        let e = Event::from_frame(chunk(&titan)).unwrap();
        assert_eq!((e.vocabulary(), e.kind()), (Vocabulary::Chunk, Kind::Other));
        let last = json!({"outputText": "", INVOCATION_METRICS: {"outputTokenCount": 1}});
        let e = Event::from_frame(chunk(&last)).unwrap();
        assert_eq!(
            (e.vocabulary(), e.kind()),
            (Vocabulary::Chunk, Kind::Metadata)
        );
    }

    #[test]
    fn a_changed_event_is_encoded_again_in_its_own_vocabulary() {
        let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}});
        let e = Event::from_frame(chunk(&delta)).unwrap();
        let mut changed = delta.clone();
        changed["delta"]["text"] = json!("b");
        let e = e.with_json(changed.clone());
        assert!(e.text().is_none());
        let again = Event::from_frame(e.to_frame()).unwrap();
        assert_eq!(again.json().unwrap().as_ref(), &changed);
        assert_eq!(again.kind(), Kind::BlockDelta);

        let c = Event::converse("contentBlockDelta", json!({"delta": {"text": "z"}}));
        let again = Event::from_frame(c.to_frame()).unwrap();
        assert_eq!(
            (again.name(), again.kind()),
            ("contentBlockDelta", Kind::BlockDelta)
        );
        assert_eq!(again.json().unwrap()["delta"]["text"], "z");

        // An SSE-born Messages event becomes an InvokeModel chunk.
        let m = Event::messages(json!({"type": "message_stop"})).unwrap();
        let again = Event::from_frame(m.to_frame()).unwrap();
        assert_eq!(
            (again.vocabulary(), again.kind()),
            (Vocabulary::Messages, Kind::MessageStop)
        );
        assert!(Event::messages(json!({"type": "nonsense"})).is_none());
    }

    #[test]
    fn exceptions_keep_their_member_and_message() {
        let frame = eventstream::exception("throttlingException", br#"{"message":"slow down"}"#);
        let e = Event::from_frame(frame.clone()).unwrap();
        assert_eq!(
            (e.kind(), e.name()),
            (Kind::Exception, "throttlingException")
        );
        assert_eq!(e.exception_message().as_deref(), Some("slow down"));
        assert_eq!(e.to_frame(), frame);
    }

    #[test]
    fn frames_that_are_not_events_are_refused() {
        let b64_broken = eventstream::event("chunk", br#"{"bytes":"%%%"}"#);
        assert!(Event::from_frame(b64_broken).is_err());
        assert!(Event::from_frame(Bytes::from_static(b"short")).is_err());
    }
}
