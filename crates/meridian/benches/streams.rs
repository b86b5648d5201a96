//! Streams at scale through a real `meridian serve` process.
//!
//! 1. Time to first byte of ConverseStream (eventstream), one request at a
//!    time, straight to an upstream that answers at once and through
//!    Meridian: what Meridian adds; then the same for an Anthropic Messages
//!    stream (server-sent events) from a native Messages endpoint
//!    (`/anthropic/v1/messages`) through Meridian's `/v1/messages`.
//! 2. 5,000 streams held at once (`--streams N`), each from an upstream
//!    dripping one event every 100 ms for 10 s: the gateway's peak resident
//!    memory, its CPU per forwarded event, and whether every event arrived.
//!    They open 250 at a time, 50 ms apart (`--ramp-ms N` for slower: a
//!    gateway under a heap profiler cannot take them that fast, and its
//!    peak would then be requests in flight, not streams held).
//!
//! 3. 5,000 idle keep-alive connections (`--idle N`): each sends one
//!    `GET /health` and then holds its connection open, sending nothing;
//!    the gateway's resident memory with all of them open.
//! 4. The same streams as 2. through a bare hyper proxy (this binary run
//!    again with `--floor-proxy`: hyper's HTTP/1 server and hyper-util's
//!    pooled client with Meridian's client settings, mimalloc, nothing
//!    else): the memory any hyper-based HTTP/1 proxy holds for them, to
//!    read Meridian's own share against (`--no-floor` skips it).
//!
//! Also reports start-up time to `/ready` and idle memory. The gateway runs
//! as its own process (its RSS and CPU are read from /proc); upstream and
//! clients run in this one. Everything listens on 127.0.0.1 and stops by
//! itself. `cargo bench -p meridian --bench streams` (`-- --quick`: 1,000
//! streams for 5 s). `MERIDIAN_BENCH_BIN=path` runs that gateway binary
//! instead of this build's (before/after comparisons in one sitting).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a bench binary

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meridian_wire::eventstream;
use tokio::time::Instant;

/// mimalloc, as the `meridian` binary has: the floor proxy (below) runs
/// in this binary and is compared with the gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DRIP: Duration = Duration::from_millis(100);

/// ConverseStream events: messageStart, `deltas` text deltas (one per
/// `DRIP` when `drip`), contentBlockStop, messageStop, metadata.
fn events(
    deltas: usize,
    drip: bool,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    let first = eventstream::event("messageStart", br#"{"role":"assistant"}"#);
    let delta = eventstream::event(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"tok "}}"#,
    );
    let tail = [
        eventstream::event("contentBlockStop", br#"{"contentBlockIndex":0}"#),
        eventstream::event("messageStop", br#"{"stopReason":"end_turn"}"#),
        eventstream::event(
            "metadata",
            br#"{"usage":{"inputTokens":12,"outputTokens":10,"totalTokens":22},"metrics":{"latencyMs":1}}"#,
        ),
    ];
    let mut all = vec![first];
    all.extend(std::iter::repeat_n(delta, deltas));
    all.extend(tail);
    futures_util::stream::iter(all.into_iter().enumerate()).then(move |(i, e)| async move {
        if drip && i > 0 {
            tokio::time::sleep(DRIP).await;
        }
        Ok(Frame::data(e))
    })
}

/// An Anthropic Messages stream as server-sent events, whole.
fn messages_sse() -> Bytes {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok "}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok "}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":10}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let mut out = String::new();
    for (name, data) in events {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    Bytes::from(out)
}

/// A request ID of Bedrock's shape (a v4 UUID), distinct per answer: a
/// real answer's headers carry one, and Meridian passes it on.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 16, n)
}

