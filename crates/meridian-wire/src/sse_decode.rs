//! Server-sent events read from an upstream (Bedrock's native Messages and
//! OpenAI endpoints stream them): bytes in as they arrive, whole events out.
//!
//! As the HTML standard's event-stream parser: lines end in `\n`, `\r\n` or
//! `\r`; a blank line dispatches the event; `field: value` with one leading
//! space of the value dropped; `data` lines join with `\n`; lines starting
//! with `:` are comments; other fields are ignored; an event without data is
//! not dispatched. An event larger than the bound is an error, not memory.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the event named one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: Bytes,
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event (or a line) grew past the bound.
    #[error("a server-sent event is larger than {0} bytes")]
    TooLarge(usize),
    /// The stream ended inside an event.
    #[error("the event stream ended inside an event")]
    Truncated,
}

/// An incremental event-stream parser.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for a line end.
    scanned: usize,
    event: Option<String>,
    data: BytesMut,
    has_data: bool,
    max: usize,
    /// A `\r` ended the last line: a `\n` right after it belongs to it.
    after_cr: bool,
}

impl SseDecoder {
    /// A parser that refuses events over `max` bytes.
    pub fn new(max: usize) -> SseDecoder {
        SseDecoder {
            buf: BytesMut::new(),
            scanned: 0,
            event: None,
            data: BytesMut::new(),
            has_data: false,
            max,
            after_cr: false,
        }
    }

    /// Adds bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole event, `None` until one is complete.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            if self.after_cr && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    let _ = self.buf.split_to(1);
                }
                self.after_cr = false;
            }
            let Some(end) = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| i + self.scanned)
            else {
                self.scanned = self.buf.len();
                if self.buf.len() + self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
                return Ok(None);
            };
            let line = self.buf.split_to(end + 1);
            self.scanned = 0;
            self.after_cr = line[end] == b'\r';
            if let Some(e) = self.line(&line[..end])? {
                return Ok(Some(e));
            }
        }
    }

    /// Says the stream ended: an error if it ended inside an event.
    pub fn finish(&self) -> Result<(), SseError> {
        if self.has_data || !self.buf.is_empty() {
            return Err(SseError::Truncated);
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            return Ok(Some(SseEvent {
                event,
                data: self.data.split().freeze(),
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.extend_from_slice(b"\n");
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn all(d: &mut SseDecoder) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = d.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn the_standards_cases() {
        let mut d = SseDecoder::new(1 << 20);
        d.push(b": a comment\nevent: message_start\ndata: {\"a\":1}\n\n");
        d.push(b"data:no space\r\ndata:  two spaces\r\n\r\n");
        d.push(b"event: ping\n\n"); // no data: not dispatched
        d.push(b"id: 7\nretry: 10\ndata\n\n"); // a field without a colon: empty value
        d.push(b"data: cr only\r\r");
        assert_eq!(
            all(&mut d),
            vec![
                ev(Some("message_start"), "{\"a\":1}"),
                ev(None, "no space\n two spaces"),
                ev(None, ""),
                ev(None, "cr only"),
            ]
        );
        assert!(d.finish().is_ok());
        d.push(b"data: half");
        assert!(all(&mut d).is_empty());
        assert_eq!(d.finish(), Err(SseError::Truncated));
    }

    #[test]
    fn an_event_past_the_bound_is_an_error_not_memory() {
        let mut d = SseDecoder::new(64);
        d.push(b"data: ");
        d.push(&[b'x'; 100]);
        assert_eq!(d.next_event(), Err(SseError::TooLarge(64)));
        let mut d = SseDecoder::new(64);
        for _ in 0..10 {
            d.push(b"data: 0123456789\n");
        }
        assert!(matches!(
            (0..10).map(|_| d.next_event()).find(Result::is_err),
            Some(Err(SseError::TooLarge(64)))
        ));
    }

    proptest! {
        /// Events encoded with any line ending, cut anywhere, read back whole.
        #[test]
        fn events_cut_anywhere_read_back_whole(
            events in proptest::collection::vec(
                (proptest::option::of("[a-z_]{1,12}"), proptest::collection::vec("[^\r\n]{0,20}", 1..4)),
                0..8),
            ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut wire = String::new();
            let mut want = Vec::new();
            for (name, lines) in &events {
                if let Some(n) = name {
                    wire.push_str(&format!("event: {n}{ending}"));
                }
                for l in lines {
                    wire.push_str(&format!("data: {l}{ending}"));
                }
                wire.push_str(ending);
                // One leading space of a value is the separator's.
                let data: Vec<&str> = lines.iter().map(String::as_str).collect();
                want.push(ev(name.as_deref(), &data.join("\n")));
            }
            let bytes = wire.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let mut d = SseDecoder::new(1 << 20);
            let mut got = Vec::new();
            for w in points.windows(2) {
                d.push(&bytes[w[0]..w[1]]);
                got.extend(all(&mut d));
            }
            prop_assert_eq!(got, want);
            prop_assert!(d.finish().is_ok());
        }
    }
}
