//! Routing building blocks, deterministic on tokio's clock so every one is
//! tested on a paused clock: circuit breakers, a fleet-wide retry budget,
//! backoff with full jitter, peak-EWMA latency, and quota estimates learned
//! from throttles. The planner and strategies that use them come next.

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod ewma;
pub mod health;
pub mod quota;