/// An upstream answering ConverseStream, with Bedrock's headers (its
/// content type and a request ID): at once, or dripping when the
/// request body says "drip" (then `deltas` deltas, one per 100 ms); and
/// the native Messages endpoint, at once, with [`messages_sse`].
async fn upstream(deltas: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| async move {
                    if req.uri().path() == "/anthropic/v1/messages" {
                        let body: Box<
                            dyn hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Unpin,
                        > = Box::new(Full::new(messages_sse()));
                        return Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "text/event-stream")
                                .header("x-amzn-requestid", request_id())
                                .body(body)
                                .unwrap(),
                        );
                    }
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let drip = body.windows(4).any(|w| w == b"drip");
                    let n = if drip { deltas } else { 2 };
                    let body: Box<
                        dyn hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Unpin,
                    > = Box::new(StreamBody::new(Box::pin(events(n, drip))));
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/vnd.amazon.eventstream")
                            .header("x-amzn-requestid", request_id())
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fields of a process's `/proc/<pid>/status` in KiB, 0 when absent.
fn status_kib<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// `(VmRSS, VmHWM)` in KiB and CPU time in ms of a process.
fn proc_stats(pid: u32) -> (u64, u64, f64) {
    let [rss, hwm] = status_kib(pid, ["VmRSS:", "VmHWM:"]);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (rss, hwm, ticks * 10.0) // 100 ticks per second
}

/// A JSON POST on its own connection: when it was sent, and the body of
/// its 200 answer, still arriving.
async fn post(addr: &str, path: &str, body: Bytes) -> Result<(Instant, Incoming), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", addr)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let t = Instant::now();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    Ok((t, resp.into_body()))
}

/// One ConverseStream request on its own connection: (time to the first
/// body bytes, events received).
async fn stream_once(addr: &str, model: &str, text: &str) -> Result<(Duration, u64), String> {
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":[{{"text":"{text}"}}]}}],"inferenceConfig":{{"maxTokens":64}}}}"#
    );
    let (t, mut body) = post(
        addr,
        &format!("/model/{model}/converse-stream"),
        Bytes::from(body),
    )
    .await?;
    let mut first = None;
    let mut decoder = eventstream::Decoder::new();
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            first.get_or_insert_with(|| t.elapsed());
            decoder.push(&data);
            while let Some(f) = decoder.next_frame().map_err(|e| e.to_string())? {
                if matches!(f.kind, eventstream::FrameKind::Exception(_)) {
                    return Err("exception event".into());
                }
                events += 1;
            }
        }
    }
    Ok((first.unwrap_or_default(), events))
}

/// One Anthropic Messages stream (`path`, `body`) on its own connection:
/// (time to the first body bytes, server-sent events received).
async fn sse_once(addr: &str, path: &str, body: &'static str) -> Result<(Duration, u64), String> {
    let (t, mut body) = post(addr, path, Bytes::from_static(body.as_bytes())).await?;
    let mut first = None;
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            first.get_or_insert_with(|| t.elapsed());
            all.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8_lossy(&all);
    if text.contains("event: error") {
        return Err(format!("an error event: {text}"));
    }
    Ok((
        first.unwrap_or_default(),
        text.matches("\n\n").count() as u64,
    ))
}

/// What holding many slow streams at once through one process measured.
struct Held {
    streams: usize,
    deltas: usize,
    events: u64,
    peak_open: u64,
    took: Duration,
    failed: usize,
    short: usize,
    peak_rss: u64,
    /// `RssAnon` and `RssFile` (the binary's code, mostly) at the peak
    /// sample, in KiB.
    peak_split: [u64; 2],
    hwm: u64,
    cpu_ms: f64,
}

impl Held {
    fn print(&self, who: &str) {
        println!(
            "{} streams ({} open at once at most), {} deltas each at one per 100 ms: {} events in {:.1} s; \
             failed {}, incomplete {}",
            self.streams,
            self.peak_open,
            self.deltas,
            self.events,
            self.took.as_secs_f64(),
            self.failed,
            self.short
        );
        println!(
            "{who}: peak RSS {:.1} MB (VmHWM {:.1} MB; at the peak {:.1} MB anonymous, {:.1} MB file-backed); CPU {:.0} ms = {:.2} µs per forwarded event",
            self.peak_rss as f64 / 1024.0,
            self.hwm as f64 / 1024.0,
            self.peak_split[0] as f64 / 1024.0,
            self.peak_split[1] as f64 / 1024.0,
            self.cpu_ms,
            self.cpu_ms * 1e3 / self.events.max(1) as f64
        );
    }
}

