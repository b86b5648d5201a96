//! Invocation records in Bedrock's model-invocation-log shape, plus
//! Meridian's routing decision, written to stdout or a file and, when
//! configured, exported to S3 through a local spool.

pub mod export;
pub mod spool;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

pub use export::{S3Export, S3Status};
use meridian_router::Decision;

/// Input side of a record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub input_content_type: &'static str,
    pub input_token_count: u64,
    /// Input tokens read from the prompt cache (not in `inputTokenCount`).
    pub cache_read_input_token_count: u64,
    /// Input tokens written to the prompt cache (not in `inputTokenCount`).
    pub cache_write_input_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_body_json: Option<Value>,
}

/// Output side of a record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub output_content_type: &'static str,
    pub output_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_body_json: Option<Value>,
}

/// What Meridian adds to Bedrock's fields. Borrowed from the request's
/// summary: building a record copies no string.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing<'a> {
    /// What the client asked for.
    pub requested_model: &'a str,
    /// `bedrock` or `openai`.
    pub api: &'static str,
    /// Upstream account that served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<&'a str>,
    /// The endpoint surface that served it (`runtime`, `runtime-messages`,
    /// `mantle-messages`, `provider`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surface: Option<&'static str>,
    /// Residency policy applied.
    pub policy: &'a str,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Milliseconds from request to last byte.
    pub latency_ms: u64,
    /// Milliseconds to the first event, for streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<u64>,
    /// Estimated cost in USD, from the catalog's prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// `false` when the target served has no price in the catalog (a model
    /// a refresh found): the cost is unknown, and budgets were not charged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_known: Option<bool>,
    /// The Bedrock service tier that served it, when one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<&'static str>,
    /// How the request was routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a Decision>,
    /// The caller's tenant, when tenants are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    /// What Meridian's guards found and did: types, actions and counts,
    /// never values.
    #[serde(skip_serializing_if = "none_fired")]
    pub guard: &'a [crate::guard::Fired],
    /// `hit` when the response cache answered (no upstream call, no cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

fn none_fired(g: &&[crate::guard::Fired]) -> bool {
    g.is_empty()
}

/// A record's time, written as RFC 3339 UTC with milliseconds
/// (`2026-11-22T07:05:09.123Z`) without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Stamp(pub SystemTime);

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = meridian_wire::civil::rfc3339_bytes(self.0);
        s.serialize_str(std::str::from_utf8(&b).unwrap_or("1970-01-01T00:00:00.000Z"))
    }
}

/// One invocation record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    pub schema_type: &'static str,
    pub schema_version: &'static str,
    pub timestamp: Stamp,
    pub account_id: &'a str,
    /// Region of the Bedrock endpoint called (Meridian's region when none was).
    pub region: &'a str,
    pub request_id: &'a str,
    pub operation: &'a str,
    pub model_id: &'a str,
    pub input: Input,
    pub output: Output,
    /// Region that processed the request, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'a str>,
    pub meridian: Routing<'a>,
}

impl<'a> Record<'a> {
    /// A record stamped now, with Bedrock's schema fields filled.
    pub fn new(
        account_id: &'a str,
        region: &'a str,
        request_id: &'a str,
        operation: &'a str,
        model_id: &'a str,
        routing: Routing<'a>,
    ) -> Record<'a> {
        Record {
            schema_type: "ModelInvocationLog",
            schema_version: "1.0",
            timestamp: Stamp(SystemTime::now()),
            account_id,
            region,
            request_id,
            operation,
            model_id,
            input: Input {
                input_content_type: "application/json",
                input_token_count: 0,
                cache_read_input_token_count: 0,
                cache_write_input_token_count: 0,
                input_body_json: None,
            },
            output: Output {
                output_content_type: "application/json",
                output_token_count: 0,
                output_body_json: None,
            },
            inference_region: None,
            error_code: None,
            meridian: routing,
        }
    }
}

/// Records queued for the stdout and file sinks by default.
pub const QUEUE_RECORDS: usize = 16_384;
/// How long the writer lets records gather after writing a batch.
const GATHER: Duration = Duration::from_millis(5);
/// Drops are warned about at most this often.
const WARN_EVERY_SECS: u64 = 10;
/// A writer's buffer larger than this after a burst is given back.
const KEEP_BYTES: usize = 1 << 20;

/// Lines waiting for the writer: appended to in place by the request path,
/// swapped out whole by the writer (no allocation per record).
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    records: u64,
    /// The sinks were dropped: the writer ends once the rest is written.
    closed: bool,
}

/// The stdout and file sinks: one thread writes what the request path
/// queues. When the queue is full — the reader of stdout stopped, the disk
/// is slow — records for these sinks are dropped and counted; a request
/// never waits for them.
#[derive(Debug)]
struct Lines {
    pending: Arc<(parking_lot::Mutex<Pending>, parking_lot::Condvar)>,
    capacity: u64,
    /// Records queued or being written.
    queued: Arc<AtomicU64>,
    dropped: AtomicU64,
    last_warn: AtomicU64,
}

