//! Plain HTTP/1 connections that hold no buffers between requests.
//!
//! hyper's HTTP/1 server gives each connection an 8 KiB write buffer when
//! it is made and an 8 KiB read buffer at its first read, and keeps both
//! for the connection's life: 5,000 idle keep-alive connections held about
//! 90 MB. Here a keep-alive connection between requests is *parked*: once
//! a response is written and nothing has been in flight for 250 ms (a busy
//! client keeps its hyper connection), hyper's connection is ended without
//! closing the socket ([`graceful_shutdown`] while idle, then
//! [`into_parts`]), its buffers go, and the socket waits alone for its next
//! byte or its idle deadline. The next request is served by a new hyper
//! connection over the same socket, starting with whatever bytes the last
//! one had read past its request (pipelining).
//!
//! The response is never changed by this: hyper is only asked to stop once
//! the response head is written (a request in flight keeps its
//! connection), so no `Connection: close` is added. A client that asked
//! for the connection to close (`Connection: close`, HTTP/1.0 without
//! keep-alive) gets its socket closed after the answer, as before.
//!
//! HTTP/2 (prior knowledge, `PRI * HTTP/2.0`) and TLS connections are served
//! by hyper-util's auto builder as before.
//!
//! [`graceful_shutdown`]: hyper::server::conn::http1::Connection::graceful_shutdown
//! [`into_parts`]: hyper::server::conn::http1::Connection::into_parts

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conn::{Activity, Deadlines};

/// A response future the parked loop can poll in place.
pub type Answer = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

