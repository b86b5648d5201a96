//! OpenAI's Responses API ⇄ Converse, for models Bedrock serves without a
//! Responses endpoint of their own: requests (`instructions`, input items,
//! function tools, `reasoning`, `text.format`) to Converse bodies
//! ([`input`]), answers back as response objects ([`output`]) and stream
//! events back as Responses events ([`stream`]). Reasoning items carry
//! Converse's signed reasoning blocks back to the model ([`reasoning`]).

mod input;
mod output;
mod reasoning;
mod stream;
mod tools;

pub use input::{Input, Request, Translated, to_converse};
pub use output::{Meta, Status, from_converse, items};
pub use stream::Stream;
pub use tools::{ToolName, Tools};

#[cfg(test)]
mod tests;
