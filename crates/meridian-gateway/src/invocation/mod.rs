//! Invocation records in Bedrock's model-invocation-log shape, plus
//! Meridian's routing decision, written to stdout or a file and, when
//! configured, exported to S3 through a local spool.

pub mod export;
pub mod spool;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
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
    /// How the request was routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
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

/// Where records go.
#[derive(Debug)]
pub enum Sink {
    /// One JSON line per record on stdout.
    Stdout,
    /// One JSON line per record appended to a file.
    File(Mutex<File>),
}

/// The configured sinks.
#[derive(Debug)]
pub struct InvocationLog {
    sinks: Vec<Sink>,
    /// Request and response bodies in records.
    pub include_bodies: bool,
    /// S3 export, if configured.
    pub s3: Option<Arc<S3Export>>,
}

impl InvocationLog {
    /// No sinks: records are dropped (used by tests and drills).
    pub fn disabled() -> InvocationLog {
        InvocationLog {
            sinks: Vec::new(),
            include_bodies: false,
            s3: None,
        }
    }

    /// Sinks from config.
    pub fn new(
        stdout: bool,
        file: Option<&std::path::Path>,
        include_bodies: bool,
        s3: Option<Arc<S3Export>>,
    ) -> std::io::Result<InvocationLog> {
        let mut sinks = Vec::new();
        if stdout {
            sinks.push(Sink::Stdout);
        }
        if let Some(p) = file {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            sinks.push(Sink::File(Mutex::new(f)));
        }
        Ok(InvocationLog {
            sinks,
            include_bodies,
            s3,
        })
    }

    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        !self.sinks.is_empty() || self.s3.is_some()
    }

    /// Names of the sinks, for `/status`.
    pub fn sink_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sinks
            .iter()
            .map(|s| match s {
                Sink::Stdout => "stdout".to_string(),
                Sink::File(_) => "file".to_string(),
            })
            .collect();
        if self.s3.is_some() {
            out.push("s3".into());
        }
        out
    }

    /// Writes a record to every sink. The S3 spool write happens before this
    /// returns, so a record is durable once the client has its answer.
    pub fn write(&self, record: &Record) {
        if !self.enabled() {
            return;
        }
        let line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an invocation record");
                return;
            }
        };
        for sink in &self.sinks {
            let res = match sink {
                Sink::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&line).and_then(|()| out.write_all(b"\n"))
                }
                Sink::File(f) => {
                    let mut buf = line.clone();
                    buf.push(b'\n');
                    f.lock().write_all(&buf)
                }
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "cannot write an invocation record");
            }
        }
        if let Some(s3) = &self.s3 {
            s3.spool(&line);
        }
    }
}

/// `2026-11-22T07:05:09.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