/// Serves HTTP/1 requests on `io` until the client closes, a deadline
/// passes, an answer or the client says close, or `stop` changes (server shutdown:
/// a request in flight finishes first).
///
/// A plain function returning its future, not an `async fn`: an `async fn`
/// copies its arguments into its body, and the future lives in the
/// connection's task as long as the connection (144 B a connection).
#[allow(clippy::manual_async_fn)] // see above
pub fn serve<'a, S>(
    mut io: Deadlines<TcpStream>,
    builder: &'a http1::Builder,
    svc: S,
    activity: &'a Activity,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'a
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = Answer,
        > + Clone
        + Unpin
        + Send
        + 'a,
{
    async move {
        let mut pending = Bytes::new();
        loop {
            if pending.is_empty() {
                tokio::select! {
                    readable = io.readable() => if !readable { return },
                    _ = stop.changed() => return,
                }
            }
            let served = activity.requests();
            let socket = Arc::new(Mutex::new(io));
            let rewind = Rewind {
                pre: pending,
                io: socket.clone(),
            };
            let mut conn = Box::new(builder.serve_connection(TokioIo::new(rewind), svc.clone()));
            let mut shutting = false;
            let mut idle = Idle {
                nap: None,
                armed: None,
                served,
            };
            let mut watch = Watch::default();
            // A stop sent since the socket was parked is unseen: `changed`
            // fires at once below.
            let mut stopping = false;
            let ended = loop {
                let drive = poll_fn(|cx| {
                    drive(
                        &mut conn,
                        &socket,
                        cx,
                        activity,
                        &mut idle,
                        &mut watch,
                        &mut shutting,
                    )
                });
                tokio::select! {
                    r = drive => break r,
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        if !shutting {
                            Pin::new(&mut *conn).graceful_shutdown();
                            shutting = true;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                match e {
                    Ended::Hyper(e) => {
                        tracing::debug!(error = %e, "connection ended with an error")
                    }
                    Ended::ClientLeft => {
                        tracing::debug!("the client left while a request was in flight")
                    }
                }
                return;
            }
            let parts = conn.into_parts();
            let rewound = parts.io.into_inner();
            drop(socket);
            let Ok(socket) = Arc::try_unwrap(rewound.io) else {
                return;
            };
            pending = if rewound.pre.is_empty() {
                parts.read_buf
            } else {
                let mut joined = Vec::with_capacity(rewound.pre.len() + parts.read_buf.len());
                joined.extend_from_slice(&rewound.pre);
                joined.extend_from_slice(&parts.read_buf);
                joined.into()
            };
            io = socket.into_inner();
            // hyper ended on its own (the answer or the client said close, or
            // the read side closed), or the server is stopping: close the socket.
            if !shutting || stopping {
                return;
            }
        }
    }
}

/// How long a connection that has answered stays with hyper, idle, before
/// it is parked: a client sending request after request keeps its hyper
/// connection (and its buffers) instead of paying to rebuild one each time.
const PARK_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// When an answered connection went idle.
struct Idle {
    /// Made when first armed: a connection busy with a stream (or a
    /// client that closes after one answer) never needs one.
    nap: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The request count when the nap was armed.
    armed: Option<u64>,
    /// The request count when the hyper connection was made.
    served: u64,
}

/// The watch on the socket for the client leaving while a request is in
/// flight (see [`drive`]).
#[derive(Default)]
struct Watch {
    /// The request count when bytes of a next request were seen waiting
    /// while one was in flight (the client pipelines): the socket is not
    /// watched again until hyper has read them.
    waiting: Option<u64>,
}

/// How a connection's service ended before hyper finished it.
#[derive(Debug)]
enum Ended {
    Hyper(hyper::Error),
    /// The client closed or reset its socket while a request was in flight.
    ClientLeft,
}

/// Polls `conn`; once it has answered a request and nothing has been in
/// flight for [`PARK_AFTER`], asks it to stop so its socket can be parked.
///
/// hyper is built with `half_close`, so it does not read while a request is
/// in flight; reading on then would take a second read buffer (the first is
/// still shared with the request's header values) and keep it for the
/// connection's life, about 4 KB of memory per stream. Instead the socket
/// is watched here, without a buffer (a one-byte peek when it turns
/// readable): a client that closes or resets it ends the connection, and
/// with it the request, as hyper's own read would have.
fn drive<S>(
    conn: &mut http1::Connection<TokioIo<Rewind>, S>,
    socket: &Socket,
    cx: &mut Context<'_>,
    activity: &Activity,
    idle: &mut Idle,
    watch: &mut Watch,
    shutting: &mut bool,
) -> Poll<Result<(), Ended>>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body> + Unpin,
    S::Future: Unpin,
{
    loop {
        if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(r.map_err(Ended::Hyper));
        }
        if activity.busy() {
            let requests = activity.requests();
            if watch.waiting != Some(requests) {
                match socket.lock().poll_left(cx) {
                    Poll::Ready(true) => return Poll::Ready(Err(Ended::ClientLeft)),
                    Poll::Ready(false) => watch.waiting = Some(requests),
                    Poll::Pending => {}
                }
            }
        }
        // A response body is dropped by hyper inside the poll above once
        // its head and last frame are written; a next request already read
        // is in flight again by then. So "answered and idle" is exact here.
        let requests = activity.requests();
        if *shutting || activity.busy() || requests == idle.served {
            return Poll::Pending;
        }
        let nap = idle
            .nap
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(PARK_AFTER)));
        if idle.armed != Some(requests) {
            idle.armed = Some(requests);
            nap.as_mut().reset(tokio::time::Instant::now() + PARK_AFTER);
        }
        if nap.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut *conn).graceful_shutdown();
        *shutting = true;
    }
}

/// A connection's socket, shared by hyper (through [`Rewind`]) and the
/// watch for the client leaving ([`drive`]); both run in the connection's
/// one task, so the lock is never contended.
type Socket = Arc<Mutex<Deadlines<TcpStream>>>;

/// The socket with bytes already read in front of it.
#[derive(Debug)]
pub struct Rewind {
    pre: Bytes,
    io: Socket,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.io.lock()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io.lock()).poll_shutdown(cx)
    }
}
