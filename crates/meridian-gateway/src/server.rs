//! The HTTP server: HTTP/1.1 and HTTP/2, connection caps and deadlines
//! (`conn.rs`), header read timeout, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::conn::{Activity, Closed, Deadlines};
use crate::live::Live;
use crate::metrics::Family;
use crate::metrics::labels;
use crate::state::AppState;
use crate::{admin, anthropic, bedrock, openai, responses, status, ui};

/// How long accepting pauses after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A client must send its request head within this time.
    pub header_read_timeout: Duration,
    /// Largest HTTP/1 read buffer (bounds header size).
    pub max_header_bytes: usize,
    /// How long in-flight requests get to finish on shutdown.
    pub drain: Duration,
    /// Connection caps and deadlines.
    pub connections: crate::conn::Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            drain: Duration::from_secs(30),
            connections: crate::conn::Limits::default(),
        }
    }
}

/// The router: Meridian's own endpoints, then the Bedrock API for everything else.
pub fn router(state: Arc<Live>) -> Router {
    Router::new()
        .route("/health", get(status::health))
        .route("/status", get(status::status))
        .route("/ready", get(status::ready))
        .route("/metrics", get(status::metrics))
        .route("/v1/messages", axum::routing::any(anthropic::handle))
        .route(
            "/v1/messages/count_tokens",
            axum::routing::any(anthropic::handle),
        )
        // The same door under `/anthropic`, where clients whose base URL is
        // Bedrock's `…/anthropic` (the AWS default, Mantle's too) send it.
        .route(
            "/anthropic/v1/messages",
            axum::routing::any(anthropic::handle),
        )
        .route(
            "/anthropic/v1/messages/count_tokens",
            axum::routing::any(anthropic::handle),
        )
        .route("/v1/responses", axum::routing::any(responses::handle))
        .route("/v1/files", axum::routing::any(crate::batch::openai_handle))
        .route(
            "/v1/files/{*rest}",
            axum::routing::any(crate::batch::openai_handle),
        )
        .route(
            "/v1/batches",
            axum::routing::any(crate::batch::openai_handle),
        )
        .route(
            "/v1/batches/{*rest}",
            axum::routing::any(crate::batch::openai_handle),
        )
        .route(
            "/v1/messages/batches",
            axum::routing::any(crate::batch::anthropic_handle),
        )
        .route(
            "/v1/messages/batches/{*rest}",
            axum::routing::any(crate::batch::anthropic_handle),
        )
        .route(
            "/anthropic/v1/messages/batches",
            axum::routing::any(crate::batch::anthropic_handle),
        )
        .route(
            "/anthropic/v1/messages/batches/{*rest}",
            axum::routing::any(crate::batch::anthropic_handle),
        )
        .route(
            "/v1/responses/{*rest}",
            axum::routing::any(responses::handle),
        )
        .route("/v1/{*rest}", axum::routing::any(openai::handle))
        .route(
            "/admin/keys",
            axum::routing::post(admin::issue).get(admin::list),
        )
        .route("/admin/keys/{id}", axum::routing::delete(admin::revoke))
        .route("/admin/usage", get(admin::usage))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/ui/countries-110m.json", get(ui::countries))
        .route("/ui/api/auth", get(ui::auth))
        .route("/ui/api/stream", get(ui::stream))
        .route("/ui/api/snapshot", get(ui::snapshot_once))
        .route("/ui/api/requests/{id}", get(ui::request))
        .route("/ui/api/drills", axum::routing::post(ui::start_drill))
        .route("/ui/api/drills/{id}/report", get(ui::drill_report))
        .fallback(bedrock::handle)
        .with_state(state)
}

/// Serves plain HTTP until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, Live::new(state), opts, None, shutdown).await
}

