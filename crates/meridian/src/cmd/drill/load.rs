//! Open-loop load: request `i` is due at `start + i / rate` whether or not
//! earlier ones have finished, and its latency is measured from when it was
//! due, so a slow gateway cannot hide its queueing (no coordinated omission).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meridian_wire::eventstream::{Decoder, FrameKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Longest a drill request may take before the client gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was due, seconds after the load started.
    pub due_s: f64,
    /// From due to the last byte, ms.
    pub latency_ms: f64,
    /// From due to the first event (streams only), ms.
    pub ttft_ms: Option<f64>,
    /// ConverseStream rather than Converse.
    pub streaming: bool,
    /// `x-meridian-region` of the answer.
    pub region: Option<String>,
    /// `x-meridian-attempts`.
    pub attempts: u32,
    /// Whether a hedge was sent (from `x-meridian-route`).
    pub hedged: bool,
    /// Whether the first attempt did not serve it.
    pub rerouted: bool,
    /// The error type the client got, if it failed.
    pub failure: Option<String>,
    /// The error message, if it failed.
    pub message: Option<String>,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Gateway base URL.
    pub base: String,
    /// Model name.
    pub model: String,
    /// `x-meridian-residency` to send.
    pub residency: Option<String>,
    /// Requests per second.
    pub rate: f64,
    /// From each time on (seconds), the rate as a factor of `rate`.
    pub shape: Vec<(f64, f64)>,
    /// Seconds of load.
    pub duration_s: f64,
    /// Tokens each request may generate.
    pub max_tokens: u32,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Drives the load; returns every request's sample, in due order.
pub async fn drive(traffic: &Traffic, start: Instant) -> Vec<Sample> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let dues = due_times(traffic);
    let mut set = JoinSet::new();
    let mut out: Vec<(u64, Sample)> = Vec::with_capacity(dues.len());
    for (i, at) in dues.into_iter().enumerate() {
        let i = i as u64;
        let due = start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due).await;
        let (client, t) = (client.clone(), traffic.clone());
        set.spawn(async move { (i, one(&client, &t, i, due, start).await) });
        // Reap finished tasks as we go so the set stays small.
        while let Some(r) = set.try_join_next() {
            if let Ok(s) = r {
                out.push(s);
            }
        }
    }
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            out.push(s);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, s)| s).collect()
}

/// When each request is due, in seconds: evenly spaced at the rate the
/// shape gives for each stretch of time.
fn due_times(t: &Traffic) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stretches = t.shape.clone();
    stretches.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (k, &(from, factor)) in stretches.iter().enumerate() {
        let to = stretches
            .get(k + 1)
            .map_or(t.duration_s, |n| n.0)
            .min(t.duration_s);
        let rate = t.rate * factor;
        if rate <= 0.0 || to <= from {
            continue;
        }
        let n = ((to - from) * rate).round() as u64;
        out.extend((0..n).map(|i| from + i as f64 / rate));
    }
    out
}

async fn one(client: &HttpClient, t: &Traffic, i: u64, due: Instant, start: Instant) -> Sample {
    let streaming = i % 2 == 1;
    let mut s = Sample {
        due_s: due.saturating_duration_since(start).as_secs_f64(),
        latency_ms: 0.0,
        ttft_ms: None,
        streaming,
        region: None,
        attempts: 0,
        hedged: false,
        rerouted: false,
        failure: None,
        message: None,
    };
    let outcome = tokio::time::timeout(CLIENT_TIMEOUT, send(client, t, i, due, &mut s)).await;
    if outcome.is_err() {
        s.failure = Some("client-timeout".into());
    }
    s.latency_ms = due.elapsed().as_secs_f64() * 1000.0;
    s
}

async fn send(client: &HttpClient, t: &Traffic, i: u64, due: Instant, s: &mut Sample) {
    let op = if s.streaming {
        "converse-stream"
    } else {
        "converse"
    };
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": [{"text": format!("Drill request {i}: report the fleet's state in one line.")}]}],
        "inferenceConfig": {"maxTokens": t.max_tokens},
    });
    let mut req = http::Request::post(format!("{}/model/{}/{op}", t.base, t.model))
        .header("content-type", "application/json");
    if let Some(r) = &t.residency {
        req = req.header("x-meridian-residency", r.as_str());
    }
    let Ok(req) = req.body(Full::new(Bytes::from(body.to_string()))) else {
        s.failure = Some("bad-request".into());
        return;
    };
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            s.failure = Some("transport".into());
            s.message = Some(e.to_string());
            return;
        }
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    s.region = header("x-meridian-region");
    s.attempts = header("x-meridian-attempts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let route = header("x-meridian-route").unwrap_or_default();
    s.hedged = route.contains("hedge:");
    s.rerouted = route
        .split(',')
        .next()
        .is_some_and(|first| !first.ends_with(":success"));
    let status = resp.status();
    let error_type = header("x-amzn-errortype");
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        s.failure = Some(
            error_type
                .map(|e| e.split(':').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| format!("http-{}", status.as_u16())),
        );
        s.message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .map(str::to_string);
        return;
    }
    if !s.streaming {
        match body.collect().await {
            Ok(b) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&b.to_bytes()).unwrap_or_default();
                if v.pointer("/output/message").is_none() {
                    s.failure = Some("bad-response".into());
                }
            }
            Err(e) => {
                s.failure = Some("transport".into());
                s.message = Some(e.to_string());
            }
        }
        return;
    }
    let mut decoder = Decoder::new();
    let mut stopped = false;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    decoder.push(&data);
                }
            }
            Some(Err(e)) => {
                s.failure = Some("stream-broken".into());
                s.message = Some(e.to_string());
                return;
            }
            None => break,
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => match f.kind {
                    FrameKind::Event(kind) => {
                        if s.ttft_ms.is_none() {
                            s.ttft_ms = Some(due.elapsed().as_secs_f64() * 1000.0);
                        }
                        stopped |= kind == "messageStop";
                    }
                    FrameKind::Exception(kind) | FrameKind::Other(kind) => {
                        s.failure = Some(format!("stream:{kind}"));
                        s.message = Some(String::from_utf8_lossy(&f.payload).into_owned());
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    s.failure = Some("stream-malformed".into());
                    s.message = Some(e.to_string());
                    return;
                }
            }
        }
    }
    if !stopped {
        s.failure = Some("stream-incomplete".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shaped_load_is_due_at_each_stretch_rate() {
        let t = Traffic {
            base: String::new(),
            model: String::new(),
            residency: None,
            rate: 30.0,
            shape: vec![(0.0, 1.0 / 3.0), (2.0, 1.0), (4.0, 1.0 / 3.0)],
            duration_s: 6.0,
            max_tokens: 1,
        };
        let due = due_times(&t);
        assert_eq!(due.len(), 20 + 60 + 20);
        assert!(due.windows(2).all(|w| w[0] < w[1]), "in time order");
        assert_eq!(due.iter().filter(|d| (2.0..4.0).contains(*d)).count(), 60);
        assert!(due.iter().all(|d| *d < 6.0));
    }
}
