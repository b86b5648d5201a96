//! The Bedrock Runtime client: endpoint per region, SigV4 or bearer auth,
//! pooled HTTP/1.1 and HTTP/2 over rustls, and timeouts that classify.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meridian_wire::operation::encode_label;
use meridian_wire::{Action, BedrockError, ErrorKind};

use crate::outcome::{Outcome, retry_after};
use crate::sign::{MANTLE_SIGNING_NAME, SIGNING_NAME, Signer};

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// SigV4 with credentials from this source.
    SigV4(Arc<dyn CredentialSource>),
    /// A Bedrock API key, sent as `Authorization: Bearer`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SigV4(c) => write!(f, "SigV4({c:?})"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Where credentials come from; implementations cache and refresh.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Current credentials.
    fn credentials(&self) -> futures_lite::BoxedCredentials<'_>;
}

/// Boxed future type for credential sources, kept small on purpose.
pub mod futures_lite {
    use std::future::Future;
    use std::pin::Pin;

    use aws_credential_types::Credentials;

    /// The future a [`super::CredentialSource`] returns.
    pub type BoxedCredentials<'a> =
        Pin<Box<dyn Future<Output = Result<Credentials, String>> + Send + 'a>>;
}

/// Fixed credentials (static keys, or the simulated fleet's).
#[derive(Debug, Clone)]
pub struct StaticCredentials(pub Credentials);

impl CredentialSource for StaticCredentials {
    fn credentials(&self) -> futures_lite::BoxedCredentials<'_> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Timeouts, each classified differently when it fires.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// Longest gap between two body chunks.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(30),
        }
    }
}

/// Runtime endpoints per region.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Region → base URL (tests, VPC endpoints, the simulated fleet).
    pub overrides: BTreeMap<String, String>,
    /// Use the FIPS endpoints.
    pub fips: bool,
    /// Region → Mantle base URL (`https://bedrock-mantle.{region}.api.aws`),
    /// for the regions where Mantle is called; none is assumed.
    pub mantle: BTreeMap<String, String>,
}

impl Endpoints {
    /// Base URL for `region`.
    pub fn url(&self, region: &str) -> String {
        match self.overrides.get(region) {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if self.fips => format!("https://bedrock-runtime-fips.{region}.amazonaws.com"),
            None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
        }
    }

    /// Mantle's base URL for `region`, when Mantle is called there.
    pub fn mantle_url(&self, region: &str) -> Option<&str> {
        self.mantle.get(region).map(|u| u.trim_end_matches('/'))
    }

    /// Control-plane base URL for `region` (`bedrock.{region}`; an override
    /// serves both planes, as the simulated fleet does).
    pub fn control_url(&self, region: &str) -> String {
        match self.overrides.get(region) {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if self.fips => format!("https://bedrock-fips.{region}.amazonaws.com"),
            None => format!("https://bedrock.{region}.amazonaws.com"),
        }
    }
}

/// Which endpoint a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// bedrock-runtime's `/model/{id}/{action}` (Converse, InvokeModel, …).
    #[default]
    Model,
    /// bedrock-runtime's `/anthropic/v1/messages` (model in the body, SSE).
    RuntimeMessages,
    /// Mantle's `/anthropic/v1/messages`, signed for `bedrock-mantle`.
    MantleMessages,
    /// A path of bedrock-runtime's OpenAI-compatible API under `/openai`
    /// (`/v1/chat/completions`, `/v1/responses`).
    RuntimeOpenAi(&'static str),
    /// A path of Mantle's OpenAI-compatible API (`/v1/chat/completions`,
    /// `/v1/responses`), signed for `bedrock-mantle`.
    MantleOpenAi(&'static str),
}

/// The path of Bedrock's native Anthropic Messages endpoints under their base URL.
pub const MESSAGES_PATH: &str = "/anthropic/v1/messages";

/// One runtime call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Region whose endpoint is called (and signed for).
    pub region: String,
    /// Model ID or ARN, unencoded.
    pub model_id: String,
    /// What is called.
    pub action: Action,
    /// Where it is sent.
    pub route: Route,
    /// Request body.
    pub body: Bytes,
    /// Headers to pass through (content-type, accept, x-amzn-bedrock-*).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A failed attempt: what happened, and what the caller should be told.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Classification for the router.
    pub outcome: Outcome,
    /// The error in Bedrock's shape.
    pub error: BedrockError,
}

impl Failure {
    pub(crate) fn new(outcome: Outcome, kind: ErrorKind, message: String) -> Failure {
        Failure {
            outcome,
            error: BedrockError::new(kind, message),
        }
    }
}

