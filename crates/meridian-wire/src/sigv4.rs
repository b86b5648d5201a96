//! SigV4: verification of inbound requests, and the pieces of signing.
//!
//! The canonical request is rebuilt from the request exactly as received (raw
//! path and query), with the headers the client says it signed, then the
//! signature is recomputed and compared in constant time. Outbound Bedrock
//! requests are signed with the same canonical request and a signing key
//! derived once a day ([`signing_key`], [`authorization`]); meridian-upstream
//! checks that signer against `aws-sigv4`.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{BedrockError, ErrorKind};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `X-Amz-Date` may be from the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// How the canonical URI encodes the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEncoding {
    /// Every service but S3 (Bedrock included): the already-encoded path is
    /// encoded again, so `%3A` becomes `%253A`.
    Double,
    /// Existing escapes are kept; only the test suite's single-encoding
    /// vectors use this.
    Single,
}

/// A request as received, before its body is interpreted.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path exactly as on the request line.
    pub raw_path: &'a str,
    /// The query string exactly as on the request line, without `?`.
    pub raw_query: &'a str,
    /// All headers.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The request as received by an HTTP server.
    pub fn from_parts(parts: &'a http::request::Parts, body: &'a [u8]) -> Request<'a> {
        Request {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
        }
    }
}

/// A secret the verifier knows, by access key ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token the request must carry, for temporary credentials.
    pub session_token: Option<String>,
}

/// What the verifier checks besides the signature.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Expected service in the credential scope (`bedrock`).
    pub service: &'a str,
    /// Remove `.`/`..` segments and repeated slashes before encoding.
    pub normalize: bool,
    /// Path encoding mode.
    pub encoding: PathEncoding,
    /// Reject requests signed too far from this time; `None` skips the check.
    pub now: Option<SystemTime>,
}

impl Rules<'_> {
    /// Bedrock's rules at the current time.
    pub fn bedrock() -> Rules<'static> {
        Rules::for_service("bedrock")
    }

    /// Bedrock's rules for a request scoped to `service` (`bedrock`, or
    /// `bedrock-mantle` for Bedrock's Mantle endpoints), at the current time.
    pub fn for_service(service: &str) -> Rules<'_> {
        Rules {
            service,
            normalize: true,
            encoding: PathEncoding::Double,
            now: Some(SystemTime::now()),
        }
    }
}

/// The service a SigV4 `Authorization` header is scoped to, if it parses.
pub fn scoped_service(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    parse_auth_header(value).ok().map(|a| a.service)
}

/// Who signed a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key ID.
    pub access_key_id: String,
    /// The region in the credential scope.
    pub region: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader<'a> {
    /// Access key ID.
    pub access_key_id: &'a str,
    /// `YYYYMMDD`.
    pub date: &'a str,
    /// Region.
    pub region: &'a str,
    /// Service.
    pub service: &'a str,
    /// Lowercase names, `;`-separated, as sent.
    pub signed_headers: &'a str,
    /// Hex signature.
    pub signature: &'a str,
}

fn incomplete(msg: impl Into<String>) -> BedrockError {
    BedrockError::new(ErrorKind::IncompleteSignature, msg)
}

/// Parses a SigV4 `Authorization` header value.
pub fn parse_auth_header(value: &str) -> Result<AuthHeader<'_>, BedrockError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| incomplete(format!("Authorization must use {ALGORITHM}")))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed, signature)
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(incomplete(format!(
            "credential scope '{credential}' is not KEY/DATE/REGION/SERVICE/aws4_request"
        )));
    };
    Ok(AuthHeader {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// A request whose `Authorization` header names a known key, with a fresh
/// date and the headers that must be signed: what can be checked before the
/// body is read. [`Prechecked::verify`] then binds the signature to the body.
#[derive(Debug)]
pub struct Prechecked<'h> {
    auth: AuthHeader<'h>,
    /// `YYYYMMDDTHHMMSSZ`, from `X-Amz-Date` or converted from `Date`.
    amz_date: String,
    secret: Secret,
}

/// Checks everything but the signature: algorithm, scope, service, date and
/// clock skew, `host` and the date among the signed headers, the access key
/// (and session token) known. Cheap, and it needs no body, so an unknown
/// caller is refused before its upload is read.
pub fn precheck<'h>(
    headers: &'h HeaderMap,
    rules: &Rules<'_>,
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Prechecked<'h>, BedrockError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            BedrockError::new(
                ErrorKind::MissingAuthenticationToken,
                "Missing Authentication Token",
            )
        })?;
    let auth = parse_auth_header(auth)?;
    let (amz_date, date_header) = match header_str(headers, "x-amz-date") {
        Some(d) => (d.to_string(), "x-amz-date"),
        None => match header_str(headers, "date").and_then(imf_fixdate_to_amz) {
            Some(d) => (d, "date"),
            None => {
                return Err(incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header",
                ));
            }
        },
    };
    if amz_date.len() != 16 || !amz_date.starts_with(auth.date) {
        return Err(incomplete(format!(
            "X-Amz-Date '{amz_date}' does not match the credential scope date {}",
            auth.date
        )));
    }
    for required in ["host", date_header] {
        if !auth.signed_headers.split(';').any(|h| h == required) {
            return Err(BedrockError::new(
                ErrorKind::InvalidSignature,
                format!("'{required}' must be among the signed headers"),
            ));
        }
    }
    if auth.service != rules.service {
        return Err(BedrockError::new(
            ErrorKind::InvalidSignature,
            format!(
                "Credential should be scoped to correct service: '{}'",
                rules.service
            ),
        ));
    }
    if let Some(now) = rules.now {
        check_skew(&amz_date, now)?;
    }
    let secret = lookup(auth.access_key_id).ok_or_else(|| {
        BedrockError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    })?;
    if let Some(token) = &secret.session_token {
        let sent = header_str(headers, "x-amz-security-token").unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            return Err(BedrockError::new(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid.",
            ));
        }
    }
    Ok(Prechecked {
        auth,
        amz_date,
        secret,
    })
}

