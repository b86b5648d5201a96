//! Server-sent events from an upstream event stream: the one loop both SSE
//! front doors (OpenAI, Anthropic) share. Each whole frame is decoded once
//! and handed to the front door's [`Translate`]; an exception frame, or a
//! frame that cannot be decoded, ends the stream with the front door's error
//! event.

use axum::body::Body;
use bytes::Bytes;
use meridian_wire::eventstream::{FrameKind, decode_one};
use meridian_wire::{BedrockError, ErrorKind};
use serde_json::Value;

use crate::execute::Frames;

/// How one front door writes an event stream as SSE.
pub trait Translate: Send + 'static {
    /// The SSE chunks for one event (its type and JSON payload).
    fn event(&mut self, event_type: &str, payload: &Value) -> Vec<Bytes>;
    /// The error event for an upstream exception frame (`:exception-type`
    /// member and its message).
    fn exception(&mut self, member: &str, message: &str) -> Bytes;
    /// The error event for a stream that broke or could not be decoded.
    fn broken(&mut self, e: &BedrockError) -> Bytes;
    /// What ends a clean stream, if anything.
    fn done(&mut self) -> Option<Bytes> {
        None
    }
}

/// The SSE body for `frames`.
pub fn body(mut frames: Frames, mut t: impl Translate) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        while let Some(item) = frames.recv().await {
            let decoded = item.and_then(|f| {
                decode_one(&f)
                    .map_err(|e| BedrockError::new(ErrorKind::ModelStreamError, e.to_string()))
            });
            let out = match decoded {
                Ok(frame) => match frame.kind {
                    FrameKind::Event(ev) => match serde_json::from_slice::<Value>(&frame.payload) {
                        Ok(payload) => t.event(&ev, &payload),
                        // An event the front door cannot read ends the
                        // stream with an error, never a `null` chunk.
                        Err(e) => {
                            let e = BedrockError::new(
                                ErrorKind::ModelStreamError,
                                format!("the upstream sent a {ev} event that is not JSON: {e}"),
                            );
                            let _ = tx.send(Ok(t.broken(&e))).await;
                            return;
                        }
                    },
                    FrameKind::Exception(member) => {
                        let msg: Value = serde_json::from_slice(&frame.payload).unwrap_or_default();
                        let message = msg["message"].as_str().unwrap_or("the stream failed");
                        let _ = tx.send(Ok(t.exception(&member, message))).await;
                        return;
                    }
                    FrameKind::Other(_) => Vec::new(),
                },
                Err(e) => {
                    let _ = tx.send(Ok(t.broken(&e))).await;
                    return;
                }
            };
            for b in out {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        }
        if let Some(end) = t.done() {
            let _ = tx.send(Ok(end)).await;
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http_body_util::BodyExt;
    use meridian_wire::eventstream;

    use super::*;

    /// Writes what it is given, so a test sees each call.
    struct Echo;

    impl Translate for Echo {
        fn event(&mut self, event_type: &str, payload: &Value) -> Vec<Bytes> {
            vec![Bytes::from(format!("event {event_type} {payload}\n"))]
        }
        fn exception(&mut self, member: &str, message: &str) -> Bytes {
            Bytes::from(format!("exception {member} {message}\n"))
        }
        fn broken(&mut self, e: &BedrockError) -> Bytes {
            Bytes::from(format!("broken {}\n", e.message))
        }
        fn done(&mut self) -> Option<Bytes> {
            Some(Bytes::from("done\n"))
        }
    }

    async fn run(frames: Vec<Bytes>) -> String {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for f in frames {
            tx.send(Ok(f)).await.unwrap();
        }
        drop(tx);
        let out = body(rx, Echo).collect().await.unwrap().to_bytes();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_event_that_is_not_json_ends_the_stream_with_an_error_not_a_null() {
        let out = run(vec![
            eventstream::event("messageStart", br#"{"role":"assistant"}"#),
            eventstream::event("contentBlockDelta", b"{not json"),
            eventstream::event("messageStop", br#"{"stopReason":"end_turn"}"#),
        ])
        .await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], r#"event messageStart {"role":"assistant"}"#);
        assert!(
            lines[1]
                .starts_with("broken the upstream sent a contentBlockDelta event that is not JSON"),
            "{out}"
        );
        assert!(!out.contains("null"), "{out}");
    }

    #[tokio::test]
    async fn a_clean_stream_is_translated_and_ended() {
        let out = run(vec![
            eventstream::event("messageStart", br#"{"role":"assistant"}"#),
            eventstream::event("messageStop", br#"{"stopReason":"end_turn"}"#),
        ])
        .await;
        assert_eq!(
            out,
            "event messageStart {\"role\":\"assistant\"}\nevent messageStop {\"stopReason\":\"end_turn\"}\ndone\n"
        );
    }
}
