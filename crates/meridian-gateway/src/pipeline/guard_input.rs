//! The guard-input stage: the tenant's and the model's guards read every
//! body that goes upstream (CountTokens' base64 body inside), or the request
//! does not go.

use bytes::Bytes;
use meridian_wire::Action;

use crate::canonical::Call;

/// Guard input on the body (and any further bodies) sent upstream.
pub(super) fn guard_input(
    g: &mut crate::guard::Session,
    call: &mut Call,
) -> Result<(), crate::guard::Blocked> {
    use crate::guard::Direction;
    if call.action == Action::CountTokens {
        // CountTokens carries an InvokeModel body as base64: guard it inside.
        if let Some(v) = count_tokens_input(g, &call.body)? {
            call.body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            call.json = Some(v);
        }
    }
    if let Some((body, json)) = g.body(&call.body, Direction::Input)? {
        call.body = body;
        call.json = Some(json);
    }
    for b in &mut call.more {
        if let Some((body, _)) = g.body(b, Direction::Input)? {
            *b = body;
        }
    }
    Ok(())
}

/// A CountTokens body whose `input.invokeModel.body` (base64 of a native
/// body) the guard changed; `None` when it did not.
fn count_tokens_input(
    g: &mut crate::guard::Session,
    body: &[u8],
) -> Result<Option<serde_json::Value>, crate::guard::Blocked> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(None);
    };
    let Some(encoded) = v["input"]["invokeModel"]["body"].as_str() else {
        return Ok(None);
    };
    let Ok(inner) = b64.decode(encoded) else {
        return Err(crate::guard::Blocked::unreadable(
            crate::guard::Direction::Input,
            "an invokeModel body that is not base64".into(),
        ));
    };
    match g.body(&inner, crate::guard::Direction::Input)? {
        Some((guarded, _)) => {
            v["input"]["invokeModel"]["body"] = serde_json::Value::String(b64.encode(&guarded));
            Ok(Some(v))
        }
        None => Ok(None),
    }
}