/// A client must finish its TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP, or HTTPS with `tls`, until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<Live>,
    opts: ServeOptions,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let gate = crate::conn::Gate::new(opts.connections);
    state.set_connections(gate.clone());
    let limits = gate.limits();
    tracing::debug!(?limits, "connection limits");
    let metrics = state.get().metrics.clone();
    let app = router(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    // Plain HTTP/1 connections are parked between requests (`park`).
    // They do not read while a request is in flight (`half_close`): `park`
    // watches for the client leaving without a second read buffer.
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .half_close(true)
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192));
    let builders = Arc::new((builder, h1));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // At the connection cap, accepting waits for a connection to close.
        let accept = async {
            let slot = gate.slot().await;
            (listener.accept().await, slot)
        };
        let (accepted, slot) = tokio::select! {
            a = accept => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: back off
                // instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed; pausing accepts for 100 ms");
                metrics.add(
                    CONNECTIONS_REFUSED,
                    labels([("reason", "accept_error")]),
                    1.0,
                );
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(admitted) = gate.admit(peer.ip(), slot) else {
            metrics.add(
                CONNECTIONS_REFUSED,
                labels([("reason", Closed::PerPeer.label())]),
                1.0,
            );
            tracing::debug!(peer = %peer.ip(), "connection refused: the peer is at its connection cap");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let mut io = Deadlines::new(stream, &limits, activity.clone());
        let svc = tracked(app.clone(), activity.clone(), opts.max_header_bytes);
        let builders = builders.clone();
        let stopped = stopped.clone();
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        let tls = tls.clone();
        // The task holds only what a parked connection needs; the larger
        // HTTP/2 and TLS paths are boxed when taken. What it captures is
        // used in place, not bound again inside (a copy in the task for the
        // connection's life).
        tokio::spawn(async move {
            match tls {
                None => match io.sniff_h2().await {
                    None => {}
                    Some(false) => {
                        drop(watcher);
                        crate::park::serve(io, &builders.1, svc, &activity, stopped).await;
                    }
                    Some(true) => Box::pin(watched(&builders.0, io, svc, watcher)).await,
                },
                Some(tls) => {
                    Box::pin(async {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(io))
                            .await
                        {
                            Ok(Ok(s)) => watched(&builders.0, s, svc, watcher).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => {}
                        }
                    })
                    .await;
                }
            }
            if let Some(why) = activity.closed() {
                metrics.add(CONNECTIONS_CLOSED, labels([("reason", why.label())]), 1.0);
            }
            drop(admitted);
        });
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    let parked = async {
        tokio::join!(graceful.shutdown(), stop.closed());
    };
    tokio::select! {
        () = parked => {}
        () = tokio::time::sleep(opts.drain) => tracing::warn!("shutdown: in-flight requests did not finish in time"),
    }
    Ok(())
}

/// Serves `io` with hyper-util's auto builder (HTTP/1 or HTTP/2), watched
/// for graceful shutdown.
async fn watched<I, S>(
    builder: &Builder<TokioExecutor>,
    io: I,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = crate::park::Answer,
        > + Clone
        + Send
        + 'static,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Connections closed by their deadlines, by reason.
const CONNECTIONS_CLOSED: Family = Family::ConnectionsClosedTotal;
/// Connections refused at accept, by reason.
const CONNECTIONS_REFUSED: Family = Family::ConnectionsRefusedTotal;

/// The router as a hyper service that marks each request in flight on its
/// connection until its response body is done (or dropped), so a quiet
/// stream keeps its connection while an idle one does not. A request head
/// over `max_header_bytes` is refused with 431 here as well: hyper's own
/// limit is on its read buffer, which one large read can pass.
fn tracked(
    app: Router,
    activity: Arc<Activity>,
    max_header_bytes: usize,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = crate::park::Answer,
> + Clone
+ Unpin {
    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        use http_body_util::BodyExt as _;
        use tower_service::Service as _;
        let in_flight = activity.enter();
        if head_bytes(&req) > max_header_bytes {
            let mut resp = axum::response::Response::new(axum::body::Body::empty());
            *resp.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            // hyper closes the connection after an answer that says so.
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            drop(in_flight);
            return Box::pin(std::future::ready(Ok(resp))) as crate::park::Answer;
        }
        let answer = app.clone().call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| {
                axum::body::Body::new(body.map_frame(move |f| {
                    let _held = &in_flight;
                    f
                }))
            }))
        }) as crate::park::Answer
    })
}

/// The size of a request's head as sent: its target and header lines.
fn head_bytes<B>(req: &http::Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + target
        + 16
}

/// Probes every endpoint an exposed model may call, every `interval`: a TCP
/// connection that cannot be made within a second marks the region's
/// endpoint down for `/ready` (breakers cover failures seen by traffic).
pub async fn probe_endpoints(live: Arc<Live>, interval: Duration) {
    loop {
        let state = live.get();
        for (region, url) in state.probe_targets() {
            let up = match authority(&url) {
                Some(addr) => matches!(
                    tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(addr.as_str())
                    )
                    .await,
                    Ok(Ok(_))
                ),
                None => true,
            };
            let before = state.probes.write().insert(region.clone(), up);
            if before != Some(up) && before.is_some() {
                tracing::warn!(%region, up, "endpoint reachability changed");
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// `host:port` of an http(s) URL.
fn authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    if host.contains(':') && !host.ends_with(']') {
        return Some(host.to_string());
    }
    let port = if scheme == "https" { 443 } else { 80 };
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A connection's task holds this future for the connection's life
    /// (parked or busy with a stream): 672 B when it was an `async fn`
    /// copying its arguments into its body.
    #[tokio::test]
    async fn a_parked_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (stream, _) = accepted.unwrap();
        let activity = Arc::new(Activity::default());
        let io = Deadlines::new(stream, &crate::conn::Limits::default(), activity.clone());
        let svc = tracked(Router::new(), activity.clone(), 8192);
        let h1 = hyper::server::conn::http1::Builder::new();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let fut = crate::park::serve(io, &h1, svc, &activity, stopped);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 560, "park::serve's future is {size} B");
    }
}
