//! OpenTelemetry traces over OTLP/HTTP with JSON encoding: one SERVER span
//! per request and one CLIENT span per upstream attempt, with region,
//! account, model and outcome attributes. An incoming W3C `traceparent`
//! makes the request span its child. Off unless `[tracing] otlp_endpoint`
//! is set. Spans are batched (every second, or 256 at a time) and a batch
//! the collector refuses is dropped with a warning: traces are best-effort,
//! unlike the invocation log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Spans waiting for export, at most.
const QUEUE: usize = 8192;
/// Spans per export request, at most.
const BATCH: usize = 256;

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Str(String),
    Int(i64),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// 2 = SERVER, 3 = CLIENT.
    pub kind: u8,
    pub start: SystemTime,
    pub end: SystemTime,
    pub error: bool,
    pub attributes: Vec<(&'static str, Attr)>,
}

/// Hands spans to the exporter task.
#[derive(Debug)]
pub struct Tracer {
    tx: tokio::sync::mpsc::Sender<Span>,
    seq: AtomicU64,
    seed: u64,
    dropped: AtomicU64,
}

impl Tracer {
    /// A tracer exporting to `endpoint` (e.g. `http://127.0.0.1:4318`) as `service`.
    pub fn start(endpoint: &str, service: &str) -> Tracer {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(export(
            format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            service.to_string(),
            rx,
        ));
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Tracer {
            tx,
            seq: AtomicU64::new(0),
            seed,
            dropped: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        splitmix(
            self.seed
                ^ self
                    .seq
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(0x9E37),
        )
    }

    /// A new 16-byte trace ID, hex.
    pub fn trace_id(&self) -> String {
        format!("{:016x}{:016x}", self.next(), self.next())
    }

    /// A new 8-byte span ID, hex.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.next())
    }

    /// Queues a span; when the queue is full the span is dropped and counted.
    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Trace ID and parent span ID from a W3C `traceparent` header.
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
    };
    match parts.as_slice() {
        [version, trace, span, _flags] if *version != "ff" && hex(trace, 32) && hex(span, 16) => {
            Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
        }
        _ => None,
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn span_json(s: &Span) -> Value {
    let attrs: Vec<Value> = s
        .attributes
        .iter()
        .map(|(k, v)| match v {
            Attr::Str(x) => json!({"key": k, "value": {"stringValue": x}}),
            Attr::Int(x) => json!({"key": k, "value": {"intValue": x.to_string()}}),
        })
        .collect();
    let mut v = json!({
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": nanos(s.start),
        "endTimeUnixNano": nanos(s.end),
        "attributes": attrs,
        "status": {"code": if s.error { 2 } else { 1 }},
    });
    if let Some(p) = &s.parent_span_id {
        v["parentSpanId"] = json!(p);
    }
    v
}

/// The OTLP JSON body for a batch.
pub fn body(service: &str, spans: &[Span]) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
        ]},
        "scopeSpans": [{
            "scope": {"name": "meridian", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
        }],
    }]})
}

async fn export(url: String, service: String, mut rx: tokio::sync::mpsc::Receiver<Span>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(s) => {
                        batch.push(s);
                        if batch.len() >= BATCH {
                            break;
                        }
                    }
                    None => {
                        send(&client, &url, &service, &mut batch).await;
                        return;
                    }
                },
                () = &mut deadline => break,
            }
        }
        send(&client, &url, &service, &mut batch).await;
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    service: &str,
    batch: &mut Vec<Span>,
) {
    if batch.is_empty() {
        return;
    }
    let payload = body(service, batch).to_string();
    let n = batch.len();
    batch.clear();
    let Ok(req) = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
    else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(r)) if r.status().is_success() => {}
        Ok(Ok(r)) => tracing::warn!(
            status = r.status().as_u16(),
            spans = n,
            "OTLP collector refused spans"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, spans = n, "cannot reach the OTLP collector"),
        Err(_) => tracing::warn!(spans = n, "OTLP collector did not answer in 5 s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(ok),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