/// `streams` ConverseStream streams through `addr` (process `pid`), opened
/// 5,000 a second, each dripping `deltas` deltas one per 100 ms: the
/// process's peak RSS (sampled every 100 ms) and CPU.
async fn hold_streams(
    addr: &str,
    pid: u32,
    streams: usize,
    deltas: usize,
    seconds: usize,
    ramp: Duration,
) -> Held {
    let (_, _, cpu0) = proc_stats(pid);
    let events = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let peak_open = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        if i % 250 == 0 && i > 0 {
            tokio::time::sleep(ramp).await; // by default 5,000 per second
        }
        let (addr, events, open, peak_open) = (
            addr.to_string(),
            events.clone(),
            open.clone(),
            peak_open.clone(),
        );
        tasks.spawn(async move {
            let now = open.fetch_add(1, Ordering::Relaxed) + 1;
            peak_open.fetch_max(now, Ordering::Relaxed);
            let r = stream_once(&addr, "chat", "drip").await;
            open.fetch_sub(1, Ordering::Relaxed);
            if let Ok((_, e)) = &r {
                events.fetch_add(*e, Ordering::Relaxed);
            }
            r.map(|(_, e)| e)
        });
    }
    let mut peak_rss = 0;
    let mut peak_split = [0, 0];
    let sampler = async {
        loop {
            let [rss, anon, file] = status_kib(pid, ["VmRSS:", "RssAnon:", "RssFile:"]);
            if rss > peak_rss {
                peak_rss = rss;
                peak_split = [anon, file];
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut failed = 0;
    let mut short = 0;
    let expected = deltas as u64 + 4;
    let collect = async {
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(e) if e == expected => {}
                Ok(_) => short += 1,
                Err(_) => failed += 1,
            }
        }
    };
    tokio::select! {
        () = collect => {}
        () = sampler => {}
        () = tokio::time::sleep(Duration::from_secs(seconds as u64 * 3 + 60)) => panic!("streams did not finish in time"),
    }
    let took = t0.elapsed();
    let (_, hwm, cpu1) = proc_stats(pid);
    let events = events.load(Ordering::Relaxed);
    Held {
        streams,
        deltas,
        events,
        peak_open: peak_open.load(Ordering::Relaxed),
        took,
        failed,
        short,
        peak_rss,
        peak_split,
        hwm,
        cpu_ms: cpu1 - cpu0,
    }
}

