//! S3 export: sealed spool segments are uploaded as gzip-compressed NDJSON,
//! one object per (date, hour, region) group of a segment, under
//! `PREFIX/dt=YYYY-MM-DD/hour=HH/region=R/SEGMENT.ndjson.gz`. Keys are fixed
//! by the segment's name, so uploading a segment again after a crash or an
//! S3 failure replaces the same objects instead of adding copies; a segment
//! is removed from the spool only after all its objects were stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use meridian_upstream::s3::S3Client;
use parking_lot::RwLock;
use serde::Serialize;

use super::spool::Spool;

/// How often records in the open segment are fsynced.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What `/status` shows about the export.
#[derive(Debug, Clone, Default, Serialize)]
pub struct S3Status {
    pub bucket: String,
    pub prefix: String,
    /// The bucket's region from HeadBucket, once known.
    pub bucket_region: Option<String>,
    /// Whether the last call to S3 worked.
    pub reachable: bool,
    pub last_error: Option<String>,
    pub uploaded_objects: u64,
    pub uploaded_records: u64,
    pub spool_dir: String,
    pub spool_bytes: u64,
    pub spool_max_bytes: u64,
    /// Records refused because the spool was full.
    pub dropped_records: u64,
    /// Segments a request had to open because none was ready ahead.
    pub segments_opened_inline: u64,
    /// What happens when the spool is full.
    pub when_full: &'static str,
}

/// The spool and its uploader.
#[derive(Debug)]
pub struct S3Export {
    spool: Spool,
    client: S3Client,
    prefix: String,
    interval: Duration,
    status: RwLock<S3Status>,
    uploaded_objects: AtomicU64,
    uploaded_records: AtomicU64,
}

impl S3Export {
    /// An export of `spool` to `client`'s bucket under `prefix`.
    pub fn new(spool: Spool, client: S3Client, prefix: &str, interval: Duration) -> S3Export {
        let mut prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let status = S3Status {
            bucket: client.bucket().to_string(),
            prefix: prefix.clone(),
            ..S3Status::default()
        };
        S3Export {
            spool,
            client,
            prefix,
            interval,
            status: RwLock::new(status),
            uploaded_objects: AtomicU64::new(0),
            uploaded_records: AtomicU64::new(0),
        }
    }

    /// Spools one record line.
    pub fn spool(&self, line: &[u8]) {
        if let Err(e) = self.spool.append(line) {
            tracing::debug!(error = %e, "invocation record not spooled");
        }
    }

    /// A snapshot for `/status` and metrics.
    pub fn status(&self) -> S3Status {
        let mut s = self.status.read().clone();
        s.uploaded_objects = self.uploaded_objects.load(Ordering::Relaxed);
        s.uploaded_records = self.uploaded_records.load(Ordering::Relaxed);
        s.spool_dir = self.spool.dir().display().to_string();
        s.spool_bytes = self.spool.bytes();
        s.spool_max_bytes = self.spool.max_bytes();
        s.dropped_records = self.spool.dropped();
        s.segments_opened_inline = self.spool.opened_inline();
        s.when_full = "new records are dropped and counted (meridian_log_records_dropped_total); spooled records are kept";
        s
    }

    /// Learns the bucket's region with HeadBucket.
    pub async fn check_bucket(&self) {
        let res = self.client.head_bucket().await;
        let mut s = self.status.write();
        match res {
            Ok(region) => {
                s.bucket_region = Some(region);
                s.reachable = true;
                s.last_error = None;
            }
            Err(e) => {
                tracing::warn!(bucket = %self.client.bucket(), error = %e, "S3 bucket check failed");
                s.reachable = false;
                s.last_error = Some(e);
            }
        }
    }

