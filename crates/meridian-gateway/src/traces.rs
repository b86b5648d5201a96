//! OpenTelemetry traces over OTLP: one SERVER span per request and one
//! CLIENT span per upstream attempt, with GenAI semantic-convention
//! attributes (`gen_ai.*`) and Meridian's own (region, account, surface,
//! tenant, decision). An incoming W3C `traceparent` makes the request span
//! its child. Off unless `[tracing] otlp_endpoint` is set.
//!
//! Three transports (`[tracing] otlp_protocol`): protobuf over HTTP/1.1 (the
//! SDKs' default), JSON over HTTP/1.1, and gRPC over HTTP/2 (h2c). The
//! messages are `opentelemetry-proto`'s prost types; hyper carries them (the
//! gRPC framing is five bytes and a trailer, no tonic needed).
//!
//! Spans queue in a bounded channel and go out in batches (every second, or
//! 256 at a time). Recording never waits: a full queue drops the span, and a
//! batch the collector does not take is dropped too; both are counted
//! (`meridian_trace_spans_dropped_total`), and failures are logged at most
//! every 10 s. Traces are best-effort, unlike the invocation log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meridian_config::OtlpProtocol;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::{Value, json};

/// Spans waiting for export, at most.
const QUEUE: usize = 8192;
/// Spans per export request, at most.
const BATCH: usize = 256;
/// How long one export may take before its spans are dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often, at most, failed exports are logged.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The gRPC method OTLP exports traces with.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

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

/// Spans exported and dropped since start.
#[derive(Debug, Default)]
pub struct Counts {
    /// Spans a collector took.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full (the exporter fell behind).
    pub queue_full: AtomicU64,
    /// Spans dropped because their batch could not be delivered.
    pub export_failed: AtomicU64,
}

/// Hands spans to the exporter task.
#[derive(Debug)]
pub struct Tracer {
    tx: tokio::sync::mpsc::Sender<Span>,
    seq: AtomicU64,
    seed: u64,
    counts: Arc<Counts>,
}

