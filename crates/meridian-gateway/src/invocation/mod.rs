//! Invocation records in Bedrock's model-invocation-log shape, plus
//! Meridian's routing decision, written to stdout or a file and, when
//! configured, exported to S3 through a local spool.

pub mod export;
pub mod spool;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
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

/// What Meridian adds to Bedrock's fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// What the client asked for.
    pub requested_model: String,
    /// `bedrock` or `openai`.
    pub api: &'static str,
    /// Upstream account that served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The endpoint surface that served it (`runtime`, `runtime-messages`,
    /// `mantle-messages`, `provider`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surface: Option<&'static str>,
    /// Residency policy applied.
    pub policy: String,
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
    pub decision: Option<Decision>,
    /// The caller's tenant, when tenants are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What Meridian's guards found and did: types, actions and counts,
    /// never values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guard: Vec<crate::guard::Fired>,
    /// `hit` when the response cache answered (no upstream call, no cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

/// One invocation record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub schema_type: &'static str,
    pub schema_version: &'static str,
    pub timestamp: String,
    pub account_id: String,
    /// Region of the Bedrock endpoint called (Meridian's region when none was).
    pub region: String,
    pub request_id: String,
    pub operation: String,
    pub model_id: String,
    pub input: Input,
    pub output: Output,
    /// Region that processed the request, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub meridian: Routing,
}

impl Record {
    /// A record stamped now, with Bedrock's schema fields filled.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account_id: &str,
        region: &str,
        request_id: &str,
        operation: &str,
        model_id: &str,
        routing: Routing,
    ) -> Record {
        Record {
            schema_type: "ModelInvocationLog",
            schema_version: "1.0",
            timestamp: rfc3339(SystemTime::now()),
            account_id: account_id.to_string(),
            region: region.to_string(),
            request_id: request_id.to_string(),
            operation: operation.to_string(),
            model_id: model_id.to_string(),
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
/// Most records written in one batch (one flush).
const BATCH_RECORDS: usize = 4096;
/// How long the writer lets records gather after writing a batch.
const GATHER: Duration = Duration::from_millis(5);
/// Drops are warned about at most this often.
const WARN_EVERY_SECS: u64 = 10;

/// The stdout and file sinks: one thread writes what the request path
/// queues. When the queue is full — the reader of stdout stopped, the disk
/// is slow — records for these sinks are dropped and counted; a request
/// never waits for them.
#[derive(Debug)]
struct Lines {
    tx: SyncSender<Vec<u8>>,
    queued: Arc<AtomicU64>,
    dropped: AtomicU64,
    last_warn: AtomicU64,
}

impl Lines {
    fn start(mut sinks: Vec<Box<dyn Write + Send>>, capacity: usize) -> io::Result<Lines> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(capacity.max(1));
        let queued = Arc::new(AtomicU64::new(0));
        let left = queued.clone();
        std::thread::Builder::new()
            .name("meridian-invocation-log".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Ok(line) = rx.recv() {
                    // Take what else is queued, and write it whole, in one
                    // write per sink: a reader never sees half a line
                    // because a batch outgrew a buffer.
                    batch.clear();
                    batch.extend_from_slice(&line);
                    let mut n = 1;
                    for more in rx.try_iter().take(BATCH_RECORDS - 1) {
                        batch.extend_from_slice(&more);
                        n += 1;
                    }
                    for sink in &mut sinks {
                        if let Err(e) = sink.write_all(&batch).and_then(|()| sink.flush()) {
                            tracing::error!(error = %e, "cannot write an invocation record");
                        }
                    }
                    left.fetch_sub(n, Ordering::Relaxed);
                    // Let the next records gather instead of being woken for
                    // each: a sender wakes this thread only while it waits
                    // in `recv`, and a wake per record costs the request
                    // path a context switch.
                    std::thread::sleep(GATHER);
                }
            })?;
        Ok(Lines {
            tx,
            queued,
            dropped: AtomicU64::new(0),
            last_warn: AtomicU64::new(0),
        })
    }

    fn send(&self, line: Vec<u8>) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(line).is_ok() {
            return;
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
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
    pub fn write(&self, record: &Record) {
        if !self.enabled() {
            return;
        }
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an invocation record");
                return;
            }
        };
        if let Some(s3) = &self.s3 {
            s3.spool(&line);
        }
        if let Some(lines) = &self.lines {
            line.push(b'\n');
            lines.send(line);
        }
    }
}

pub use meridian_wire::civil::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_331_109_123);
        assert_eq!(rfc3339(t), "2026-11-22T07:05:09.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
