//! The guard-input stage: the tenant's and the model's guards read every
//! body that goes upstream (inside its envelope, where the front door said
//! the body carries its content base64-encoded), or the request does not go.

use bytes::Bytes;

use crate::canonical::Call;
use crate::guard::{Blocked, Direction, Session};

/// Guard input on the body (and any further bodies) sent upstream.
pub(super) fn guard_input(g: &mut Session, call: &mut Call) -> Result<(), Blocked> {
    if let Some(pointer) = call.envelope
        && let Some(v) = enveloped(g, &call.body, pointer)?
    {
        call.body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        call.json = Some(v);
    }
    if let Some((body, json)) = g.body(&call.body, Direction::Input)? {
        call.body = body;
        call.json = Some(json);
    }
    // The client's own request, for an endpoint that takes it as it is.
    if let Some(o) = &mut call.openai
        && let Some((body, _)) = g.body(&o.body, Direction::Input)?
    {
        o.body = body;
    }
    for b in &mut call.more {
        if let Some((body, _)) = g.body(b, Direction::Input)? {
            *b = body;
        }
    }
    Ok(())
}

/// A body whose base64 content at `pointer` the guard changed; `None` when
/// it did not (or the body has nothing there: the whole body is still read).
fn enveloped(
    g: &mut Session,
    body: &[u8],
    pointer: &str,
) -> Result<Option<serde_json::Value>, Blocked> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(None);
    };
    let Some(slot) = v.pointer_mut(pointer) else {
        return Ok(None);
    };
    let Some(encoded) = slot.as_str() else {
        return Ok(None);
    };
    let Ok(inner) = b64.decode(encoded) else {
        return Err(Blocked::unreadable(
            Direction::Input,
            format!("a body at {pointer} that is not base64"),
        ));
    };
    match g.body(&inner, Direction::Input)? {
        Some((guarded, _)) => {
            *slot = serde_json::Value::String(b64.encode(&guarded));
            Ok(Some(v))
        }
        None => Ok(None),
    }
}