impl Lines {
    fn start(mut sinks: Vec<Box<dyn Write + Send>>, capacity: usize) -> io::Result<Lines> {
        let pending = Arc::new((
            parking_lot::Mutex::new(Pending::default()),
            parking_lot::Condvar::new(),
        ));
        let queued = Arc::new(AtomicU64::new(0));
        let (shared, left) = (pending.clone(), queued.clone());
        std::thread::Builder::new()
            .name("meridian-invocation-log".into())
            .spawn(move || {
                let mut batch = Vec::new();
                loop {
                    let n = {
                        let (lock, ready) = &*shared;
                        let mut p = lock.lock();
                        while p.records == 0 {
                            if p.closed {
                                return;
                            }
                            ready.wait(&mut p);
                        }
                        // Take everything queued and write it whole, in one
                        // write per sink: a reader never sees half a line.
                        std::mem::swap(&mut p.bytes, &mut batch);
                        std::mem::take(&mut p.records)
                    };
                    for sink in &mut sinks {
                        if let Err(e) = sink.write_all(&batch).and_then(|()| sink.flush()) {
                            tracing::error!(error = %e, "cannot write an invocation record");
                        }
                    }
                    left.fetch_sub(n, Ordering::Relaxed);
                    batch.clear();
                    if batch.capacity() > KEEP_BYTES {
                        batch.shrink_to(KEEP_BYTES / 4);
                    }
                    // Let the next records gather instead of being woken for
                    // each: the request path signals only when it finds the
                    // queue empty, and a wake per record costs it a context
                    // switch.
                    std::thread::sleep(GATHER);
                }
            })?;
        Ok(Lines {
            pending,
            capacity: capacity.max(1) as u64,
            queued,
            dropped: AtomicU64::new(0),
            last_warn: AtomicU64::new(0),
        })
    }

    /// Queues one line (with its newline).
    fn send(&self, line: &[u8]) {
        {
            let (lock, ready) = &*self.pending;
            let mut p = lock.lock();
            if p.records < self.capacity {
                p.bytes.extend_from_slice(line);
                p.records += 1;
                self.queued.fetch_add(1, Ordering::Relaxed);
                if p.records == 1 {
                    ready.notify_one();
                }
                return;
            }
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warn.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_SECS
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = dropped,
                "invocation-log sink is not keeping up (is stdout read?): records for stdout/file are dropped; the S3 spool, if configured, still has them"
            );
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let (lock, ready) = &*self.pending;
        lock.lock().closed = true;
        ready.notify_one();
    }
}

/// The configured sinks.
#[derive(Debug)]
pub struct InvocationLog {
    lines: Option<Lines>,
    names: Vec<&'static str>,
    /// Request and response bodies in records.
    pub include_bodies: bool,
    /// S3 export, if configured.
    pub s3: Option<Arc<S3Export>>,
}

impl InvocationLog {
    /// No sinks: records are dropped (used by tests and drills).
    pub fn disabled() -> InvocationLog {
        InvocationLog {
            lines: None,
            names: Vec::new(),
            include_bodies: false,
            s3: None,
        }
    }

    /// Sinks from config; stdout and file records queue up to `queue` deep.
    pub fn new(
        stdout: bool,
        file: Option<&std::path::Path>,
        include_bodies: bool,
        s3: Option<Arc<S3Export>>,
        queue: usize,
    ) -> io::Result<InvocationLog> {
        let mut sinks: Vec<Box<dyn Write + Send>> = Vec::new();
        let mut names = Vec::new();
        // Batches are written whole (see `Lines::start`): no buffering here.
        if stdout {
            sinks.push(Box::new(io::stdout()));
            names.push("stdout");
        }
        if let Some(p) = file {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            sinks.push(Box::new(f));
            names.push("file");
        }
        let lines = if sinks.is_empty() {
            None
        } else {
            Some(Lines::start(sinks, queue)?)
        };
        if s3.is_some() {
            names.push("s3");
        }
        Ok(InvocationLog {
            lines,
            names,
            include_bodies,
            s3,
        })
    }

    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        self.lines.is_some() || self.s3.is_some()
    }

    /// Names of the sinks, for `/status`.
    pub fn sink_names(&self) -> Vec<String> {
        self.names.iter().map(|n| n.to_string()).collect()
    }

    /// Records the stdout/file sinks dropped because their queue was full.
    pub fn dropped(&self) -> u64 {
        self.lines
            .as_ref()
            .map_or(0, |l| l.dropped.load(Ordering::Relaxed))
    }

    /// Records waiting for the stdout/file writer.
    pub fn queued(&self) -> u64 {
        self.lines
            .as_ref()
            .map_or(0, |l| l.queued.load(Ordering::Relaxed))
    }

    /// Waits (at shutdown) up to `limit` for queued records to be written.
    pub async fn drain(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.queued() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes a record to every sink without waiting for any: stdout and
    /// file records are queued for their thread; the S3 spool gets the line
    /// appended (one write to the page cache, no fsync) before this returns,
    /// so it holds every record whose client has an answer.
    /// The record is serialized once, into a buffer the thread reuses.
    pub fn write(&self, record: &Record<'_>) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if !self.enabled() {
            return;
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut *line, record) {
                tracing::error!(error = %e, "cannot serialize an invocation record");
                return;
            }
            if let Some(s3) = &self.s3 {
                s3.spool(&line);
            }
            if let Some(lines) = &self.lines {
                line.push(b'\n');
                lines.send(&line);
            }
            if line.capacity() > KEEP_BYTES {
                *line = Vec::new();
            }
        });
    }
}

