//! Bedrock Runtime and OpenAI wire formats: eventstream framing, error shapes,
//! operation routing from raw paths, Converse validation and translation.
//!
//! Pure: no I/O, no routing. Request and response bodies stay
//! `serde_json::Value` wherever Meridian does not need to look inside, so
//! fields it does not know pass through untouched.

pub mod civil;
pub mod control;
pub mod converse;
pub mod error;
pub mod eventstream;
pub mod messages;
pub mod openai;
pub mod operation;
pub mod sigv4;

pub use error::{BedrockError, ErrorKind};
pub use operation::Operation;
