//! Building responses: request IDs, Bedrock-shaped errors, and the headers
//! every answer carries whatever its front door.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, HeaderValue};
use meridian_wire::BedrockError;

use crate::execute::Served;

/// A fresh request ID (UUID v4, as Bedrock's).
///
/// Request IDs must be unique, not secret: each thread draws them from its
/// own generator (seeded once from the OS) instead of asking the kernel for
/// random bytes on every request.
pub fn request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            seed.0 ^ seed.1.rotate_left(32)
        });
    }
    let (a, b) = STATE.with(|s| {
        let next = || {
            // splitmix64
            let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (next(), next())
    });
    let bytes = (u128::from(a) << 64 | u128::from(b)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A response with this status, content type (when given) and body. It
/// cannot fail: a status outside 100–999 (only an upstream could send one)
/// is a 502, never an empty 200.
pub fn with(status: u16, content_type: Option<&'static str>, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

/// Sets header `name` when `value` is a valid header value (the values
/// passed are Meridian's own: request IDs, error types).
pub fn set_header(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut()
            .insert(http::HeaderName::from_static(name), v);
    }
}

/// An event-stream (SSE) response: `text/event-stream`, not cached.
pub fn sse(status: u16, body: Body) -> Response {
    let mut r = with(status, Some("text/event-stream"), body);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

/// An error exactly as Bedrock sends it: status, `x-amzn-ErrorType` and
/// `{"message": …}`.
pub fn error(e: &BedrockError) -> Response {
    let mut r = with(
        e.kind.status(),
        Some("application/json"),
        Body::from(e.body()),
    );
    set_header(&mut r, "x-amzn-errortype", &e.error_type_header());
    r
}

/// A JSON 200.
pub fn json(value: &serde_json::Value) -> Response {
    with(
        200,
        Some("application/json"),
        Body::from(meridian_wire::json_bytes(value)),
    )
}

/// The region that served a response: the simulated fleet says where it
/// processed; real Bedrock does not, so the called region stands in.
pub fn served_region(served: &Served) -> &str {
    served
        .headers
        .get(crate::execute::SIM_REGION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&served.candidate.target.endpoint_region)
}

/// Header names as constants: inserting by `&str` parses the name each time.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const ATTEMPTS: HeaderName = HeaderName::from_static(crate::ATTEMPTS_HEADER);
const ROUTE: HeaderName = HeaderName::from_static(crate::ROUTE_HEADER);
const REGION: HeaderName = HeaderName::from_static(crate::REGION_HEADER);
const ACCOUNT: HeaderName = HeaderName::from_static(crate::ACCOUNT_HEADER);
const SURFACE: HeaderName = HeaderName::from_static(crate::SURFACE_HEADER);
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-meridian-upstream-request-id");

/// Headers of every response: its request ID and, when attempts were made,
/// how many and their route.
pub fn common_headers(
    resp: &mut Response,
    request_id: &str,
    attempts: usize,
    route: Option<String>,
) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    if attempts > 0 {
        h.insert(ATTEMPTS, HeaderValue::from(attempts));
    }
    if let Some(v) = route.and_then(|r| HeaderValue::from_str(&r).ok()) {
        h.insert(ROUTE, v);
    }
}

/// Headers an answered request gets from Meridian itself: its request ID,
/// attempts, route, region, account, surface and the upstream's request ID.
const SERVED_HEADERS: usize = 7;

/// Whether an upstream header is passed on to the client (a `content-type`
/// only when the front door set none).
fn passed_on(name: &HeaderName, resp: &http::HeaderMap) -> bool {
    (name == http::header::CONTENT_TYPE && !resp.contains_key(name))
        || name.as_str().starts_with("x-amzn-bedrock-")
}

/// Headers of an answered request: where it was served, by which account,
/// the upstream's request ID, and the upstream's `content-type` and
/// `x-amzn-bedrock-*` headers unless the front door set its own.
pub fn served_headers(resp: &mut Response, request_id: &str, served: &Served) {
    // Room for exactly what follows, at once: growing a map rehashes it,
    // and hyper keeps a response's map (emptied, its room kept) for the
    // connection's next request — for a stream, as long as it runs. Room
    // for all of the upstream's headers took a map of 24 entries (2.6 KB)
    // where 12 do.
    let passed = served
        .headers
        .keys()
        .filter(|k| passed_on(k, resp.headers()))
        .count();
    resp.headers_mut().reserve(SERVED_HEADERS + passed);
    common_headers(
        resp,
        request_id,
        served.attempts,
        Some(served.decision.summary()),
    );
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(served_region(served)) {
        h.insert(REGION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&served.candidate.account) {
        h.insert(ACCOUNT, v);
    }
    h.insert(
        SURFACE,
        HeaderValue::from_static(served.candidate.surface.name()),
    );
    if let Some(id) = served.headers.get(REQUEST_ID) {
        h.insert(UPSTREAM_REQUEST_ID, id.clone());
    }
    for (k, v) in &served.headers {
        if passed_on(k, h) {
            h.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// An attempt served from eu-west-1 with the upstream's `headers`.
    fn served(upstream: &[(&'static str, &'static str)]) -> Served {
        let target = meridian_catalog::Target {
            endpoint_region: "eu-west-1".into(),
            model_id: "eu.m".into(),
            kind: meridian_catalog::TargetKind::GeoProfile,
            prefix: Some("eu".into()),
            base_model_id: None,
            destinations: ["eu-west-1".to_string(), "eu-west-3".to_string()].into(),
            price: None,
            confirmed: true,
            distance_km: 0,
            capacity_tpm: None,
        };
        let mut headers = http::HeaderMap::new();
        for &(name, value) in upstream {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        Served {
            status: http::StatusCode::OK,
            headers,
            candidate: meridian_router::Candidate::new("main".into(), 0, "m".into(), target, None),
            attempts: 2,
            decision: meridian_router::Decision {
                strategy: "priority",
                policy: "eu".into(),
                candidates: vec!["main|eu-west-1|converse|eu.m".into()],
                attempts: Vec::new(),
                served_by: None,
                hedged: true,
                gave_up: None,
            },
        }
    }

    /// A ConverseStream answer's headers, as Bedrock sends them (and the
    /// simulated fleet's inference region and tier).
    const UPSTREAM: &[(&str, &str)] = &[
        ("content-type", "application/vnd.amazon.eventstream"),
        ("x-amzn-requestid", "r-1"),
        ("date", "Sat, 05 Dec 2026 18:00:00 GMT"),
        ("x-meridian-sim-inference-region", "eu-west-3"),
        (crate::plan::TIER_HEADER, "priority"),
    ];

    /// An answered stream's headers fit the smallest map that holds them:
    /// hyper keeps the map for as long as the stream runs.
    #[test]
    fn an_answer_gets_its_headers_in_a_map_no_larger_than_they_need() {
        let mut upstream = UPSTREAM.to_vec();
        upstream.extend([
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("x-amzn-bedrock-content-type", "application/json"),
        ]);
        let served = served(&upstream);
        let mut resp = Response::new(Body::empty());
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        served_headers(&mut resp, "req-1", &served);
        let names: Vec<&str> = resp.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-amzn-requestid",
                "x-meridian-attempts",
                "x-meridian-route",
                "x-meridian-region",
                "x-meridian-account",
                "x-meridian-surface",
                "x-meridian-upstream-request-id",
                "x-amzn-bedrock-service-tier",
                "x-amzn-bedrock-content-type",
            ]
        );
        // Ten headers need a map of twelve; room for all the upstream's
        // too took one of twenty-four.
        assert_eq!(resp.headers().capacity(), 12);
    }

    /// What a stream keeps of its served attempt answers accounting as the
    /// whole attempt does, without the upstream's other headers.
    #[test]
    fn a_stream_keeps_what_accounting_reads_of_its_served_attempt() {
        let served = served(UPSTREAM);
        let kept = served.for_accounting();
        assert_eq!(served_region(&kept), "eu-west-3");
        assert_eq!(
            crate::usage::tier_header(&kept.headers),
            Some(meridian_catalog::ServiceTier::Priority)
        );
        assert_eq!(kept.headers.len(), 2, "{:?}", kept.headers);
        // Room for those two only (a map grown by inserting has room for
        // six: about 550 B more for every stream).
        assert_eq!(kept.headers.capacity(), 2);
        assert_eq!(kept.status, served.status);
        assert_eq!(kept.attempts, 2);
        assert_eq!(kept.candidate.key(), served.candidate.key());
        // Every field of the candidate but its destinations, which no
        // record reads.
        let mut whole = served.candidate.clone();
        whole.target.destinations.clear();
        assert_eq!(kept.candidate, whole);
        assert!(kept.candidate.target.destinations.is_empty());
        assert_eq!(kept.decision.summary(), served.decision.summary());
        assert!(kept.decision.hedged);
    }

    use http_body_util::BodyExt;

    use super::*;

    /// The `Response::builder()…unwrap_or_default()` these replace turned
    /// a status or header the builder refused into an empty 200.
    #[tokio::test]
    async fn a_response_that_cannot_be_built_as_asked_is_never_an_empty_200() {
        let r = with(1000, Some("application/json"), Body::from("{}"));
        assert_eq!(r.status(), http::StatusCode::BAD_GATEWAY);
        assert_eq!(
            r.into_body().collect().await.unwrap_or_default().to_bytes(),
            "{}"
        );
        let mut r = with(429, Some("application/json"), Body::from("{}"));
        set_header(&mut r, "x-request-id", "bad\nvalue");
        assert_eq!(r.status(), 429);
        assert!(r.headers().get("x-request-id").is_none());
        let e = error(&BedrockError::new(
            meridian_wire::ErrorKind::Throttling,
            "slow down",
        ));
        assert_eq!(e.status(), 429);
        assert!(
            e.headers()["x-amzn-errortype"]
                .to_str()
                .unwrap_or_default()
                .starts_with("ThrottlingException:")
        );
    }

    #[test]
    fn request_ids_are_distinct_v4_uuids_across_threads() {
        let ids: Vec<String> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..5000).map(|_| super::request_id()).collect::<Vec<_>>())
            })
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        assert_eq!(ids.len(), 20_000);
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a request ID repeated");
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap_or_default();
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.hyphenated().to_string(), *id);
        }
    }
}