pub use meridian_wire::civil::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_router::{AttemptRecord, Outcome, Reason, Surface};

    /// A record with every field set, as the request path fills it.
    fn full_record() -> Vec<u8> {
        let decision = Decision {
            strategy: "latency",
            policy: "us".into(),
            candidates: vec![
                "default|us-east-1|us.anthropic.claude-3-haiku-20240307-v1:0".into(),
                "default|us-west-2|us.anthropic.claude-3-haiku-20240307-v1:0".into(),
            ],
            attempts: vec![
                AttemptRecord {
                    account: "default".into(),
                    region: "us-east-1".into(),
                    model_id: "us.anthropic.claude-3-haiku-20240307-v1:0".into(),
                    surface: Surface::Runtime,
                    reason: Reason::First,
                    start_ms: 0,
                    elapsed_ms: 41,
                    outcome: Outcome::Throttled,
                },
                AttemptRecord {
                    account: "default".into(),
                    region: "us-west-2".into(),
                    model_id: "us.anthropic.claude-3-haiku-20240307-v1:0".into(),
                    surface: Surface::Runtime,
                    reason: Reason::Retry,
                    start_ms: 45,
                    elapsed_ms: 310,
                    outcome: Outcome::Success,
                },
            ],
            served_by: Some(1),
            hedged: false,
            gave_up: None,
        };
        let routing = Routing {
            requested_model: "chat \"quoted\" é",
            api: "openai",
            account: Some("default"),
            surface: Some("runtime"),
            policy: "us",
            status: 200,
            latency_ms: 356,
            time_to_first_token_ms: Some(120),
            estimated_cost_usd: Some(0.000_123_456_789),
            price_known: None,
            service_tier: Some("priority"),
            decision: Some(&decision),
            tenant: Some("team-a"),
            guard: &[crate::guard::Fired {
                direction: crate::guard::Direction::Input,
                label: "EMAIL".into(),
                action: "mask",
                count: 2,
            }],
            cache: None,
        };
        let mut rec = Record::new(
            "123456789012",
            "us-west-2",
            "3f1c2a9e-0000-4000-8000-000000000001",
            "Converse",
            "us.anthropic.claude-3-haiku-20240307-v1:0",
            routing,
        );
        rec.timestamp = Stamp(UNIX_EPOCH + Duration::from_millis(1_795_331_109_123));
        rec.input.input_token_count = 1234;
        rec.input.cache_read_input_token_count = 5;
        rec.input.cache_write_input_token_count = 6;
        rec.output.output_token_count = 78;
        rec.inference_region = Some("us-west-2");
        rec.error_code = None;
        serde_json::to_vec(&rec).unwrap()
    }

    /// A record of a request that failed before any upstream answered.
    fn sparse_record() -> Vec<u8> {
        let routing = Routing {
            requested_model: "nope",
            api: "bedrock",
            account: None,
            surface: None,
            policy: "",
            status: 404,
            latency_ms: 0,
            time_to_first_token_ms: None,
            estimated_cost_usd: None,
            price_known: Some(false),
            service_tier: None,
            decision: None,
            tenant: None,
            guard: &[],
            cache: Some("hit"),
        };
        let mut rec = Record::new("", "eu-west-1", "r-2", "InvokeModel", "nope", routing);
        rec.timestamp = Stamp(UNIX_EPOCH + Duration::from_secs(951_782_400));
        rec.error_code = Some("ResourceNotFoundException");
        serde_json::to_vec(&rec).unwrap()
    }

    #[test]
    fn records_are_byte_identical_to_the_golden_ones() {
        // The golden lines were written by the record code before it was
        // made allocation-free (issue 30); any change to a record's bytes
        // shows here.
        let golden = include_str!("golden_records.ndjson");
        let mut lines = golden.lines();
        assert_eq!(
            String::from_utf8(full_record()).unwrap(),
            lines.next().unwrap()
        );
        assert_eq!(
            String::from_utf8(sparse_record()).unwrap(),
            lines.next().unwrap()
        );
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_331_109_123);
        assert_eq!(rfc3339(t), "2026-11-22T07:05:09.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
