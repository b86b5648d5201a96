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
                    FrameKind::Event(ev) => {
                        let payload: Value =
                            serde_json::from_slice(&frame.payload).unwrap_or_default();
                        t.event(&ev, &payload)
                    }
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
