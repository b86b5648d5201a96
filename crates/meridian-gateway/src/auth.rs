//! Inbound authentication: SigV4 verified against configured credentials, or
//! a configured API key as a bearer token. With neither configured, requests
//! are accepted unverified (a later issue adds tenants and keys).

use meridian_wire::sigv4::{self, Rules, Secret};
use meridian_wire::{BedrockError, ErrorKind};

use crate::state::AppState;

/// Who the caller is, as far as Meridian knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nothing is enforced.
    Anonymous,
    /// A verified SigV4 access key.
    AccessKey(String),
    /// A configured API key (index, never the key).
    ApiKey(usize),
}

/// Checks the request's credentials.
pub fn authenticate(
    state: &AppState,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Caller, BedrockError> {
    let auth = &state.config.auth;
    if !auth.is_enforced() {
        return Ok(Caller::Anonymous);
    }
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(token) = header.strip_prefix("Bearer ") {
        return auth
            .api_keys
            .iter()
            .position(|k| k.as_bytes() == token.trim().as_bytes())
            .map(Caller::ApiKey)
            .ok_or_else(|| {
                BedrockError::new(
                    ErrorKind::AccessDenied,
                    "The API key is not valid for this Meridian.",
                )
            });
    }
    let req = sigv4::Request::from_parts(parts, body);
    let lookup = |key: &str| {
        auth.credentials
            .iter()
            .find(|c| c.access_key_id == key)
            .map(|c| Secret {
                secret_access_key: c.secret_access_key.clone(),
                session_token: None,
            })
    };
    sigv4::verify(&req, &Rules::bedrock(), lookup).map(|v| Caller::AccessKey(v.access_key_id))
}
