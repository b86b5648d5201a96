//! The gateway: an axum server speaking the Bedrock Runtime API (and the
//! control-plane reads LangChain needs) in front of Bedrock regions.
//!
//! One pipeline for every front door (`pipeline/`), a function per stage;
//! front doors (`bedrock.rs`, `openai.rs`) are adapters that decode into the
//! canonical request (`canonical.rs`) and encode answers back.

mod account;
mod admin;
mod anthropic;
mod auth;
pub mod batch;
mod batch_store;
mod bedrock;
mod bounded;
pub mod breaker_share;
mod cache;
mod canonical;
pub mod catalog_refresh;
pub mod conn;
mod control_plane;
mod drills;
mod execute;
pub mod guard;
pub mod invocation;
pub mod keys;
pub mod limits;
mod live;
pub mod metrics;
mod openai;
mod park;
mod pipeline;
mod plan;
pub mod reload;
mod respond;
mod responses;
mod responses_store;
mod server;
mod sse;
mod state;
mod status;
mod summary;
mod tenancy;
pub mod tls;
pub mod traces;
mod traffic;
mod ui;
mod usage;

pub use live::Live;
pub use server::{ServeOptions, probe_endpoints, router, serve, serve_with};
pub use state::{AppState, ModelReadiness, UpstreamAccount, UpstreamInfo};
pub use status::SIMULATED_BY_FALLBACK;

/// Response header naming the region that served the request.
pub const REGION_HEADER: &str = "x-meridian-region";
/// Response header counting upstream attempts.
pub const ATTEMPTS_HEADER: &str = "x-meridian-attempts";
/// Response header: each attempt as `region:outcome`, comma-separated.
pub const ROUTE_HEADER: &str = "x-meridian-route";
/// Response header naming the upstream account that served the request.
pub const ACCOUNT_HEADER: &str = "x-meridian-account";
/// Response header naming the endpoint surface that served the request
/// (`runtime`, `runtime-messages`, `mantle-messages`, `provider`).
pub const SURFACE_HEADER: &str = "x-meridian-surface";
pub use plan::RESIDENCY_HEADER;
