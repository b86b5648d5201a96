//! An OpenAI chat request through translation to Converse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_wire::{converse, openai};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(t) = openai::to_converse(&v)
    {
        let _ = converse::validate_request(&t.converse);
    }
});