/// `--floor-proxy UPSTREAM LISTEN`: the least an HTTP/1 proxy on hyper
/// does — hyper's server, the request body read whole and sent on with
/// hyper-util's pooled client (the settings Meridian's upstream client
/// has), the answer's body passed back frame by frame. `/ready` answers
/// 200. Runs until killed.
fn floor_proxy(up: &str, listen: &str) {
    use http_body_util::combinators::BoxBody;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let up: Arc<str> = up.into();
    rt.block_on(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(meridian_upstream::bedrock::POOL_IDLE)
                .http1_read_buf_exact_size(meridian_upstream::bedrock::READ_BUF_BYTES)
                .build_http::<Full<Bytes>>();
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tcp.set_nodelay(true).ok();
            let (client, up) = (client.clone(), up.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (client, up) = (client.clone(), up.clone());
                    async move {
                        let empty = || {
                            http_body_util::Empty::<Bytes>::new()
                                .map_err(|never| match never {})
                                .boxed()
                        };
                        if req.uri().path() == "/ready" {
                            return Ok::<_, Infallible>(hyper::Response::new(empty()));
                        }
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let mut out = hyper::Request::post(format!("{up}{}", parts.uri.path()))
                            .body(Full::new(body))
                            .unwrap();
                        if let Some(v) = parts.headers.get(hyper::header::CONTENT_TYPE) {
                            out.headers_mut()
                                .insert(hyper::header::CONTENT_TYPE, v.clone());
                        }
                        Ok(match client.request(out).await {
                            Ok(resp) => resp.map(|b| -> BoxBody<Bytes, hyper::Error> { b.boxed() }),
                            Err(_) => {
                                let mut r = hyper::Response::new(empty());
                                *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                r
                            }
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-proxy") {
        floor_proxy(&args[i + 1], &args[i + 2]);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let floor = !std::env::args().any(|a| a == "--no-floor");
    let arg = |name: &str| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
    };
    let streams = arg("--streams").unwrap_or(if quick { 1_000 } else { 5_000 });
    let idle = arg("--idle").unwrap_or(if quick { 1_000 } else { 5_000 });
    let seconds = arg("--seconds").unwrap_or(if quick { 5 } else { 10 });
    let ramp = Duration::from_millis(arg("--ramp-ms").unwrap_or(50) as u64);
    let deltas = seconds * 10;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let up = upstream(deltas).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("meridian.toml");
        std::fs::write(
            &config,
            format!(
                "region = \"us-east-1\"\n[upstream]\nmode = \"aws\"\nendpoints = {{ us-east-1 = \"{up}\" }}\n\
                 [server]\nmax_concurrent_requests = 20000\n[routing]\ndeadline_ms = 600000\n\
                 [models.chat]\nmodel = \"anthropic.claude-3-haiku-20240307-v1:0\"\nresidency = [\"us-east-1\"]\n\
                 [models.claude]\nmodel = \"claude-opus-4-7\"\nresidency = [\"us\"]\n\
                 [logging]\nsink = \"none\"\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        // MERIDIAN_BENCH_BIN measures another build (an earlier release)
        // in the same run.
        let bin = meridian_catalog::env::EnvSource::non_empty(
            &meridian_catalog::env::ProcessEnv,
            "MERIDIAN_BENCH_BIN",
        )
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_meridian").into());
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--config", config.to_str().unwrap(), "--listen", &addr])
            .env("AWS_ACCESS_KEY_ID", "AKIDSTREAMS")
            .env("AWS_SECRET_ACCESS_KEY", "streams-bench-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let ready = loop {
            if ready(&addr).await {
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "meridian did not become ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (idle_rss, _, _) = proc_stats(pid);
        println!("start-up to /ready: {:.0} ms; idle RSS {:.1} MB", ready.as_secs_f64() * 1e3, idle_rss as f64 / 1024.0);

        // 3. Idle keep-alive connections, first: freed memory stays with the
        // process, so they are measured before the streams have used any.
        let (before_idle, _, _) = proc_stats(pid);
        let mut held = Vec::with_capacity(idle);
        let mut refused = 0;
        for i in 0..idle {
            if i % 250 == 0 && i > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match keep_alive(&addr).await {
                Some(c) => held.push(c),
                None => refused += 1,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (idle_peak, _, _) = proc_stats(pid);
        println!(
            "{} idle keep-alive connections held ({refused} refused): gateway RSS {:.1} MB ({:.1} MB before they opened; {:.1} KB each)",
            held.len(),
            idle_peak as f64 / 1024.0,
            before_idle as f64 / 1024.0,
            idle_peak.saturating_sub(before_idle) as f64 / held.len().max(1) as f64
        );
        drop(held);
        assert_eq!(refused, 0, "idle connections were refused");
        tokio::time::sleep(Duration::from_millis(500)).await;

        // 1. Time to first byte, one stream at a time.
        let up_addr = up.trim_start_matches("http://").to_string();
        let n = if quick { 300 } else { 1_000 };
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for i in 0..2 * n {
            let (target, model, out) = if i % 2 == 0 {
                (&up_addr, "anthropic.claude-3-haiku-20240307-v1:0", &mut direct)
            } else {
                (&addr, "chat", &mut through)
            };
            let (ttfb, events) = stream_once(target, model, "fast").await.unwrap();
            assert_eq!(events, 6, "a stream lost events");
            out.push(ttfb.as_secs_f64() * 1e6);
        }
        let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        let (t50, t99) = (pct(&mut through, 0.5), pct(&mut through, 0.99));
        println!("time to first byte, ConverseStream (eventstream), {n} streams each (µs): direct p50 {d50:.0} p99 {d99:.0}; through Meridian p50 {t50:.0} p99 {t99:.0}; added p50 {:.0} p99 {:.0}", t50 - d50, t99 - d99);

        // 1b. The same for an Anthropic Messages stream from the native
        // Messages endpoint (SSE in, SSE out): us.anthropic.claude-opus-4-7
        // called in us-east-1, the nearest candidate.
        const DIRECT: &str = r#"{"model":"us.anthropic.claude-opus-4-7","anthropic_version":"bedrock-2023-05-31","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"fast"}]}"#;
        const THROUGH: &str = r#"{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"fast"}]}"#;
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for i in 0..2 * n {
            let (target, path, body, out) = if i % 2 == 0 {
                (&up_addr, "/anthropic/v1/messages", DIRECT, &mut direct)
            } else {
                (&addr, "/v1/messages", THROUGH, &mut through)
            };
            let (ttfb, events) = sse_once(target, path, body).await.unwrap();
            assert_eq!(events, 7, "a Messages stream lost events");
            out.push(ttfb.as_secs_f64() * 1e6);
        }
        let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        let (t50, t99) = (pct(&mut through, 0.5), pct(&mut through, 0.99));
        println!("time to first byte, native Messages (SSE), {n} streams each (µs): direct p50 {d50:.0} p99 {d99:.0}; through Meridian p50 {t50:.0} p99 {t99:.0}; added p50 {:.0} p99 {:.0}", t50 - d50, t99 - d99);

        // 2. Many slow streams at once.
        let held = hold_streams(&addr, pid, streams, deltas, seconds, ramp).await;
        held.print("gateway");
        child.kill().ok();
        child.wait().ok();
        assert_eq!(held.failed + held.short, 0, "streams failed or lost events");

        // 4. The same streams through a bare hyper proxy (this binary, with
        // mimalloc and the upstream client settings Meridian uses): the
        // floor an HTTP/1 proxy built on hyper starts from.
        if floor {
            let port = free_port();
            let proxy_addr = format!("127.0.0.1:{port}");
            let mut proxy = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--floor-proxy", &up, &proxy_addr])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let t0 = Instant::now();
            while !crate::ready(&proxy_addr).await {
                assert!(t0.elapsed() < Duration::from_secs(10), "the floor proxy did not start");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (idle_rss, _, _) = proc_stats(proxy.id());
            let held = hold_streams(&proxy_addr, proxy.id(), streams, deltas, seconds, ramp).await;
            println!("bare hyper proxy (floor): idle RSS {:.1} MB", idle_rss as f64 / 1024.0);
            held.print("bare hyper proxy");
            proxy.kill().ok();
            proxy.wait().ok();
            assert_eq!(held.failed + held.short, 0, "streams through the floor proxy failed");
        }
    });
}

/// A connection that has had one `GET /health` answered and is held open,
/// idle (the sender and the connection task are kept together).
async fn keep_alive(
    addr: &str,
) -> Option<(
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get("/health")
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    let _ = resp.into_body().collect().await.ok()?;
    Some((send, task))
}

/// Whether `/ready` answers 200.
async fn ready(addr: &str) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = hyper::Request::get("/ready")
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .unwrap();
    matches!(send.send_request(req).await, Ok(r) if r.status() == 200)
}