/// A successful response head with its body still streaming.
#[derive(Debug)]
pub struct Response {
    /// Status (2xx).
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    body: ResponseBody,
}

/// A response's body without its head: what a stream keeps while it runs.
#[derive(Debug)]
pub struct ResponseBody {
    source: Source,
    idle: Duration,
    region: String,
    /// The stall timer, made when the body is first waited for and reset
    /// whenever a wait starts after a chunk.
    nap: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Waiting for a chunk since the timer was last set.
    waiting: bool,
}

/// Where a response's body comes from: an HTTP connection, or chunks made
/// in this process (an answer translated from another protocol).
enum Source {
    Http(Incoming),
    Local(tokio::sync::mpsc::Receiver<Result<Bytes, Failure>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Http(_) => "Http",
            Source::Local(_) => "Local",
        })
    }
}

impl Response {
    /// A response whose body chunks arrive on `rx` (a translated answer);
    /// `region` names its source in errors.
    pub fn local(
        headers: HeaderMap,
        rx: tokio::sync::mpsc::Receiver<Result<Bytes, Failure>>,
        idle: Duration,
        region: &str,
    ) -> Response {
        Response {
            status: StatusCode::OK,
            headers,
            body: ResponseBody::new(Source::Local(rx), idle, region),
        }
    }

    /// The body, the head dropped.
    pub fn into_body(self) -> ResponseBody {
        self.body
    }

    /// The next body chunk; `None` at the end (see [`ResponseBody::next_chunk`]).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        self.body.next_chunk().await
    }

    /// The whole body.
    pub async fn collect(self) -> Result<Bytes, Failure> {
        self.body.collect().await
    }
}

impl ResponseBody {
    fn new(source: Source, idle: Duration, region: &str) -> ResponseBody {
        ResponseBody {
            source,
            idle,
            region: region.to_string(),
            nap: None,
            waiting: false,
        }
    }

    /// The next body chunk; `None` at the end. A stall longer than the idle
    /// timeout or a broken connection is a mid-stream failure.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// [`ResponseBody::next_chunk`] as a poll: a stream's state polls it in
    /// place, with one timer for the whole body rather than one per chunk.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Failure>> {
        loop {
            let polled = match &mut self.source {
                Source::Http(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => None,
                    Poll::Ready(None) => Some(Ok(None)),
                    Poll::Ready(Some(Err(e))) => Some(Err(Failure::new(
                        Outcome::ConnectionReset,
                        ErrorKind::ModelStreamError,
                        format!("the response from {} broke off: {e}", self.region),
                    ))),
                    // A frame that is not data (trailers) is skipped.
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Some(Ok(Some(data))),
                        Err(_) => continue,
                    },
                },
                Source::Local(rx) => match rx.poll_recv(cx) {
                    Poll::Pending => None,
                    Poll::Ready(None) => Some(Ok(None)),
                    Poll::Ready(Some(r)) => Some(r.map(Some)),
                },
            };
            if let Some(r) = polled {
                self.waiting = false;
                return Poll::Ready(r);
            }
            let idle = self.idle;
            let nap = self
                .nap
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
            if !self.waiting {
                self.waiting = true;
                nap.as_mut().reset(tokio::time::Instant::now() + idle);
            }
            ready!(nap.as_mut().poll(cx));
            self.waiting = false;
            return Poll::Ready(Err(Failure::new(
                Outcome::TimeoutMidStream,
                ErrorKind::ModelStreamError,
                format!(
                    "the response from {} stalled for {:?}",
                    self.region, self.idle
                ),
            )));
        }
    }

    /// The whole body.
    pub async fn collect(mut self) -> Result<Bytes, Failure> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

pub type HttpsClient = Client<crate::socket::Connector, Full<Bytes>>;

/// How long an upstream connection stays pooled, idle.
pub const POOL_IDLE: Duration = Duration::from_secs(60);
/// The upstream client's HTTP/1 read buffer: fixed, not hyper's adaptive
/// one that starts at 8 KiB (a stream's events are small; README,
/// Performance: streams).
pub const READ_BUF_BYTES: usize = 4096;

/// A pooled HTTP/1.1 + HTTP/2 client over rustls (ring) with a connect timeout.
pub(crate) fn https_client(timeouts: &Timeouts) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeouts.connect));
    http.set_nodelay(true);
    http.enforce_http(false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map(|b| {
            b.https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http.clone())
        });
    let connector = match https {
        Ok(c) => c,
        // The ring provider always supports the default protocol versions.
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .http1_read_buf_exact_size(READ_BUF_BYTES)
        .build(crate::socket::Connector(connector))
}