impl Tracer {
    /// A tracer exporting to the collector at `endpoint` (e.g.
    /// `http://127.0.0.1:4318`, or `:4317` for gRPC) as `service`.
    pub fn start(endpoint: &str, protocol: OtlpProtocol, service: &str) -> Tracer {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(export(
            Exporter::new(endpoint, protocol, service),
            rx,
            counts.clone(),
        ));
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Tracer {
            tx,
            seq: AtomicU64::new(0),
            seed,
            counts,
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
            self.counts.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans exported and dropped so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// A request's place in a trace, fixed when it arrives so that what goes
/// upstream and the spans exported later agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, hex.
    pub trace_id: String,
    /// The request's SERVER span (exported), or the caller's span when
    /// tracing is off (nothing exported: upstream calls hang off the caller).
    pub span_id: String,
    /// The caller's span, when it sent a `traceparent`.
    pub parent_span_id: Option<String>,
    /// Whether Meridian exports spans for this request.
    pub exported: bool,
    /// The caller's sampled flag (always set when Meridian exports).
    pub sampled: bool,
}

impl TraceContext {
    /// The context of a request that sent `traceparent` (if any) to a
    /// gateway that exports spans through `tracer` (if any); `None` when
    /// there is neither a valid caller context nor tracing.
    pub fn for_request(traceparent: Option<&str>, tracer: Option<&Tracer>) -> Option<TraceContext> {
        let caller = traceparent.and_then(|v| Some((parse_traceparent(v)?, sampled_flag(v))));
        match (caller, tracer) {
            (Some(((trace_id, parent), _)), Some(t)) => Some(TraceContext {
                trace_id,
                span_id: t.span_id(),
                parent_span_id: Some(parent),
                exported: true,
                sampled: true,
            }),
            (None, Some(t)) => Some(TraceContext::root(t)),
            (Some(((trace_id, parent), sampled)), None) => Some(TraceContext {
                trace_id,
                span_id: parent.clone(),
                parent_span_id: Some(parent),
                exported: false,
                sampled,
            }),
            (None, None) => None,
        }
    }

    /// A new trace, rooted at a request of this gateway.
    pub fn root(t: &Tracer) -> TraceContext {
        TraceContext {
            trace_id: t.trace_id(),
            span_id: t.span_id(),
            parent_span_id: None,
            exported: true,
            sampled: true,
        }
    }

    /// The CLIENT span ID of upstream attempt `n` (derived, so the header
    /// sent with the attempt and the span exported after it agree).
    pub fn attempt_span_id(&self, n: usize) -> String {
        let base = u64::from_str_radix(&self.span_id, 16).unwrap_or(0);
        let id = splitmix(base ^ (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        format!("{:016x}", id.max(1))
    }

    /// The `X-Amzn-Trace-Id` for upstream attempt `n`: AWS services (Bedrock
    /// among them) take a trace in X-Ray's form, which maps one to one from
    /// W3C's: the first 8 hex digits of the trace ID are X-Ray's epoch part.
    pub fn amzn_trace_id(&self, n: usize) -> String {
        let parent = if self.exported {
            self.attempt_span_id(n)
        } else {
            self.span_id.clone()
        };
        format!(
            "Root=1-{}-{};Parent={parent};Sampled={}",
            &self.trace_id[..8],
            &self.trace_id[8..],
            u8::from(self.sampled)
        )
    }
}

/// The sampled bit of a `traceparent`'s flags.
fn sampled_flag(v: &str) -> bool {
    v.trim()
        .rsplit('-')
        .next()
        .and_then(|f| u8::from_str_radix(f, 16).ok())
        .is_some_and(|f| f & 1 == 1)
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

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// OTLP status codes: OK and ERROR.
fn status_code(error: bool) -> i32 {
    if error { 2 } else { 1 }
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
        "startTimeUnixNano": nanos(s.start).to_string(),
        "endTimeUnixNano": nanos(s.end).to_string(),
        "attributes": attrs,
        "status": {"code": status_code(s.error)},
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

fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn span_proto(s: &Span) -> otlp::Span {
    // IDs are made or checked as hex before they get here.
    let id = |h: &str| hex::decode(h).unwrap_or_default();
    otlp::Span {
        trace_id: id(&s.trace_id),
        span_id: id(&s.span_id),
        parent_span_id: s.parent_span_id.as_deref().map(id).unwrap_or_default(),
        name: s.name.clone(),
        kind: i32::from(s.kind),
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s
            .attributes
            .iter()
            .map(|(k, v)| match v {
                Attr::Str(x) => key_value(k, any_value::Value::StringValue(x.clone())),
                Attr::Int(x) => key_value(k, any_value::Value::IntValue(*x)),
            })
            .collect(),
        status: Some(otlp::Status {
            code: status_code(s.error),
            ..otlp::Status::default()
        }),
        ..otlp::Span::default()
    }
}

/// The OTLP protobuf message for a batch (the same content as [`body`]).
pub fn message(service: &str, spans: &[Span]) -> ExportTraceServiceRequest {
    let version = env!("CARGO_PKG_VERSION");
    ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    key_value(
                        "service.name",
                        any_value::Value::StringValue(service.into()),
                    ),
                    key_value(
                        "service.version",
                        any_value::Value::StringValue(version.into()),
                    ),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "meridian".into(),
                    version: version.into(),
                    ..InstrumentationScope::default()
                }),
                spans: spans.iter().map(span_proto).collect(),
                ..otlp::ScopeSpans::default()
            }],
            ..otlp::ResourceSpans::default()
        }],
    }
}

