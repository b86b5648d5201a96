//! OpenAI `POST /v1/embeddings` to Bedrock embedding models and back.
//!
//! Each model's batching rule decides the InvokeModel calls: Amazon Titan
//! Text Embeddings takes one text per call, Cohere Embed up to 96 `texts`.
//! The gateway runs a request's calls as one request (same plan, one
//! deadline, one record); the vectors come back in input order. `encoding_format: "base64"` (the OpenAI SDKs'
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

/// Most texts Cohere Embed takes in one InvokeModel call.
pub const COHERE_BATCH: usize = 96;

/// Whether Meridian can translate embeddings for this base model.
pub fn supported(base_model_id: &str) -> bool {
    base_model_id.starts_with("amazon.titan-embed-text") || is_cohere(base_model_id)
}

fn is_cohere(base_model_id: &str) -> bool {
    base_model_id.starts_with("cohere.embed")
}

/// The InvokeModel bodies for `req` under the model's batching rule: one
/// per input for Titan, up to 96 inputs each for Cohere (as documents for
/// search, answered as floats). `dimensions` is refused by the models that
/// have no such setting (Cohere Embed v3).
pub fn bodies(req: &EmbeddingRequest, base_model_id: &str) -> Result<Vec<Value>, OpenAiError> {
    if !is_cohere(base_model_id) {
        return Ok(req
            .inputs
            .iter()
            .map(|text| {
                let mut b = json!({"inputText": text, "normalize": true});
                if let Some(d) = req.dimensions {
                    b["dimensions"] = json!(d);
                }
                b
            })
            .collect());
    }
    let v4 = base_model_id.starts_with("cohere.embed-v4");
    if req.dimensions.is_some() && !v4 {
        return Err(OpenAiError::invalid(
            "dimensions",
            format!("{base_model_id} has a fixed vector size; leave 'dimensions' out"),
        ));
    }
    Ok(req
        .inputs
        .chunks(COHERE_BATCH)
        .map(|texts| {
            let mut b = json!({"texts": texts, "input_type": "search_document",
                               "embedding_types": ["float"]});
            if let Some(d) = req.dimensions {
                b["output_dimension"] = json!(d);
            }
            b
        })
        .collect())
}

/// The vectors of one answer: Titan's `embedding`, or Cohere's
/// `embeddings` (a list, or by type under `float`).
fn vectors(answer: &Value) -> Vec<&[Value]> {
    if let Some(v) = answer["embedding"].as_array() {
        return vec![v.as_slice()];
    }
    let list = match &answer["embeddings"] {
        Value::Array(a) => a,
        by_type => by_type["float"].as_array().map_or(&[][..], Vec::as_slice),
    };
    list.iter()
        .map(|v| v.as_array().map_or(&[][..], Vec::as_slice))
        .collect()
}

fn encode(vector: &[Value]) -> String {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for x in vector {
        bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// OpenAI's answer from the model's answers, in input order. `counted`:
/// the input tokens Bedrock's headers gave, for answers whose bodies do not
/// count them (Cohere's).
pub fn response(
    req: &EmbeddingRequest,
    answers: &[Value],
    model: &str,
    counted: Option<u64>,
) -> Value {
    let mut tokens: u64 = answers
        .iter()
        .filter_map(|a| a["inputTextTokenCount"].as_u64())
        .sum();
    if tokens == 0 {
        tokens = counted.unwrap_or(0);
    }
    let data: Vec<Value> = answers
        .iter()
        .flat_map(vectors)
        .enumerate()
        .map(|(i, v)| {
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
        let b = bodies(&req, "amazon.titan-embed-text-v2:0").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            json!({"inputText": "b", "normalize": true, "dimensions": 256})
        );
        let answers = [
            json!({"embedding": [1.0, 0.0], "inputTextTokenCount": 1}),
            json!({"embedding": [0.5, -0.5], "inputTextTokenCount": 2}),
        ];
        let out = response(&req, &answers, "e", Some(99));
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

    #[test]
    fn cohere_takes_up_to_96_texts_per_call_and_answers_in_order() {
        let inputs: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
        let req = parse(&json!({"model": "c", "input": inputs})).unwrap();
        let b = bodies(&req, "cohere.embed-multilingual-v3").unwrap();
        let sizes: Vec<usize> = b
            .iter()
            .map(|x| x["texts"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [96, 96, 8]);
        assert_eq!(b[2]["texts"][0], "t192");
        assert_eq!(b[0]["input_type"], "search_document");
        // v3 has a fixed size; v4 takes output_dimension.
        let sized = parse(&json!({"model": "c", "input": "x", "dimensions": 256})).unwrap();
        assert!(bodies(&sized, "cohere.embed-english-v3").is_err());
        assert_eq!(
            bodies(&sized, "cohere.embed-v4:0").unwrap()[0]["output_dimension"],
            256
        );
        // Both answer shapes, vectors numbered across calls; tokens from the headers.
        let small = parse(&json!({"model": "c", "input": ["a", "b", "c"]})).unwrap();
        let answers = [
            json!({"embeddings": [[1.0], [2.0]], "response_type": "embeddings_floats"}),
            json!({"embeddings": {"float": [[3.0]]}, "response_type": "embeddings_by_type"}),
        ];
        let out = response(&small, &answers, "c", Some(7));
        let got: Vec<(u64, f64)> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["index"].as_u64().unwrap(),
                    d["embedding"][0].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(0, 1.0), (1, 2.0), (2, 3.0)]);
        assert_eq!(out["usage"]["prompt_tokens"], 7);
    }
}