/// Sends a request and waits for the head, classifying network failures and
/// first-byte timeouts. Error statuses are returned as responses.
pub(crate) async fn send_raw(
    http: &HttpsClient,
    req: http::Request<Bytes>,
    timeouts: &Timeouts,
    region: &str,
) -> Result<Response, Failure> {
    let resp =
        match tokio::time::timeout(timeouts.first_byte, http.request(req.map(Full::new))).await {
            Err(_) => {
                return Err(Failure::new(
                    Outcome::TimeoutBeforeFirstByte,
                    ErrorKind::ServiceUnavailable,
                    format!("{region} did not answer within {:?}", timeouts.first_byte),
                ));
            }
            Ok(Err(e)) => return Err(network_failure(&e, region)),
            Ok(Ok(r)) => r,
        };
    let (mut parts, body) = resp.into_parts();
    own_values(&mut parts.headers);
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: ResponseBody::new(Source::Http(body), timeouts.idle, region),
    })
}

/// Moves `headers`' values out of hyper's read buffer into one buffer of
/// their own.
///
/// hyper hands out header values as slices of the connection's read
/// buffer; while any is alive, hyper cannot reuse that buffer for the body
/// and takes a second one (8 KiB, kept for the connection's life). With the
/// values copied out before the body is read, a stream's upstream
/// connection holds one read buffer, not two (README, Performance: streams).
fn own_values(headers: &mut HeaderMap) {
    let len: usize = headers.values().map(|v| v.len()).sum();
    let mut store = bytes::BytesMut::with_capacity(len);
    for v in headers.values() {
        store.extend_from_slice(v.as_bytes());
    }
    let store = store.freeze();
    let mut at = 0;
    for v in headers.values_mut() {
        let end = at + v.len();
        // The same bytes hyper already accepted as a header value.
        if let Ok(owned) = HeaderValue::from_maybe_shared(store.slice(at..end)) {
            let sensitive = v.is_sensitive();
            *v = owned;
            v.set_sensitive(sensitive);
        }
        at = end;
    }
}

/// A Bedrock Runtime client for one account.
#[derive(Debug, Clone)]
pub struct BedrockClient {
    http: HttpsClient,
    auth: Auth,
    endpoints: Endpoints,
    timeouts: Timeouts,
    signer: Arc<Signer>,
}

impl BedrockClient {
    /// A client with its own connection pool.
    pub fn new(auth: Auth, endpoints: Endpoints, timeouts: Timeouts) -> BedrockClient {
        BedrockClient {
            http: https_client(&timeouts),
            auth,
            endpoints,
            timeouts,
            signer: Arc::default(),
        }
    }

    /// A client signing with fixed keys against overridden endpoints (the
    /// simulated fleet, or any Bedrock-compatible server).
    pub fn with_static_keys(
        access_key_id: &str,
        secret_access_key: &str,
        overrides: BTreeMap<String, String>,
        timeouts: Timeouts,
    ) -> BedrockClient {
        let creds = Credentials::new(access_key_id, secret_access_key, None, None, "static");
        BedrockClient::new(
            Auth::SigV4(Arc::new(StaticCredentials(creds))),
            Endpoints {
                overrides,
                fips: false,
                mantle: BTreeMap::new(),
            },
            timeouts,
        )
    }

    /// The same client, calling Mantle at `mantle` (region → base URL).
    pub fn with_mantle(mut self, mantle: BTreeMap<String, String>) -> BedrockClient {
        self.endpoints.mantle = mantle;
        self
    }

