//! Connection limits and deadlines: what a client that connects and then
//! sends nothing, or connects too often, can hold.
//!
//! - A cap on open connections per process: at the cap the accept loop
//!   waits (new connections queue in the kernel's backlog) and resumes as
//!   connections close. The default leaves room under `RLIMIT_NOFILE`.
//! - A cap per peer address: beyond it a new connection is closed at once.
//! - A deadline from accept to the first byte, and an idle deadline after
//!   that: a connection with no request in flight that reads and writes
//!   nothing for that long is closed (HTTP/1 keep-alive and HTTP/2 alike).
//!   A request in flight — a long stream whose upstream is thinking —
//!   keeps its connection however quiet it is.
//!
//! Request heads (HTTP/1) have hyper's header-read timeout; bodies have the
//! pipeline's `[server] body_read_timeout_ms`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Descriptors kept free for upstream connections, log files and Redis
/// when the connection cap is derived from `RLIMIT_NOFILE`.
const RESERVED_FDS: usize = 64;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept to the first byte of a request.
    pub first_byte: Duration,
    /// With no request in flight, no bytes either way for this long.
    pub idle: Duration,
    /// Open connections per process.
    pub max: usize,
    /// Open connections per peer address.
    pub per_peer: usize,
}

impl Limits {
    /// The limits `[server]` sets, defaults for what it leaves out.
    pub fn from_config(server: &meridian_config::Server) -> Limits {
        let max = server.max_connections.unwrap_or_else(default_max);
        Limits {
            first_byte: Duration::from_millis(server.first_byte_timeout_ms),
            idle: Duration::from_millis(server.idle_timeout_ms),
            max,
            per_peer: server.max_connections_per_peer.unwrap_or((max / 2).max(1)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let max = default_max();
        Limits {
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(75),
            max,
            per_peer: (max / 2).max(1),
        }
    }
}

/// The process's open-file limit less [`RESERVED_FDS`], at least 16 and at
/// most 65,536 (1,024 when the limit cannot be read).
fn default_max() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| nofile_soft(&t))
        .unwrap_or(1024);
    soft.saturating_sub(RESERVED_FDS as u64).clamp(16, 65_536) as usize
}

/// The soft "Max open files" limit in `/proc/self/limits` text.
fn nofile_soft(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Why a connection was closed or refused by these limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Nothing arrived within the first-byte deadline.
    FirstByte,
    /// No request and no traffic within the idle deadline.
    Idle,
    /// The peer already had its share of connections.
    PerPeer,
}

impl Closed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Closed::FirstByte => "first_byte",
            Closed::Idle => "idle",
            Closed::PerPeer => "per_peer",
        }
    }
}

/// Open connections, process-wide and per peer.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    slots: Arc<Semaphore>,
    peers: parking_lot::Mutex<HashMap<IpAddr, usize>>,
    open: AtomicU64,
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            slots: Arc::new(Semaphore::new(limits.max.max(1))),
            peers: parking_lot::Mutex::default(),
            open: AtomicU64::new(0),
            limits,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits for a free process-wide slot (at the cap: until one closes).
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(p) = self.slots.clone().acquire_owned().await {
                return p;
            }
            // Never closed; yield rather than spin if it ever were.
            tokio::task::yield_now().await;
        }
    }

    /// Admits a connection from `peer` holding `slot`; `None` when the peer
    /// is at its own cap.
    pub fn admit(self: &Arc<Gate>, peer: IpAddr, slot: OwnedSemaphorePermit) -> Option<Admitted> {
        {
            let mut peers = self.peers.lock();
            let n = peers.entry(peer).or_insert(0);
            if *n >= self.limits.per_peer {
                return None;
            }
            *n += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            gate: self.clone(),
            peer,
            _slot: slot,
        })
    }
}

/// One admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<Gate>,
    peer: IpAddr,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        let mut peers = self.gate.peers.lock();
        if let Some(n) = peers.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// Requests in flight on one connection, and why its deadlines closed it.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun on the connection.
    requests: AtomicU64,
    /// 0: open; else a [`Closed`] as 1 + its index.
    closed: AtomicU8,
}

