//! AWS event-stream framing (`application/vnd.amazon.eventstream`), on top of
//! `aws-smithy-eventstream`.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// The content type of event-stream responses.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// What a frame is, from its `:message-type` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// `:message-type: event`, with its `:event-type`.
    Event(String),
    /// `:message-type: exception`, with its `:exception-type`.
    Exception(String),
    /// Anything else (clients must reject it).
    Other(String),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Event or exception, with its type.
    pub kind: FrameKind,
    /// The payload bytes (JSON for Bedrock).
    pub payload: Bytes,
}

/// A frame that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("eventstream: {0}")]
pub struct FrameError(String);

impl FrameError {
    pub(crate) fn new(why: String) -> FrameError {
        FrameError(why)
    }
}

fn encode(headers: [(&'static str, String); 3], payload: &[u8]) -> Bytes {
    let mut message = Message::new(Bytes::copy_from_slice(payload));
    for (name, value) in headers {
        message = message.add_header(Header::new(name, HeaderValue::String(value.into())));
    }
    let mut out = BytesMut::with_capacity(payload.len() + 128);
    // Writing to a growable buffer only fails on oversized headers, which
    // these fixed names cannot produce.
    if write_message_to(&message, &mut out).is_err() {
        return Bytes::new();
    }
    out.freeze()
}

/// An `event` frame with JSON payload.
pub fn event(event_type: &str, payload: &[u8]) -> Bytes {
    encode(
        [
            (":event-type", event_type.to_string()),
            (":content-type", "application/json".to_string()),
            (":message-type", "event".to_string()),
        ],
        payload,
    )
}

/// An `exception` frame: the stream's last frame when it fails after the first byte.
pub fn exception(exception_type: &str, payload: &[u8]) -> Bytes {
    encode(
        [
            (":exception-type", exception_type.to_string()),
            (":content-type", "application/json".to_string()),
            (":message-type", "exception".to_string()),
        ],
        payload,
    )
}

/// Incremental decoder: feed it bytes as they arrive, take frames out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    inner: MessageFrameDecoder,
}

impl Decoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match self.inner.decode_frame(&mut self.buf) {
            Ok(DecodedFrame::Incomplete) => Ok(None),
            Ok(DecodedFrame::Complete(message)) => Ok(Some(frame_of(&message)?)),
            Err(e) => Err(FrameError(e.to_string())),
        }
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.remaining()
    }
}

/// Decodes exactly one frame from a complete buffer.
pub fn decode_one(mut bytes: &[u8]) -> Result<Frame, FrameError> {
    let message = aws_smithy_eventstream::frame::read_message_from(&mut bytes)
        .map_err(|e| FrameError(e.to_string()))?;
    frame_of(&message)
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

fn frame_of(message: &Message) -> Result<Frame, FrameError> {
    let kind = match header(message, ":message-type") {
        Some("event") => FrameKind::Event(
            header(message, ":event-type")
                .unwrap_or_default()
                .to_string(),
        ),
        Some("exception") => FrameKind::Exception(
            header(message, ":exception-type")
                .unwrap_or_default()
                .to_string(),
        ),
        Some(other) => FrameKind::Other(other.to_string()),
        None => FrameKind::Other(String::new()),
    };
    Ok(Frame {
        kind,
        payload: message.payload().clone(),
    })
}

/// Splits a byte stream into whole frames by their length prelude, without
/// decoding or copying them, so a proxy forwards only complete frames and can
/// end a broken stream cleanly with an exception frame.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    buf: BytesMut,
}

/// Frames over this size are refused (botocore's payload limit plus headers).
pub const MAX_FRAME: usize = 24 * 1024 * 1024 + 128 * 1024 + 16;

impl FrameSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's bytes, if buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if !(16..=MAX_FRAME).contains(&len) {
            return Err(FrameError(format!("frame length {len} is out of range")));
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let frame = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // Drained: the frame handed out holds the buffer now, and frees
            // it when it goes. A stream waits between frames (for a live
            // one, most of its life) without a buffer of its own.
            self.buf = BytesMut::new();
        }
        Ok(Some(frame))
    }

    /// Bytes of an incomplete frame still buffered.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_drained_splitter_holds_no_buffer() {
        let a = event("contentBlockDelta", br#"{"delta":{"text":"a"}}"#);
        let b = event("contentBlockDelta", br#"{"delta":{"text":"bb"}}"#);
        let mut s = FrameSplitter::new();
        // The first frame and part of the second, then the rest.
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        s.push(&both[..a.len() + 5]);
        assert_eq!(s.next_frame().unwrap().unwrap(), a);
        assert_eq!(s.next_frame().unwrap(), None);
        assert_eq!(s.pending(), 5);
        assert!(s.buf.capacity() > 0, "a part frame is kept");
        s.push(&both[a.len() + 5..]);
        assert_eq!(s.next_frame().unwrap().unwrap(), b);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.buf.capacity(), 0, "a drained splitter keeps no room");
        assert_eq!(s.next_frame().unwrap(), None);
    }
}
