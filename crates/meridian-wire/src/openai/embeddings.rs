//! OpenAI `POST /v1/embeddings` to Bedrock embedding models and back.
//!
//! Amazon Titan Text Embeddings takes one text per InvokeModel call, so a
//! request with several inputs becomes one call per input (the gateway runs
//! them as one request: same plan, one deadline, one record); the answers
//! come back in input order. `encoding_format: "base64"` (the OpenAI SDKs'
//! default) returns little-endian `f32`s, base64-encoded, as OpenAI does.

use base64::Engine;
use serde_json::{Value, json};

use super::OpenAiError;

/// Most inputs one request may carry (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// A parsed embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    /// The model asked for.
    pub model: String,
    /// The texts, in order.
    pub inputs: Vec<String>,
    /// Vector size asked for.
    pub dimensions: Option<u64>,
    /// Whether vectors go back base64-encoded.
    pub base64: bool,
}

/// Parses an OpenAI embeddings request.
pub fn parse(req: &Value) -> Result<EmbeddingRequest, OpenAiError> {
    let model = req["model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| OpenAiError::invalid("model", "'model' is required"))?;
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    OpenAiError::invalid(
                        "input",
                        "inputs must be strings; token arrays are not supported",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(OpenAiError::invalid(
                "input",
                "'input' must be a string or a non-empty list of strings",
            ));
        }
    };
    if inputs.len() > MAX_INPUTS {
        return Err(OpenAiError::invalid(
            "input",
            format!("at most {MAX_INPUTS} inputs per request"),
        ));
    }
    if inputs.iter().any(String::is_empty) {
        return Err(OpenAiError::invalid("input", "inputs must not be empty"));
    }
    let base64 = match req["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                format!("'{other}' is not an encoding; use float or base64"),
            ));
        }
    };
    Ok(EmbeddingRequest {
        model: model.to_string(),
        inputs,
        dimensions: req["dimensions"].as_u64(),
        base64,
    })
}

/// Whether Meridian can translate embeddings for this base model.
pub fn supported(base_model_id: &str) -> bool {
    base_model_id.starts_with("amazon.titan-embed-text")
}

/// The InvokeModel bodies for `req`, one per input (Titan's rule).
pub fn bodies(req: &EmbeddingRequest) -> Vec<Value> {
    req.inputs
        .iter()
        .map(|text| {
            let mut b = json!({"inputText": text, "normalize": true});
            if let Some(d) = req.dimensions {
                b["dimensions"] = json!(d);
            }
            b
        })
        .collect()
}

fn encode(vector: &[Value]) -> String {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for x in vector {
        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// OpenAI's answer from the model's answers, in input order.
pub fn response(req: &EmbeddingRequest, answers: &[Value], model: &str) -> Value {
    let mut tokens = 0;
    let data: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            tokens += a["inputTextTokenCount"].as_u64().unwrap_or(0);
            let v = a["embedding"].as_array().map_or(&[][..], Vec::as_slice);
            let embedding = if req.base64 {
                json!(encode(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model,
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_per_input_and_answers_keep_their_order() {
        let req = parse(&json!({"model": "e", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64"})).unwrap();
        let b = bodies(&req);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            json!({"inputText": "b", "normalize": true, "dimensions": 256})
        );
        let answers = [
            json!({"embedding": [1.0, 0.0], "inputTextTokenCount": 1}),
            json!({"embedding": [0.5, -0.5], "inputTextTokenCount": 2}),
        ];
        let out = response(&req, &answers, "e");
        assert_eq!(out["usage"]["prompt_tokens"], 3);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(out["data"][1]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, [0.5, -0.5]);
        assert_eq!(out["data"][1]["index"], 1);

        for bad in [
            json!({"model": "e", "input": []}),
            json!({"model": "e", "input": [[1, 2]]}),
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
