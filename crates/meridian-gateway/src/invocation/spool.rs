//! A local spool of invocation records: records are appended to an open
//! segment file, one JSON line per `write` call (so a killed process leaves
//! whole lines behind), segments are sealed by size or age, and a sealed
//! segment is removed only after every record in it was confirmed uploaded.
//!
//! The request path only appends (one write to the page cache): a segment
//! that reaches its size is retired, and fsync and rename — sealing — happen
//! on a blocking thread (`seal_retired`, `seal_if_older`), as does the
//! fsync of the open segment about once a second (`sync`). The next segment
//! is opened there too, ahead of need (a spare), so an append that starts a
//! segment only takes it; it opens a file itself only when segments fill
//! faster than the blocking thread's tick, and that is counted
//! (`opened_inline`).
//!
//! At start-up, segments a previous process left open are sealed (a torn
//! last line, which only a power loss could leave, is cut off and counted).
//! The spool is bounded: when sealed and open segments together reach
//! `max_bytes`, new records are refused and counted as dropped, and an
//! error is logged; the records already spooled are kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

const OPEN: &str = "open";
const SEALED: &str = "ndjson";

/// Why a record was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its size limit.
    #[error("the invocation-log spool is full ({0} bytes); the record was dropped")]
    Full(u64),
    /// The disk said no.
    #[error("cannot write the invocation-log spool: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
