//! The gateway: an axum server speaking the Bedrock Runtime API (and the
//! control-plane reads LangChain needs) in front of Bedrock regions.
//!
//! One pipeline per request, a module per stage: decode → authenticate →
//! plan (catalog + residency) → execute attempts → encode. Routing beyond
//! "next allowed target on a retryable failure" belongs to meridian-router.

mod auth;
mod bedrock;
mod control_plane;
mod execute;
mod openai;
mod respond;
mod server;
mod state;
mod status;

pub use server::{ServeOptions, router, serve};
pub use state::{AppState, UpstreamInfo};

/// Response header naming the region that served the request.
pub const REGION_HEADER: &str = "x-meridian-region";
/// Response header counting upstream attempts.
pub const ATTEMPTS_HEADER: &str = "x-meridian-attempts";
/// Request header that narrows the residency policy (comma-separated terms).
pub const RESIDENCY_HEADER: &str = "x-meridian-residency";