    /// The endpoints this client calls.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Sends one runtime call and waits for the response head.
    pub async fn call(&self, call: &Call) -> Result<Response, Failure> {
        let mut service = SIGNING_NAME;
        let url = match (call.route, call.action, call.model_id.rsplit_once(':')) {
            (Route::RuntimeMessages, ..) => {
                format!("{}{MESSAGES_PATH}", self.endpoints.url(&call.region))
            }
            (Route::RuntimeOpenAi(path), ..) => {
                format!("{}/openai{path}", self.endpoints.url(&call.region))
            }
            (Route::MantleMessages | Route::MantleOpenAi(_), ..) => {
                service = MANTLE_SIGNING_NAME;
                let base = self.endpoints.mantle_url(&call.region).ok_or_else(|| {
                    Failure::new(
                        Outcome::Unavailable { status: 503 },
                        ErrorKind::ServiceUnavailable,
                        format!("no Mantle endpoint is configured for {}", call.region),
                    )
                })?;
                let path = match call.route {
                    Route::MantleOpenAi(path) => path,
                    _ => MESSAGES_PATH,
                };
                format!("{base}{path}")
            }
            // ApplyGuardrail: `model_id` is the region's `GUARDRAIL:VERSION`.
            (_, Action::ApplyGuardrail, Some((id, version))) => format!(
                "{}/guardrail/{}/version/{}/apply",
                self.endpoints.url(&call.region),
                encode_label(id),
                encode_label(version)
            ),
            _ => format!(
                "{}/model/{}/{}",
                self.endpoints.url(&call.region),
                encode_label(&call.model_id),
                call.action.path()
            ),
        };
        let req = self
            .build(
                Method::POST,
                &url,
                &call.region,
                service,
                call.body.clone(),
                &call.headers,
            )
            .await?;
        self.send(req, &call.region).await
    }

    /// A signed GET (control-plane reads).
    pub async fn get(&self, region: &str, path_and_query: &str) -> Result<Response, Failure> {
        let url = format!("{}{path_and_query}", self.endpoints.url(region));
        let req = self
            .build(Method::GET, &url, region, SIGNING_NAME, Bytes::new(), &[])
            .await?;
        self.send(req, region).await
    }

    /// A GET on Mantle in `region` (its `/v1/models`), signed for
    /// `bedrock-mantle`; a region without a Mantle endpoint is an error.
    pub async fn mantle_get(&self, region: &str, path: &str) -> Result<Response, Failure> {
        let base = self.endpoints.mantle_url(region).ok_or_else(|| {
            Failure::new(
                Outcome::Unavailable { status: 503 },
                ErrorKind::ServiceUnavailable,
                format!("no Mantle endpoint is configured for {region}"),
            )
        })?;
        let url = format!("{base}{path}");
        let req = self
            .build(
                Method::GET,
                &url,
                region,
                MANTLE_SIGNING_NAME,
                Bytes::new(),
                &[],
            )
            .await?;
        self.send(req, region).await
    }

    /// A signed GET on the control plane (`ListInferenceProfiles`, …).
    pub async fn control_get(
        &self,
        region: &str,
        path_and_query: &str,
    ) -> Result<Response, Failure> {
        let url = format!("{}{path_and_query}", self.endpoints.control_url(region));
        let req = self
            .build(Method::GET, &url, region, SIGNING_NAME, Bytes::new(), &[])
            .await?;
        self.send(req, region).await
    }