struct Open {
    file: File,
    path: PathBuf,
    bytes: u64,
    records: u64,
    /// Records known to be on disk (fsynced).
    synced: u64,
    since: SystemTime,
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    boot: u128,
    seq: AtomicU64,
    open: Mutex<Option<Open>>,
    /// The next segment, opened off the request path.
    spare: Mutex<Option<Open>>,
    /// Segments an append had to open itself (no spare was ready).
    opened_inline: AtomicU64,
    /// Full segments waiting to be sealed off the request path.
    retired: Mutex<Vec<Open>>,
    /// Bytes in sealed and retired segments.
    sealed_bytes: AtomicU64,
    dropped: AtomicU64,
    recovered_torn: AtomicU64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, sealing what a previous process
    /// left open.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            boot,
            seq: AtomicU64::new(0),
            open: Mutex::new(None),
            spare: Mutex::new(None),
            opened_inline: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            sealed_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            recovered_torn: AtomicU64::new(0),
        };
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == OPEN) {
                let torn = cut_torn_tail(&path)?;
                spool.recovered_torn.fetch_add(torn, Ordering::Relaxed);
                if fs::metadata(&path)?.len() == 0 {
                    fs::remove_file(&path)?;
                } else {
                    fs::rename(&path, path.with_extension(SEALED))?;
                }
            }
        }
        let sealed: u64 = spool
            .sealed()?
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        spool.sealed_bytes.store(sealed, Ordering::Relaxed);
        spool.prepare()?;
        Ok(spool)
    }

    /// Appends one record (a JSON line without its newline).
    pub fn append(&self, line: &[u8]) -> Result<(), SpoolError> {
        let len = line.len() as u64 + 1;
        let mut open = self.open.lock();
        let used = self.sealed_bytes.load(Ordering::Relaxed) + open.as_ref().map_or(0, |o| o.bytes);
        if used + len > self.max_bytes {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::error!(
                    max_bytes = self.max_bytes,
                    "invocation-log spool is full: new records are dropped until uploads free space"
                );
            }
            return Err(SpoolError::Full(self.max_bytes));
        }
        if open.is_none() {
            let spare = self.spare.lock().take();
            *open = Some(match spare {
                Some(mut s) => {
                    s.since = SystemTime::now();
                    s
                }
                None => {
                    self.opened_inline.fetch_add(1, Ordering::Relaxed);
                    self.new_segment()?
                }
            });
        }
        let Some(o) = open.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // One write call per record: a killed process leaves whole lines.
        o.file.write_all(&buf)?;
        o.bytes += len;
        o.records += 1;
        if o.bytes >= self.segment_bytes
            && let Some(full) = open.take()
        {
            self.sealed_bytes.fetch_add(full.bytes, Ordering::Relaxed);
            self.retired.lock().push(full);
        }
        Ok(())
    }

    /// Seals the segments that filled up (fsync, rename), and opens the next
    /// segment if none is waiting. Blocking: call it off the async runtime.
    pub fn seal_retired(&self) -> io::Result<()> {
        let retired = std::mem::take(&mut *self.retired.lock());
        for o in retired {
            o.file.sync_data()?;
            fs::rename(&o.path, o.path.with_extension(SEALED))?;
        }
        self.prepare()
    }

    /// Opens the spare segment the next append will take, unless one waits.
    /// Blocking: call it off the async runtime.
    pub fn prepare(&self) -> io::Result<()> {
        if self.spare.lock().is_some() {
            return Ok(());
        }
        let next = self.new_segment()?;
        let mut spare = self.spare.lock();
        if spare.is_none() {
            *spare = Some(next);
        } else {
            // Another thread prepared one meanwhile: this file stays empty.
            drop(spare);
            fs::remove_file(&next.path)?;
        }
        Ok(())
    }

    /// Segments an append opened itself because no spare was ready.
    pub fn opened_inline(&self) -> u64 {
        self.opened_inline.load(Ordering::Relaxed)
    }

    fn new_segment(&self) -> io::Result<Open> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{:032x}-{seq:08}.{OPEN}", self.boot));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Open {
            file,
            path,
            bytes: 0,
            records: 0,
            synced: 0,
            since: SystemTime::now(),
        })
    }

    /// Makes the open segment's records durable (fsync) and returns how many
    /// records that newly covered. The fsync runs on a second handle, outside
    /// the lock, so appends are not held up while the disk works.
    pub fn sync(&self) -> io::Result<u64> {
        let (file, path, records) = {
            let open = self.open.lock();
            match open.as_ref() {
                Some(o) if o.records > o.synced => (o.file.try_clone()?, o.path.clone(), o.records),
                _ => return Ok(0),
            }
        };
        file.sync_data()?;
        let mut open = self.open.lock();
        match open.as_mut() {
            Some(o) if o.path == path && o.synced < records => {
                let newly = records - o.synced;
                o.synced = records;
                Ok(newly)
            }
            // Sealed meanwhile, which synced it too.
            _ => Ok(0),
        }
    }

    /// Seals the open segment if it holds records and is older than `age`,
    /// and every retired one. Blocking: call it off the async runtime. The
    /// open segment is taken out under the lock and sealed outside it.
    pub fn seal_if_older(&self, age: Duration) -> io::Result<()> {
        let old = {
            let mut open = self.open.lock();
            let old = open
                .as_ref()
                .is_some_and(|o| o.records > 0 && o.since.elapsed().unwrap_or_default() >= age);
            if old { open.take() } else { None }
        };
        if let Some(o) = old {
            self.sealed_bytes.fetch_add(o.bytes, Ordering::Relaxed);
            self.retired.lock().push(o);
        }
        self.seal_retired()
    }

    /// Sealed segments, oldest first.
    pub fn sealed(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == SEALED))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes an uploaded segment.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path)?;
        let _ = self
            .sealed_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(len))
            });
        if self.sealed_bytes.load(Ordering::Relaxed) < self.max_bytes / 2 {
            self.dropped_reset_notice();
        }
        Ok(())
    }

    fn dropped_reset_notice(&self) {
        // Log again the next time the spool fills up.
        let n = self.dropped.load(Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(dropped = n, "invocation-log spool has room again");
        }
    }

    /// Bytes held (sealed and open).
    pub fn bytes(&self) -> u64 {
        self.sealed_bytes.load(Ordering::Relaxed) + self.open.lock().as_ref().map_or(0, |o| o.bytes)
    }

    /// Records refused because the spool was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Torn lines cut off at start-up.
    pub fn torn(&self) -> u64 {
        self.recovered_torn.load(Ordering::Relaxed)
    }
}

