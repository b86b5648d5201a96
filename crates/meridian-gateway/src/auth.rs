//! The identify and authenticate stages. Identify runs on the request head
//! alone and finds the caller's tenant: a missing or unknown credential, or
//! a wrong API key, is refused before the body is read. Authenticate binds
//! a SigV4 signature to the body that came with it. API keys are known only
//! by their SHA-256 hashes, compared in constant time.
//!
//! With no `[tenants]` and no `[auth]`, requests are accepted unverified as
//! the implicit tenant.

use std::sync::Arc;

use meridian_config::Tenant;
use meridian_wire::sigv4::{self, Prechecked, Rules, Secret};
use meridian_wire::{BedrockError, ErrorKind};

use crate::state::AppState;

/// The service every Bedrock door's signatures are scoped to.
pub const BEDROCK: &[&str] = &["bedrock"];

/// A caller identified from the head, whose signature (if any) is still to
/// be checked against the body.
#[derive(Debug)]
pub enum Identified<'h> {
    /// Known already: anonymous, or an API key.
    Done(Arc<Tenant>),
    /// A SigV4 request from a known key, and the service it is scoped to.
    Signed(Arc<Tenant>, Prechecked<'h>, &'static str),
}

impl Identified<'_> {
    /// The tenant the head names (a signature still to be verified).
    pub fn tenant(&self) -> &Tenant {
        match self {
            Identified::Done(t) | Identified::Signed(t, ..) => t,
        }
    }
}

fn bad_key() -> BedrockError {
    BedrockError::unauthenticated(
        ErrorKind::AccessDenied,
        "The API key is not valid for this Meridian.",
    )
}

/// The identify stage: everything that can be checked without the body.
/// A SigV4 signature must be scoped to one of `services` (the door's: the
/// first is named when it is not).
pub async fn identify<'h>(
    state: &AppState,
    headers: &'h http::HeaderMap,
    services: &[&'static str],
) -> Result<Identified<'h>, BedrockError> {
    let tenants = &state.tenants;
    if !tenants.enforced() {
        return Ok(Identified::Done(tenants.anonymous()));
    }
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Anthropic's SDKs send their key as `x-api-key`.
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|_| header.is_empty());
    if let Some(token) = header.strip_prefix("Bearer ").or(api_key) {
        let h = crate::keys::hash(token.trim());
        if let Some(t) = tenants.by_key(&h) {
            return Ok(Identified::Done(t));
        }
        return match state.limiter.find_key(&h).await {
            Ok(issued) => issued
                .and_then(|name| tenants.named(&name))
                .map(Identified::Done)
                .ok_or_else(bad_key),
            // Retryable: the key may well be valid.
            Err(_) => Err(BedrockError::new(
                ErrorKind::ServiceUnavailable,
                "The API key cannot be checked: the shared state backend is unreachable; retry shortly.",
            )),
        };
    }
    let mut tenant = None;
    let lookup = |key: &str| {
        tenants.by_access_key(key).map(|(t, secret)| {
            tenant = Some(t);
            Secret {
                secret_access_key: secret.to_string(),
                session_token: None,
            }
        })
    };
    let scoped = sigv4::scoped_service(headers);
    let service = services
        .iter()
        .find(|s| Some(**s) == scoped)
        .or(services.first())
        .copied()
        .unwrap_or("bedrock");
    let pre = sigv4::precheck(headers, &Rules::for_service(service), lookup)?;
    let tenant = tenant.ok_or_else(bad_key)?;
    Ok(Identified::Signed(tenant, pre, service))
}

/// The authenticate stage: a signature must cover this very body.
pub fn authenticate(
    identified: Identified<'_>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Arc<Tenant>, BedrockError> {
    match identified {
        Identified::Done(t) => Ok(t),
        Identified::Signed(t, pre, service) => {
            let req = sigv4::Request::from_parts(parts, body);
            pre.verify(&req, &Rules::for_service(service)).map(|_| t)
        }
    }
}