impl Activity {
    /// Marks a request in flight until the returned guard drops (with the
    /// response body, for a streamed answer).
    pub fn enter(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Requests begun on the connection so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Why the deadlines closed the connection, if they did.
    pub fn closed(&self) -> Option<Closed> {
        match self.closed.load(Ordering::Relaxed) {
            1 => Some(Closed::FirstByte),
            2 => Some(Closed::Idle),
            _ => None,
        }
    }

    fn close(&self, why: Closed) {
        let n = match why {
            Closed::FirstByte => 1,
            Closed::Idle => 2,
            Closed::PerPeer => 3,
        };
        self.closed.store(n, Ordering::Relaxed);
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket with the first-byte and idle deadlines: a read
/// that waits past the deadline while no request is in flight fails with
/// `TimedOut`, which ends the connection.
#[derive(Debug)]
pub struct Deadlines<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    /// When the connection may be closed if nothing happens before.
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    started: bool,
}

impl<T> Deadlines<T> {
    /// `inner` with `limits`' deadlines, counting requests in `activity`.
    pub fn new(inner: T, limits: &Limits, activity: Arc<Activity>) -> Deadlines<T> {
        let deadline = Instant::now() + limits.first_byte;
        Deadlines {
            inner,
            activity,
            idle: limits.idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            started: false,
        }
    }

    fn touch(&mut self) {
        self.started = true;
        self.deadline = Instant::now() + self.idle;
    }

    /// Points the timer at the deadline (lazily: traffic only moves
    /// `deadline`).
    fn arm(&mut self) {
        if self.timer.deadline() != self.deadline {
            self.timer.as_mut().reset(self.deadline);
        }
    }

    /// Whether the deadline has passed with nothing in flight; re-arms the
    /// timer (lazily: traffic only moves `deadline`) when it has not.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.activity.busy() {
            return false;
        }
        loop {
            self.arm();
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= self.deadline {
                return true;
            }
        }
    }
}

impl Deadlines<tokio::net::TcpStream> {
    /// Waits, holding no buffer, until the socket has something to read
    /// (`true`) or its deadline passes with nothing in flight (`false`, and
    /// the connection is marked closed by that deadline).
    pub async fn readable(&mut self) -> bool {
        self.arm();
        tokio::select! {
            r = self.inner.readable() => r.is_ok(),
            () = self.timer.as_mut() => {
                self.activity.close(if self.started { Closed::Idle } else { Closed::FirstByte });
                false
            }
        }
    }

    /// While a request is in flight: whether the client has closed or reset
    /// its socket (`Ready(true)`) or sent the next request's bytes
    /// (`Ready(false)`); `Pending` until either, woken when the socket turns
    /// readable. Peeks one byte; holds no buffer.
    pub fn poll_left(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut one = [0u8; 1];
        let mut buf = ReadBuf::new(&mut one);
        match self.inner.poll_peek(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(true),
            Poll::Ready(Ok(_)) => Poll::Ready(false),
        }
    }

    /// Whether the client opens with HTTP/2's preface (`PRI * HTTP/2.0`),
    /// read without consuming it; `None` when the client closed or the
    /// first-byte deadline passed first.
    pub async fn sniff_h2(&mut self) -> Option<bool> {
        const PRI: &[u8] = b"PRI";
        let mut head = [0u8; 3];
        for _ in 0..50 {
            self.arm();
            let n = tokio::select! {
                r = self.inner.peek(&mut head) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => n,
                },
                () = self.timer.as_mut() => {
                    self.activity.close(Closed::FirstByte);
                    return None;
                }
            };
            if head[..n] != PRI[..n] {
                return Some(false);
            }
            if n == PRI.len() {
                return Some(true);
            }
            // A prefix of the preface so far: wait for the rest.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(false)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.expired(cx) {
                    let why = if self.started {
                        Closed::Idle
                    } else {
                        Closed::FirstByte
                    };
                    self.activity.close(why);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection closed: {}", why.label()),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max: 4,
            per_peer: 2,
        }
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            256                  524288               files     \n";
        assert_eq!(nofile_soft(text), Some(256));
        assert_eq!(
            nofile_soft("Max open files unlimited unlimited files"),
            Some(u64::MAX)
        );
        assert_eq!(nofile_soft("nothing here"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_first_byte_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut conn = Deadlines::new(server, &limits(), activity.clone());
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(activity.closed(), Some(Closed::FirstByte));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_moves_the_deadline_and_a_request_in_flight_holds_it() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut conn = Deadlines::new(server, &limits(), activity.clone());
        let mut buf = [0u8; 8];
        client.write_all(b"GET").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 3);
        // A request in flight: two minutes of silence do not close it.
        let request = activity.enter();
        let quiet = tokio::time::timeout(Duration::from_secs(120), conn.read(&mut buf)).await;
        assert!(quiet.is_err(), "still open while a request is in flight");
        drop(request);
        conn.write_all(b"answer").await.unwrap();
        let started = Instant::now();
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(activity.closed(), Some(Closed::Idle));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(60),
            "idle counts from the last write"
        );
    }

    #[tokio::test]
    async fn a_peer_gets_its_share_and_the_process_its_cap() {
        let gate = Gate::new(limits());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = gate.admit(a, gate.slot().await).unwrap();
        let _a2 = gate.admit(a, gate.slot().await).unwrap();
        assert!(
            gate.admit(a, gate.slot().await).is_none(),
            "a third from one peer"
        );
        let _b1 = gate.admit(b, gate.slot().await).unwrap();
        let _b2 = gate.admit(b, gate.slot().await).unwrap();
        assert_eq!(gate.open(), 4);
        // At the cap, a slot waits until a connection closes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.slot()).await;
        assert!(waiting.is_err(), "no fifth slot");
        drop(a1);
        let slot = tokio::time::timeout(Duration::from_secs(1), gate.slot()).await;
        assert!(gate.admit(a, slot.unwrap()).is_some(), "freed by the close");
    }
}
