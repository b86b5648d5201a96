//! The fleet's own record of every request: the ground truth for residency.

use serde::{Deserialize, Serialize};

/// One request as the fleet saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Order of arrival across the fleet.
    pub seq: u64,
    /// The request ID the fleet answered with.
    pub request_id: String,
    /// Region whose endpoint was called.
    pub endpoint_region: String,
    /// Region that processed it, when one did.
    pub inference_region: Option<String>,
    /// Model ID from the path.
    pub model_id: String,
    /// Operation name.
    pub operation: String,
    /// `success` or the error shape name, or `cut` for a broken stream.
    pub outcome: String,
    /// Input tokens counted.
    pub input_tokens: u64,
    /// Output tokens produced.
    pub output_tokens: u64,
    /// The service tier that served it, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// The text the model was given — system prompts, message texts and
    /// tool results, one per line (the first 4 KiB) — so a test can see what
    /// a gateway let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// Most bytes of a prompt kept in a record.
const PROMPT_MAX: usize = 4096;

/// The texts of a Converse-shaped request (or an embedding body), one per
/// line, at most [`PROMPT_MAX`] bytes.
pub fn prompt_of(conv: &serde_json::Value, native: &serde_json::Value) -> String {
    fn texts(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("text" | "inputText", serde_json::Value::String(s)) => out.push(s.clone()),
                        ("texts", serde_json::Value::Array(a)) => {
                            out.extend(a.iter().filter_map(|t| t.as_str().map(str::to_string)));
                        }
                        ("json", j) => out.push(j.to_string()),
                        _ => texts(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if conv.is_null() {
        texts(native, &mut out);
    } else {
        texts(&conv["system"], &mut out);
        texts(&conv["messages"], &mut out);
    }
    let mut s = out.join("\n");
    if s.len() > PROMPT_MAX {
        let mut cut = PROMPT_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
