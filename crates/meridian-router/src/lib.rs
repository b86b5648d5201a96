//! Routing building blocks, deterministic on tokio's clock so every one is
//! tested on a paused clock: circuit breakers, a fleet-wide retry budget,
//! backoff with full jitter, peak-EWMA latency, and quota estimates learned
//! from throttles; and the router that orders a request's candidates with them.
//! Planning is here too, as pure functions over plain data: which candidates
//! a request gets ([`plan`]), their typed identities ([`key`]), and how each
//! is called ([`call`]).

pub mod attempt;
pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod call;
pub mod ewma;
pub mod hash;
pub mod health;
pub mod key;
pub mod plan;
pub mod quota;
pub mod route;

pub use attempt::{Action, AttemptRecord, Attempts, Decision, Failed, Limits, Outcome, Reason};
pub use key::{CandidateKey, KeyId, Surface};
pub use route::{Candidate, Order, Router};
