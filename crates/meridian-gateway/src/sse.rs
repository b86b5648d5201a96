//! Server-sent events from a model's typed event stream: the one loop both
//! SSE front doors (OpenAI, Anthropic) share. Each event is handed to the
//! front door's [`Translate`], which encodes it once; an upstream exception,
//! an event the front door cannot read, or a broken stream ends the stream
//! with the front door's error event. The loop runs in the response body
//! itself: no task of its own.

use std::borrow::Cow;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use meridian_wire::event::{Event, Kind};
use meridian_wire::{BedrockError, ErrorKind};
use serde_json::Value;

use crate::execute::Events;

/// How one front door writes an event stream as SSE.
pub trait Translate: Send + 'static {
    /// The SSE chunks for one event.
    fn event(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError>;
    /// The error event for an upstream exception (its member name and
    /// message).
    fn exception(&mut self, member: &str, message: &str) -> Bytes;
    /// The error event for a stream that broke or could not be read.
    fn broken(&mut self, e: &BedrockError) -> Bytes;
    /// What ends a clean stream, if anything.
    fn done(&mut self) -> Option<Bytes> {
        None
    }
    /// Work to finish before the chunks just produced go out (the
    /// Responses door stores a finished response before the client can
    /// read that it finished).
    fn hold(&mut self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
}

/// An event's JSON payload, or the error that ends a stream with an event
/// the front door cannot read (never a `null` chunk).
pub fn payload(ev: &Event) -> Result<Cow<'_, Value>, BedrockError> {
    ev.json().map_err(|e| {
        BedrockError::new(
            ErrorKind::ModelStreamError,
            format!(
                "the upstream sent a {} event that is not JSON: {e}",
                ev.name()
            ),
        )
    })
}

/// An OpenAI event as it goes out: `data:` (and `event:` for a named
/// Responses event) with its JSON text as it came, or as a guard left it.
pub fn data_line(ev: &Event) -> Result<Bytes, BedrockError> {
    let mut out = Vec::with_capacity(64 + ev.text().map_or(256, <[u8]>::len));
    if ev.name() != "chunk" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ev.name().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    match ev.text() {
        Some(t) => out.extend_from_slice(t),
        None => out.extend_from_slice(&meridian_wire::json_bytes(payload(ev)?.as_ref())),
    }
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

/// The SSE body for `events`.
pub fn body(events: Events, t: impl Translate) -> Body {
    let chunks = futures_util::stream::unfold(Some((events, t)), |state| async move {
        let (mut events, mut t) = state?;
        let (out, more) = match events.next().await {
            None => (t.done().into_iter().collect(), false),
            Some(Ok(ev)) if ev.kind() == Kind::Exception => {
                let message = ev.exception_message().unwrap_or_default();
                (vec![t.exception(ev.name(), &message)], false)
            }
            Some(Ok(ev)) => match t.event(&ev) {
                Ok(out) => (out, true),
                Err(e) => (vec![t.broken(&e)], false),
            },
            Some(Err(e)) => (vec![t.broken(&e)], false),
        };
        if let Some(work) = t.hold() {
            work.await;
        }
        Some((out, more.then_some((events, t))))
    })
    .flat_map(|out: Vec<Bytes>| {
        futures_util::stream::iter(out.into_iter().map(Ok::<_, std::io::Error>))
    });
    Body::from_stream(chunks)
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
        fn event(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError> {
            let p = payload(ev)?;
            Ok(vec![Bytes::from(format!("event {} {p}\n", ev.name()))])
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
        let events: Vec<Result<Event, BedrockError>> = frames
            .into_iter()
            .map(|f| Ok(Event::from_frame(f).unwrap()))
            .collect();
        let out = body(Box::pin(futures_util::stream::iter(events)), Echo)
            .collect()
            .await
            .unwrap()
            .to_bytes();
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
