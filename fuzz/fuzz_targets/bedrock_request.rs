//! A Bedrock Runtime request as the gateway decodes it: the raw path, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_wire::{Operation, converse};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (path, body) = data.split_at(split);
    if let Ok(path) = std::str::from_utf8(path) {
        for method in ["POST", "GET"] {
            let _ = Operation::from_request(method, path);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = converse::validate_request(&v);
        let _ = converse::estimate_input_tokens(&v);
    }
});
