//! Streaming answers: frames paced like a model, cut when a fault says so,
//! capacity released and the record written when the stream ends.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use meridian_wire::eventstream;
use serde_json::json;
use tokio::time::sleep;

use crate::faults::FaultSet;
use crate::generate::{self, Reply};
use crate::native::{self, Dialect};
use crate::record::Record;
use crate::region::{Ctx, Pace, ReleaseGuard};
use crate::rng::Rng;

impl Ctx {
    #[allow(clippy::too_many_arguments)] // one stream, all of its parts
    pub(crate) fn stream(
        &self,
        request_id: &str,
        dialect: Option<Dialect>,
        model_id: &str,
        reply: Reply,
        pace: Pace,
        faults: FaultSet,
        region: String,
        mut release: ReleaseGuard,
        mut record: Option<Record>,
        rng: &mut Rng,
    ) -> Response {
        let total_ms = pace.first_ms + pace.per_token_ms * reply.output_tokens as f64;
        let frames: Vec<(Bytes, u64)> = match dialect {
            None => generate::converse_events(&reply, total_ms as u64)
                .into_iter()
                .map(|(t, mut v, tokens)| {
                    v["p"] = json!(padding(rng));
                    (eventstream::event(t, v.to_string().as_bytes()), tokens)
                })
                .collect(),
            Some(d) => native::stream_chunks(
                d,
                &reply,
                model_id,
                (total_ms as u64, pace.first_ms as u64),
                rng,
            )
            .into_iter()
            .map(|(v, tokens)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
                let payload = json!({"bytes": b64, "p": padding(rng)});
                (
                    eventstream::event("chunk", payload.to_string().as_bytes()),
                    tokens,
                )
            })
            .collect(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let shared = self.shared.clone();
        let output_tokens = reply.output_tokens;
        let input_tokens = reply.input_tokens;
        let tier = reply.service_tier;
        tokio::spawn(async move {
            sleep(Duration::from_millis(pace.first_ms as u64)).await;
            let mut outcome = "success";
            for (i, (frame, tokens)) in frames.into_iter().enumerate() {
                if faults.cut_after_events.is_some_and(|n| i as u32 >= n) {
                    let _ = tx
                        .send(Err(std::io::Error::other("simulated cut mid-stream")))
                        .await;
                    outcome = "cut";
                    break;
                }
                if tx.send(Ok(frame)).await.is_err() {
                    outcome = "client-gone";
                    break;
                }
                if tokens > 0 {
                    sleep(Duration::from_secs_f64(
                        pace.per_token_ms * tokens as f64 / 1000.0,
                    ))
                    .await;
                }
            }
            release.used = input_tokens + output_tokens;
            drop(release);
            if let Some(mut r) = record.take() {
                r.output_tokens = output_tokens;
                r.outcome = outcome.to_string();
                shared.push_record(r);
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut b = Response::builder()
            .status(200)
            .header("content-type", eventstream::CONTENT_TYPE)
            .header("x-amzn-requestid", request_id)
            .header(crate::INFERENCE_REGION_HEADER, region);
        if dialect.is_some() {
            b = b.header("x-amzn-bedrock-content-type", "application/json");
            if let Some(t) = tier {
                b = b.header(crate::tiers::HEADER, t);
            }
        }
        b.body(Body::from_stream(stream)).unwrap_or_default()
    }
}

fn padding(rng: &mut Rng) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = 1 + (rng.next_u64() % 24) as usize;
    (0..n).map(|i| ALPHA[i % ALPHA.len()] as char).collect()
}