    /// A signed POST on the control plane (`CreateModelInvocationJob`, …).
    pub async fn control_post(
        &self,
        region: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Response, Failure> {
        let url = format!("{}{path}", self.endpoints.control_url(region));
        let req = self
            .build(Method::POST, &url, region, SIGNING_NAME, body, &[])
            .await?;
        self.send(req, region).await
    }

    async fn build(
        &self,
        method: Method,
        url: &str,
        region: &str,
        service: &str,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Request<Bytes>, Failure> {
        let internal = |m: String| Failure::new(Outcome::Validation, ErrorKind::InternalServer, m);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| internal(format!("bad upstream URL {url}: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| internal(e.to_string()))?;
        let h = req.headers_mut();
        h.insert(
            http::header::HOST,
            HeaderValue::from_str(&host).map_err(|e| internal(e.to_string()))?,
        );
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in headers {
            h.insert(k.clone(), v.clone());
        }
        match &self.auth {
            Auth::Bearer(token) => {
                let v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|e| internal(e.to_string()))?;
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
            Auth::SigV4(source) => {
                let creds = source.credentials().await.map_err(|e| {
                    Failure::new(
                        Outcome::AccessDenied,
                        ErrorKind::AccessDenied,
                        format!("no AWS credentials for {region}: {e}"),
                    )
                })?;
                self.signer
                    .sign(&mut req, &creds, region, service, SystemTime::now())
                    .map_err(|e| internal(e.to_string()))?;
            }
        }
        Ok(req)
    }

    async fn send(&self, req: http::Request<Bytes>, region: &str) -> Result<Response, Failure> {
        let response = send_raw(&self.http, req, &self.timeouts, region).await?;
        if response.status.is_success() {
            return Ok(response);
        }
        let status = response.status.as_u16();
        let retry = retry_after(&response.headers);
        let header_kind = response
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.collect().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = header_kind.or_else(|| {
            json["code"]
                .as_str()
                .or(json["Code"].as_str())
                .or(json["__type"].as_str())
                .map(str::to_string)
        });
        // Bedrock's shape, or Anthropic's (`{"type":"error","error":{…}}`)
        // from the native Messages endpoints.
        let kind = code
            .as_deref()
            .and_then(ErrorKind::from_wire)
            .or_else(|| json["error"]["type"].as_str().and_then(anthropic_kind));
        let message = json["message"]
            .as_str()
            .or(json["Message"].as_str())
            .or(json["error"]["message"].as_str())
            .unwrap_or("upstream error")
            .to_string();
        let outcome = Outcome::from_error(status, kind, retry);
        let kind = kind.unwrap_or(match status {
            429 => ErrorKind::Throttling,
            500 => ErrorKind::InternalServer,
            s if s >= 500 => ErrorKind::ServiceUnavailable,
            403 => ErrorKind::AccessDenied,
            404 => ErrorKind::ResourceNotFound,
            _ => ErrorKind::Validation,
        });
        Err(Failure {
            outcome,
            error: BedrockError::new(kind, message),
        })
    }
}

/// Bedrock's error kind for an Anthropic error type.
fn anthropic_kind(t: &str) -> Option<ErrorKind> {
    Some(match t {
        "invalid_request_error" | "request_too_large" => ErrorKind::Validation,
        "authentication_error" => ErrorKind::UnrecognizedClient,
        "permission_error" => ErrorKind::AccessDenied,
        "not_found_error" => ErrorKind::ResourceNotFound,
        "rate_limit_error" => ErrorKind::Throttling,
        "overloaded_error" => ErrorKind::ServiceUnavailable,
        "api_error" => ErrorKind::InternalServer,
        _ => return None,
    })
}

fn network_failure(e: &hyper_util::client::legacy::Error, region: &str) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io_kind = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        source = s.source();
    }
    let outcome = if e.is_connect() || io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        Outcome::ConnectionRefused
    } else {
        Outcome::ConnectionReset
    };
    Failure::new(
        outcome,
        ErrorKind::ServiceUnavailable,
        format!("cannot reach Bedrock in {region}: {e}"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The stall timeout is per wait, not per body: chunks 40 ms apart pass
    /// a 100 ms timeout however long the body runs, and one 150 ms gap
    /// fails it as a mid-stream timeout.
    #[tokio::test(start_paused = true)]
    async fn the_stall_timer_restarts_with_every_chunk() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut body = Response::local(
            HeaderMap::new(),
            rx,
            Duration::from_millis(100),
            "us-east-1",
        )
        .into_body();
        tokio::spawn(async move {
            for i in 0..10u8 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                tx.send(Ok(Bytes::from(vec![i]))).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _ = tx.send(Ok(Bytes::from_static(b"late"))).await;
        });
        let t0 = tokio::time::Instant::now();
        for i in 0..10u8 {
            assert_eq!(
                body.next_chunk().await.unwrap().unwrap(),
                Bytes::from(vec![i])
            );
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
        let e = body.next_chunk().await.unwrap_err();
        assert_eq!(e.outcome, Outcome::TimeoutMidStream);
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        assert!(
            e.error.message.contains("stalled for 100ms"),
            "{}",
            e.error.message
        );
    }

    #[test]
    fn header_values_move_to_a_buffer_of_their_own_unchanged() {
        // Values sharing one buffer, as hyper hands them out.
        let read_buf = Bytes::from_static(b"abc123application/jsonsecret");
        let mut headers = HeaderMap::new();
        let value = |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(read_buf.slice(r));
        headers.insert("x-amzn-requestid", value(0..6).unwrap());
        headers.append("x-amzn-requestid", value(3..6).unwrap());
        headers.insert("content-type", value(6..22).unwrap());
        let mut secret = value(22..28).unwrap();
        secret.set_sensitive(true);
        headers.insert("x-secret", secret);
        headers.insert("x-empty", HeaderValue::from_static(""));
        let before = headers.clone();
        own_values(&mut headers);
        assert_eq!(headers, before);
        assert!(headers["x-secret"].is_sensitive());
        let ids: Vec<_> = headers.get_all("x-amzn-requestid").iter().collect();
        assert_eq!(ids, ["abc123", "123"]);
        // No value points into the read buffer any more.
        let span = read_buf.as_ptr_range();
        for v in headers.values() {
            assert!(
                v.is_empty() || !span.contains(&v.as_bytes().as_ptr()),
                "{v:?}"
            );
        }
    }
}