impl Prechecked<'_> {
    /// The access key that signed.
    pub fn access_key_id(&self) -> &str {
        self.auth.access_key_id
    }

    /// Recomputes the signature over the request as received, its body
    /// included: the payload hash is computed here, never taken from the
    /// request. An `x-amz-content-sha256` header must equal it, and unsigned
    /// or chunk-signed (`STREAMING-*`) payloads are refused.
    pub fn verify(self, req: &Request<'_>, rules: &Rules<'_>) -> Result<Verified, BedrockError> {
        let body_hash = Hex::of(&Sha256::digest(req.body));
        if let Some(sent) = header_str(req.headers, "x-amz-content-sha256") {
            if sent == "UNSIGNED-PAYLOAD" || sent.starts_with("STREAMING-") {
                return Err(BedrockError::new(
                    ErrorKind::InvalidSignature,
                    format!(
                        "x-amz-content-sha256 '{sent}' is not accepted: the payload must be signed"
                    ),
                ));
            }
            if !sent.eq_ignore_ascii_case(body_hash.as_str()) {
                return Err(BedrockError::new(
                    ErrorKind::InvalidSignature,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
        }
        let auth = &self.auth;
        let canonical =
            canonical_request_with_hash(req, auth.signed_headers, rules, body_hash.as_str())?;
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.date, auth.region, auth.service
        );
        let to_sign = string_to_sign(&self.amz_date, &scope, &canonical);
        let key = signing_key(
            &self.secret.secret_access_key,
            auth.date,
            auth.region,
            auth.service,
        );
        let expected = Hex::of(&hmac(&key, to_sign.as_bytes()));
        if expected
            .as_str()
            .as_bytes()
            .ct_eq(auth.signature.as_bytes())
            .into()
        {
            Ok(Verified {
                access_key_id: auth.access_key_id.to_string(),
                region: auth.region.to_string(),
            })
        } else {
            Err(BedrockError::new(
                ErrorKind::InvalidSignature,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ))
        }
    }
}

/// Verifies a SigV4-signed request: [`precheck`], then the signature over
/// the body.
pub fn verify(
    req: &Request<'_>,
    rules: &Rules<'_>,
    lookup: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Verified, BedrockError> {
    precheck(req.headers, rules, lookup)?.verify(req, rules)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `19941106T084937Z`.
fn imf_fixdate_to_amz(s: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, rest) = s.trim().split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let (day, year): (u32, u32) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u32> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    Some(format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{sec:02}Z"))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_skew(amz_date: &str, now: SystemTime) -> Result<(), BedrockError> {
    let signed = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete(format!("X-Amz-Date '{amz_date}' is not YYYYMMDDTHHMMSSZ")))?;
    let skew = now
        .duration_since(signed)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(BedrockError::new(
            ErrorKind::InvalidSignature,
            "Signature expired: the request time is more than 15 minutes from the server time.",
        ));
    }
    Ok(())
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// The canonical request for `req` with the given signed headers, hashing
/// the body as received.
pub fn canonical_request(
    req: &Request<'_>,
    signed_headers: &str,
    rules: &Rules<'_>,
) -> Result<String, BedrockError> {
    let hash = Hex::of(&Sha256::digest(req.body));
    canonical_request_with_hash(req, signed_headers, rules, hash.as_str())
}

/// A SHA-256 digest in lowercase hex, on the stack (the `hex` crate builds
/// its string a `char` at a time; signing needs two of these per request).
#[derive(Clone, Copy)]
struct Hex([u8; 64]);

impl Hex {
    fn of(digest: &[u8]) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        Hex(out)
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and letters were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `AWS4-HMAC-SHA256\nDATE\nSCOPE\nHEX(SHA256(canonical))`.
fn string_to_sign(amz_date: &str, scope: &str, canonical: &str) -> String {
    let hash = Hex::of(&Sha256::digest(canonical.as_bytes()));
    [ALGORITHM, "\n", amz_date, "\n", scope, "\n", hash.as_str()].concat()
}

fn canonical_request_with_hash(
    req: &Request<'_>,
    signed_headers: &str,
    rules: &Rules<'_>,
    payload_hash: &str,
) -> Result<String, BedrockError> {
    let mut out = String::with_capacity(256 + req.raw_path.len());
    out.push_str(req.method);
    out.push('\n');
    push_canonical_uri(&mut out, req.raw_path, rules.normalize, rules.encoding);
    out.push('\n');
    if !req.raw_query.is_empty() {
        out.push_str(&canonical_query(req.raw_query));
    }
    out.push('\n');
    let mut names: Vec<&str> = signed_headers
        .split(';')
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_unstable();
    for name in &names {
        let mut values = req.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(incomplete(format!(
                "signed header '{name}' is not in the request"
            )));
        }
        out.push_str(name);
        out.push(':');
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            match v.to_str() {
                Ok(v) => push_collapsed(&mut out, v),
                Err(_) => push_collapsed(&mut out, &String::from_utf8_lossy(v.as_bytes())),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// A header value with its whitespace trimmed and runs of it collapsed to one space.
fn push_collapsed(out: &mut String, v: &str) {
    for (i, word) in v.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

#[cfg(test)]
fn canonical_uri(raw_path: &str, normalize: bool, encoding: PathEncoding) -> String {
    let mut out = String::with_capacity(raw_path.len() + 16);
    push_canonical_uri(&mut out, raw_path, normalize, encoding);
    out
}

fn push_canonical_uri(out: &mut String, raw_path: &str, normalize: bool, encoding: PathEncoding) {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    // Most paths have nothing to normalize: no empty, `.` or `..` segments.
    let plain = !path.contains("//") && !path.split('/').any(|s| s == "." || s == "..");
    let normalized;
    let path = if normalize && !plain {
        normalized = normalize_path(path);
        normalized.as_str()
    } else {
        path
    };
    let keep_percent = encoding == PathEncoding::Single;
    for b in path.bytes() {
        if b == b'/' || is_unreserved(b) || (keep_percent && b == b'%') {
            out.push(b as char);
        } else {
            push_escaped(out, b);
        }
    }
}

/// `%XX` for a byte.
fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

fn normalize_path(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if path.ends_with('/') && !stack.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                encode_strict(&percent_decode(k)),
                encode_strict(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode_strict(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// The key that signs one day's requests for one region and service:
/// `HMAC("AWS4" + secret, date) → region → service → "aws4_request"`.
/// It changes once a day, so a signer derives it once and keeps it.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex SHA-256 of a body (`x-amz-content-sha256`).
pub fn payload_hash(body: &[u8]) -> String {
    Hex::of(&Sha256::digest(body)).as_str().to_string()
}

/// `YYYYMMDDTHHMMSSZ` for a time (UTC).
pub fn format_amz_date(t: SystemTime) -> String {
    String::from_utf8_lossy(&crate::civil::basic_bytes(t)).into_owned()
}

/// The `Authorization` header value that signs `req` (which must already
/// carry every header in `signed_headers`, `x-amz-date` among them) with a
/// key from [`signing_key`]. `scope` is `DATE/REGION/SERVICE/aws4_request`.
pub fn authorization(
    req: &Request<'_>,
    signed_headers: &str,
    rules: &Rules<'_>,
    access_key_id: &str,
    amz_date: &str,
    scope: &str,
    key: &[u8; 32],
) -> Result<String, BedrockError> {
    let canonical = canonical_request(req, signed_headers, rules)?;
    let to_sign = string_to_sign(amz_date, scope, &canonical);
    let signature = Hex::of(&hmac(key, to_sign.as_bytes()));
    Ok([
        ALGORITHM,
        " Credential=",
        access_key_id,
        "/",
        scope,
        ", SignedHeaders=",
        signed_headers,
        ", Signature=",
        signature.as_str(),
    ]
    .concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        for secs in [
            0_u64,
            951_782_400,
            1_440_938_160,
            1_795_331_109,
            4_102_444_799,
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let s = format_amz_date(t);
            assert_eq!(parse_amz_date(&s), Some(t), "{s}");
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
    }

    #[test]
    fn parses_amz_dates() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
    }

    #[test]
    fn converts_imf_fixdates() {
        assert_eq!(
            imf_fixdate_to_amz("Sun, 06 Nov 1994 08:49:37 GMT").as_deref(),
            Some("19941106T084937Z")
        );
        assert_eq!(imf_fixdate_to_amz("06 Nov 1994 08:49:37"), None);
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_path("//example//"), "/example/");
        assert_eq!(normalize_path("/example1/example2/../.."), "/");
        assert_eq!(normalize_path("/./"), "/");
        assert_eq!(
            canonical_uri("/model/a%3A0/converse", true, PathEncoding::Double),
            "/model/a%253A0/converse"
        );
    }
}
