//! The identify and authenticate stages. Identify runs on the request head
//! alone: a missing or unknown credential, or a wrong API key, is refused
//! before the body is read. Authenticate binds a SigV4 signature to the body
//! that came with it. API keys are compared in constant time.
//!
//! With no `[auth]` configured, requests are accepted unverified.

use meridian_wire::sigv4::{self, Prechecked, Rules, Secret};
use meridian_wire::{BedrockError, ErrorKind};
use subtle::ConstantTimeEq;

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

/// A caller identified from the head, whose signature (if any) is still to
/// be checked against the body.
#[derive(Debug)]
pub enum Identified<'h> {
    /// Known already: anonymous, or an API key.
    Done(Caller),
    /// A SigV4 request from a known key.
    Signed(Prechecked<'h>),
}

/// The identify stage: everything that can be checked without the body.
pub fn identify<'h>(
    state: &AppState,
    headers: &'h http::HeaderMap,
) -> Result<Identified<'h>, BedrockError> {
    let auth = &state.config.auth;
    if !auth.is_enforced() {
        return Ok(Identified::Done(Caller::Anonymous));
    }
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(token) = header.strip_prefix("Bearer ") {
        return api_key(&auth.api_keys, token.trim())
            .map(|i| Identified::Done(Caller::ApiKey(i)))
            .ok_or_else(|| {
                BedrockError::new(
                    ErrorKind::AccessDenied,
                    "The API key is not valid for this Meridian.",
                )
            });
    }
    let lookup = |key: &str| {
        auth.credentials
            .iter()
            .find(|c| c.access_key_id == key)
            .map(|c| Secret {
                secret_access_key: c.secret_access_key.clone(),
                session_token: None,
            })
    };
    sigv4::precheck(headers, &Rules::bedrock(), lookup).map(Identified::Signed)
}

/// The authenticate stage: a signature must cover this very body.
pub fn authenticate(
    identified: Identified<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Caller, BedrockError> {
    match identified {
        Identified::Done(c) => Ok(c),
        Identified::Signed(pre) => {
            let req = sigv4::Request::from_parts(parts, body);
            pre.verify(&req, &Rules::bedrock())
                .map(|v| Caller::AccessKey(v.access_key_id))
        }
    }
}

/// The index of the configured key equal to `token`. Every key is compared,
/// each in constant time, so the time taken says nothing about which key
/// or how much of it matched.
fn api_key(keys: &[String], token: &str) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        if bool::from(k.as_bytes().ct_eq(token.as_bytes())) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_whole_keys_only() {
        let keys = vec![
            "mk-0123456789abcdef".to_string(),
            "mk-fedcba9876543210".to_string(),
        ];
        assert_eq!(api_key(&keys, "mk-fedcba9876543210"), Some(1));
        assert_eq!(api_key(&keys, "mk-0123456789abcde"), None);
        assert_eq!(api_key(&keys, "mk-0123456789abcdef0"), None);
        assert_eq!(api_key(&keys, ""), None);
    }
}
