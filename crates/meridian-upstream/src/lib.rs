//! Upstream clients: Bedrock (SigV4 or bearer, per region and account) and
//! OpenAI-compatible servers, with one outcome classification for both.
//!
//! This crate calls where it is told to; deciding where is the router's job.

pub mod aws_chain;
pub mod bedrock;
pub mod openai_compat;
pub mod outcome;
pub mod s3;
pub mod sign;
pub mod socket;

pub use bedrock::{
    Auth, BedrockClient, Call, CredentialSource, Endpoints, Failure, Response, ResponseBody, Route,
    StaticCredentials, Timeouts,
};
pub use outcome::{Outcome, OutcomeClass};