    /// Forever: fsyncs the open segment every second (or every `interval`
    /// if shorter) and seals full segments; every `interval` seals the open
    /// one too and uploads what is sealed. File work runs on blocking
    /// threads, never on the runtime's workers.
    pub async fn run(self: Arc<Self>) {
        self.check_bucket().await;
        let tick = self.interval.min(SYNC_EVERY);
        let mut last_flush = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let flush = last_flush.elapsed() >= self.interval;
            let age = self.interval;
            let res = self
                .blocking(move |spool| {
                    spool.sync()?;
                    if flush {
                        spool.seal_if_older(age)
                    } else {
                        spool.seal_retired()
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "cannot fsync or seal the invocation-log spool");
            }
            if flush {
                last_flush = tokio::time::Instant::now();
                self.flush().await;
            }
        }
    }

    /// Runs `f` on the spool on a blocking thread.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Spool) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.spool))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Uploads every sealed segment; stops at the first failure (retried next time).
    pub async fn flush(self: &Arc<Self>) {
        let segments = match self.blocking(Spool::sealed).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the invocation-log spool");
                return;
            }
        };
        if !segments.is_empty() && self.status.read().bucket_region.is_none() {
            self.check_bucket().await;
        }
        for seg in segments {
            match self.upload(&seg).await {
                Ok((objects, records)) => {
                    let path = seg.clone();
                    if let Err(e) = self.blocking(move |s| s.remove(&path)).await {
                        tracing::error!(error = %e, "cannot remove an uploaded segment");
                        return;
                    }
                    self.uploaded_objects.fetch_add(objects, Ordering::Relaxed);
                    self.uploaded_records.fetch_add(records, Ordering::Relaxed);
                    let mut s = self.status.write();
                    s.reachable = true;
                    s.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, segment = %seg.display(), "S3 upload failed; will retry");
                    let mut s = self.status.write();
                    s.reachable = false;
                    s.last_error = Some(e);
                    return;
                }
            }
        }
    }

    async fn upload(self: &Arc<Self>, seg: &Path) -> Result<(u64, u64), String> {
        let path = seg.to_path_buf();
        let prefix = self.prefix.clone();
        // Reading and compressing a segment is file and CPU work: off the runtime.
        let objects = tokio::task::spawn_blocking(move || objects(&path, &prefix))
            .await
            .map_err(|e| e.to_string())??;
        let mut records = 0;
        for (key, body, n) in &objects {
            self.client
                .put_object(key, body.clone(), "application/x-ndjson")
                .await?;
            records += n;
        }
        Ok((objects.len() as u64, records))
    }
}

/// A segment's objects: key, gzipped NDJSON body, and record count, one per
/// (date, hour, region) group of its records.
fn objects(seg: &Path, prefix: &str) -> Result<Vec<(String, Bytes, u64)>, String> {
    let text = std::fs::read_to_string(seg).map_err(|e| e.to_string())?;
    let stem = seg
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("segment")
        .to_string();
    let mut groups: BTreeMap<(String, String, String), Vec<&str>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        groups.entry(partition(line)).or_default().push(line);
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((date, hour, region), lines) in &groups {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        for l in lines {
            gz.write_all(l.as_bytes()).map_err(|e| e.to_string())?;
            gz.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        let body = gz.finish().map_err(|e| e.to_string())?;
        let key = format!("{prefix}dt={date}/hour={hour}/region={region}/{stem}.ndjson.gz");
        out.push((key, Bytes::from(body), lines.len() as u64));
    }
    Ok(out)
}

/// (date, hour, region) of a record line: its timestamp and the region
/// that processed it (else the region called).
fn partition(line: &str) -> (String, String, String) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let ts = v["timestamp"].as_str().unwrap_or("");
    let date = ts.get(0..10).unwrap_or("unknown").to_string();
    let hour = ts.get(11..13).unwrap_or("00").to_string();
    let region = v["inferenceRegion"]
        .as_str()
        .or_else(|| v["region"].as_str())
        .unwrap_or("unknown")
        .to_string();
    (date, hour, region)
}