/// Cuts a file back to its last newline; returns 1 if something was cut.
fn cut_torn_tail(path: &Path) -> io::Result<u64> {
    let data = fs::read(path)?;
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if keep == data.len() {
        return Ok(0);
    }
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spool: &Spool) -> Vec<String> {
        spool
            .sealed()
            .unwrap()
            .iter()
            .flat_map(|p| {
                fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn seals_by_size_recovers_open_segments_and_cuts_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), 1 << 20, 64).unwrap();
            for i in 0..10 {
                s.append(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
            }
            s.seal_retired().unwrap();
            // Sealed every 64 bytes: some sealed, one open.
            assert!(!s.sealed().unwrap().is_empty());
            // The process dies here, leaving an open segment with a torn line.
        }
        let open: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == OPEN))
            .filter(|p| fs::metadata(p).unwrap().len() > 0)
            .collect();
        assert_eq!(
            open.len(),
            1,
            "one open segment with records (and an empty spare)"
        );
        let mut f = OpenOptions::new().append(true).open(&open[0]).unwrap();
        f.write_all(b"{\"n\":to").unwrap();
        let s = Spool::open(dir.path(), 1 << 20, 64).unwrap();
        assert_eq!(s.torn(), 1);
        let got = lines(&s);
        let want: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(got, want, "every whole record, once, in order");
        for p in s.sealed().unwrap() {
            s.remove(&p).unwrap();
        }
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn sync_covers_each_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(s.sync().unwrap(), 0, "nothing open");
        for i in 0..3 {
            s.append(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        assert_eq!(s.sync().unwrap(), 3);
        assert_eq!(s.sync().unwrap(), 0, "already on disk");
        s.append(b"{\"n\":3}").unwrap();
        assert_eq!(s.sync().unwrap(), 1);
        s.append(b"{\"n\":4}").unwrap();
        s.seal_if_older(Duration::ZERO).unwrap();
        assert_eq!(s.sync().unwrap(), 0, "sealing synced it");
        assert_eq!(lines(&s).len(), 5);
    }

    #[test]
    fn appends_take_segments_opened_ahead_and_count_when_none_was_ready() {
        let dir = tempfile::tempdir().unwrap();
        // Each record fills a segment of 8 bytes.
        let s = Spool::open(dir.path(), 1 << 20, 8).unwrap();
        s.append(b"{\"n\":0}").unwrap();
        assert_eq!(s.opened_inline(), 0, "the spare opened at start-up");
        // The blocking thread's tick seals it and opens the next one.
        s.seal_retired().unwrap();
        s.append(b"{\"n\":1}").unwrap();
        assert_eq!(s.opened_inline(), 0, "the spare the tick opened");
        // Two segments between ticks: the second is opened by the append.
        s.append(b"{\"n\":2}").unwrap();
        assert_eq!(s.opened_inline(), 1);
        s.seal_retired().unwrap();
        assert_eq!(lines(&s).len(), 3);
        // An empty spare left behind is removed at the next start-up.
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20, 8).unwrap();
        assert_eq!(lines(&s).len(), 3);
        let open = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == OPEN)
            })
            .count();
        assert_eq!(open, 1, "only the new spare");
    }

    #[test]
    fn a_full_spool_refuses_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 30, 1000).unwrap();
        s.append(b"0123456789").unwrap();
        s.append(b"0123456789").unwrap();
        assert!(matches!(s.append(b"0123456789"), Err(SpoolError::Full(30))));
        assert_eq!(s.dropped(), 1);
        s.seal_if_older(Duration::ZERO).unwrap();
        assert_eq!(lines(&s).len(), 2, "what was accepted is kept");
    }
}
