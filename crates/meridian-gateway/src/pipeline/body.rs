//! The body stages: a declared length over the limit is refused before any
//! of it is read; a body is read whole within its size and time limits; a
//! refused request's body is drained in the background.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use meridian_wire::BedrockError;

use crate::state::AppState;

/// Bytes of a refused request's body read and thrown away, at most.
const DISCARD_MAX: u64 = 64 * 1024 * 1024;

/// Reads a refused request's body and throws it away, in the background,
/// bounded in bytes and time: a client that writes its whole body before
/// reading (most do, without `Expect: 100-continue`) then gets its error
/// instead of a broken pipe. Nothing is kept, and no slot is held.
pub(super) fn discard(state: &AppState, body: Body) {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    if body.size_hint().lower() > DISCARD_MAX {
        return; // closed with the connection: not worth reading
    }
    let limit = Duration::from_millis(state.config.server.body_read_timeout_ms);
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let _ = tokio::time::timeout(limit, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DISCARD_MAX {
                    break;
                }
            }
        })
        .await;
    });
}

/// The error for a `Content-Length` over the body limit (checked before
/// any of the body is read).
pub(super) fn declared_too_long(
    state: &AppState,
    headers: &http::HeaderMap,
) -> Option<BedrockError> {
    let declared: u64 = headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (declared > state.max_body as u64).then(|| {
        BedrockError::validation(format!(
            "The request body ({declared} bytes) is larger than the {} bytes this endpoint accepts.",
            state.max_body
        ))
    })
}

/// Reads the whole body: at most `max_body` bytes, within the configured
/// time (a client that stops sending cannot hold a request open forever).
pub(super) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, BedrockError> {
    let limit = Duration::from_millis(state.config.server.body_read_timeout_ms);
    match tokio::time::timeout(limit, axum::body::to_bytes(body, state.max_body)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BedrockError::validation(format!(
            "The request body is larger than the {} bytes this endpoint accepts, or was cut off.",
            state.max_body
        ))),
        Err(_) => Err(BedrockError::validation(format!(
            "The request body did not arrive within {} ms.",
            limit.as_millis()
        ))),
    }
}