/// A gRPC message frame: uncompressed flag, big-endian length, message.
fn grpc_frame(msg: &ExportTraceServiceRequest) -> Bytes {
    let len = msg.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with room for the message cannot fail.
    let _ = msg.encode(&mut out);
    out.freeze()
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// Delivers batches to the collector with one protocol.
struct Exporter {
    http: Http,
    url: String,
    protocol: OtlpProtocol,
    service: String,
}

impl Exporter {
    fn new(endpoint: &str, protocol: OtlpProtocol, service: &str) -> Exporter {
        let base = endpoint.trim_end_matches('/');
        let mut builder = Client::builder(TokioExecutor::new());
        let url = if protocol == OtlpProtocol::Grpc {
            // gRPC runs on HTTP/2; without TLS that is h2c by prior knowledge.
            builder.http2_only(true);
            format!("{base}{GRPC_PATH}")
        } else {
            format!("{base}/v1/traces")
        };
        Exporter {
            http: builder.build_http(),
            url,
            protocol,
            service: service.to_string(),
        }
    }

    /// Sends one batch; `Err` says why the collector did not take it.
    async fn send(&self, batch: &[Span]) -> Result<(), String> {
        let (content_type, payload) = match self.protocol {
            OtlpProtocol::HttpJson => (
                "application/json",
                Bytes::from(body(&self.service, batch).to_string()),
            ),
            OtlpProtocol::HttpProtobuf => (
                "application/x-protobuf",
                Bytes::from(message(&self.service, batch).encode_to_vec()),
            ),
            OtlpProtocol::Grpc => (
                "application/grpc",
                grpc_frame(&message(&self.service, batch)),
            ),
        };
        let mut req = http::Request::post(&self.url).header("content-type", content_type);
        if self.protocol == OtlpProtocol::Grpc {
            req = req.header("te", "trailers");
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| format!("cannot build the export request: {e}"))?;
        let exchange = async {
            let res = self
                .http
                .request(req)
                .await
                .map_err(|e| format!("cannot reach the collector: {e}"))?;
            let status = res.status();
            let head_grpc = grpc_status(res.headers());
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the collector's answer broke off: {e}"))?;
            if !status.is_success() {
                return Err(format!("the collector answered {status}"));
            }
            if self.protocol == OtlpProtocol::Grpc {
                // A gRPC status comes in the trailers, or in the head of a
                // trailers-only answer.
                let trailers = body.trailers().and_then(grpc_status);
                match trailers.or(head_grpc) {
                    Some((0, _)) => {}
                    Some((code, message)) => {
                        return Err(format!("gRPC status {code}: {message}"));
                    }
                    None => return Err("the collector's answer had no grpc-status".into()),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the collector did not answer in {} s",
                EXPORT_TIMEOUT.as_secs()
            )),
        }
    }
}

/// `grpc-status` and `grpc-message`, if the headers carry a status.
fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

async fn export(
    exporter: Exporter,
    mut rx: tokio::sync::mpsc::Receiver<Span>,
    counts: Arc<Counts>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut open = true;
    // Failures are logged at most every WARN_EVERY (a refusing collector
    // would otherwise put a warning in the log for every batch).
    let mut unreported: u64 = 0;
    let mut last_warning: Option<tokio::time::Instant> = None;
    while open {
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
                        open = false;
                        break;
                    }
                },
                () = &mut deadline => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        match exporter.send(&batch).await {
            Ok(()) => {
                counts.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(why) => {
                counts.export_failed.fetch_add(n, Ordering::Relaxed);
                unreported += n;
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        spans = unreported,
                        protocol = exporter.protocol.as_str(),
                        "spans dropped: {why}"
                    );
                    unreported = 0;
                    last_warning = Some(tokio::time::Instant::now());
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(error: bool, parent: Option<&str>) -> Span {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: parent.map(str::to_string),
            name: "Converse chat".into(),
            kind: 2,
            start,
            end: start + Duration::from_millis(250),
            error,
            attributes: vec![
                ("gen_ai.request.model", Attr::Str("chat".into())),
                ("gen_ai.usage.input_tokens", Attr::Int(12)),
            ],
        }
    }

    #[test]
    fn a_protobuf_batch_decodes_to_the_spans_it_was_made_from() {
        let spans = [span(false, Some("b7ad6b7169203331")), span(true, None)];
        let bytes = message("svc", &spans).encode_to_vec();
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        let resource = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(resource[0].key, "service.name");
        assert_eq!(
            resource[0].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("svc".into()))
        );
        let got = &rs.scope_spans[0].spans;
        assert_eq!(got.len(), 2);
        assert_eq!(hex::encode(&got[0].trace_id), spans[0].trace_id);
        assert_eq!(hex::encode(&got[0].span_id), spans[0].span_id);
        assert_eq!(hex::encode(&got[0].parent_span_id), "b7ad6b7169203331");
        assert!(
            got[1].parent_span_id.is_empty(),
            "a root span has no parent"
        );
        assert_eq!(got[0].kind, 2);
        assert_eq!(got[0].start_time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(got[0].end_time_unix_nano, 1_700_000_000_373_000_000);
        assert_eq!(got[0].status.as_ref().unwrap().code, 1);
        assert_eq!(got[1].status.as_ref().unwrap().code, 2);
        let attr = |k: &str| {
            got[0]
                .attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            attr("gen_ai.request.model"),
            Some(any_value::Value::StringValue("chat".into()))
        );
        assert_eq!(
            attr("gen_ai.usage.input_tokens"),
            Some(any_value::Value::IntValue(12))
        );
        // The JSON body says the same.
        let json = body("svc", &spans);
        let j = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(j["startTimeUnixNano"], "1700000000123000000");
        assert_eq!(j["parentSpanId"], "b7ad6b7169203331");
    }

    #[test]
    fn a_grpc_frame_is_a_flag_a_length_and_the_message() {
        let msg = message("svc", &[span(false, None)]);
        let frame = grpc_frame(&msg);
        assert_eq!(frame[0], 0, "not compressed");
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len, frame.len() - 5);
        assert_eq!(ExportTraceServiceRequest::decode(&frame[5..]).unwrap(), msg);
    }

    #[test]
    fn the_upstream_trace_header_continues_the_callers_trace() {
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        // Tracing off: upstream hangs off the caller's span, its flag kept.
        let off = TraceContext::for_request(Some(caller), None).unwrap();
        assert_eq!(
            off.amzn_trace_id(0),
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
        );
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let off = TraceContext::for_request(Some(unsampled), None).unwrap();
        assert!(off.amzn_trace_id(0).ends_with(";Sampled=0"));
        assert_eq!(TraceContext::for_request(Some("junk"), None), None);
        assert_eq!(TraceContext::for_request(None, None), None);
        // Tracing on: each attempt under its own CLIENT span, in the caller's trace.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let tracer = Tracer::start("http://127.0.0.1:9", OtlpProtocol::HttpProtobuf, "t");
        let on = TraceContext::for_request(Some(caller), Some(&tracer)).unwrap();
        assert_eq!(on.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(on.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(on.span_id, "00f067aa0ba902b7");
        let (a0, a1) = (on.attempt_span_id(0), on.attempt_span_id(1));
        assert_ne!(a0, a1);
        assert_eq!(a0, on.attempt_span_id(0), "derived, not drawn");
        assert_eq!(
            on.amzn_trace_id(1),
            format!("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent={a1};Sampled=1")
        );
        let fresh = TraceContext::for_request(None, Some(&tracer)).unwrap();
        assert_eq!(fresh.trace_id.len(), 32);
        assert_eq!(fresh.parent_span_id, None);
    }

    #[test]
    fn grpc_status_is_read_with_its_message() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("unavailable"),
        );
        assert_eq!(grpc_status(&h), Some((14, "unavailable".into())));
    }

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
