//! Untrusted Authorization headers and request lines through SigV4 verification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_wire::sigv4::{self, PathEncoding, Rules, Secret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(4, '\n');
    let (auth, date, path, query) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let _ = sigv4::parse_auth_header(auth);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(date) {
        headers.insert("x-amz-date", v);
    }
    let req = sigv4::Request { method: "POST", raw_path: path, raw_query: query, headers: &headers, body: data };
    let rules = Rules { service: "bedrock", normalize: true, encoding: PathEncoding::Double, now: None };
    let _ = sigv4::verify(&req, &rules, |_| Some(Secret { secret_access_key: "s".into(), session_token: None }));
});
