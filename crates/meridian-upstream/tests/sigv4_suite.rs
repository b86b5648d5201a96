//! The AWS signing test suite (v4) that ships inside the aws-sigv4 package:
//! our signer must produce each case's signature, and our verifier must accept
//! each signed request and reject it once tampered with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::{Path, PathBuf};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::HeaderMap;
use meridian_upstream::sign::{SignOptions, sign_request};
use meridian_wire::ErrorKind;
use meridian_wire::sigv4::{self, PathEncoding, Rules, Secret};
use serde_json::Value;

fn suite_dir() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aws-sigv4")
        .unwrap();
    PathBuf::from(pkg["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("aws-signing-test-suite/v4")
}

/// A request.txt: request line, headers (with continuation lines), blank line, body.
struct RawRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> RawRequest {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes().to_vec()),
        None => (text.trim_end_matches('\n'), Vec::new()),
    };
    let mut lines = head.lines();
    let line = lines.next().unwrap();
    let method = line.split(' ').next().unwrap().to_string();
    let target = line[method.len() + 1..line.rfind(" HTTP/").unwrap()].to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(l.trim());
        } else {
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_string(), v.to_string()));
        }
    }
    RawRequest {
        method,
        target,
        headers,
        body,
    }
}

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}

struct Case {
    name: String,
    ctx: Value,
    dir: PathBuf,
}

fn cases() -> Vec<Case> {
    let dir = suite_dir();
    let mut out: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("context.json").is_file())
        .map(|p| Case {
            name: p.file_name().unwrap().to_string_lossy().to_string(),
            ctx: serde_json::from_str(&std::fs::read_to_string(p.join("context.json")).unwrap())
                .unwrap(),
            dir: p,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn creds(ctx: &Value) -> Credentials {
    let c = &ctx["credentials"];
    Credentials::new(
        c["access_key_id"].as_str().unwrap(),
        c["secret_access_key"].as_str().unwrap(),
        c["token"].as_str().map(str::to_string),
        None,
        "test-suite",
    )
}

fn time(ctx: &Value) -> std::time::SystemTime {
    let ts = ctx["timestamp"].as_str().unwrap().replace(['-', ':'], "");
    sigv4::parse_amz_date(&ts).unwrap()
}

/// Cases whose expected output assumes single path encoding; Bedrock (and
/// aws-sigv4) double-encode, so the signer skips them and the verifier checks
/// them in single-encoding mode.
const SINGLE_ENCODING: [&str; 3] = ["get-space-normalized", "get-space-unnormalized", "get-utf8"];

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

#[test]
fn signer_matches_every_double_encoding_case() {
    let mut checked = 0;
    for case in cases() {
        if SINGLE_ENCODING.contains(&case.name.as_str()) {
            continue;
        }
        let raw = parse_request(&read(&case.dir, "request.txt"));
        let mut builder = http::Request::builder()
            .method(raw.method.as_str())
            .uri(raw.target.as_str());
        for (k, v) in &raw.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let mut req = builder.body(Bytes::from(raw.body)).unwrap();
        let opts = SignOptions {
            normalize: case.ctx["normalize"].as_bool().unwrap(),
            sign_body_header: case.ctx["sign_body"].as_bool().unwrap_or(true),
            sign_session_token: !case.ctx["omit_session_token"].as_bool().unwrap_or(false),
            single_encode: false,
        };
        let service = case.ctx["service"].as_str().unwrap();
        let region = case.ctx["region"].as_str().unwrap();
        sign_request(
            &mut req,
            &creds(&case.ctx),
            region,
            service,
            time(&case.ctx),
            opts,
        )
        .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap().to_string();
        let expected = read(&case.dir, "header-signature.txt");
        assert!(
            auth.ends_with(&format!("Signature={}", expected.trim())),
            "{}: {auth}",
            case.name
        );
        checked += 1;
    }
    assert_eq!(checked, 35);
}

#[test]
fn verifier_accepts_every_signed_request_and_rejects_tampering() {
    let mut checked = 0;
    for case in cases() {
        let raw = parse_request(&read(&case.dir, "header-signed-request.txt"));
        let (path, query) = raw.target.split_once('?').unwrap_or((&raw.target, ""));
        let headers = header_map(&raw.headers);
        let ctx = &case.ctx;
        let secret = Secret {
            secret_access_key: ctx["credentials"]["secret_access_key"]
                .as_str()
                .unwrap()
                .to_string(),
            session_token: ctx["credentials"]["token"].as_str().map(str::to_string),
        };
        let rules = Rules {
            service: ctx["service"].as_str().unwrap(),
            normalize: ctx["normalize"].as_bool().unwrap(),
            encoding: if SINGLE_ENCODING.contains(&case.name.as_str()) {
                PathEncoding::Single
            } else {
                PathEncoding::Double
            },
            now: Some(time(ctx) + std::time::Duration::from_secs(60)),
        };
        let lookup = |key: &str| (key == "AKIDEXAMPLE").then(|| secret.clone());
        let req = sigv4::Request {
            method: &raw.method,
            raw_path: path,
            raw_query: query,
            headers: &headers,
            body: &raw.body,
        };
        sigv4::verify(&req, &rules, lookup).unwrap_or_else(|e| panic!("{}: {e}", case.name));

        // The canonical request we rebuild is byte for byte the expected one.
        let auth = sigv4::parse_auth_header(headers["authorization"].to_str().unwrap()).unwrap();
        let canonical = sigv4::canonical_request(&req, auth.signed_headers, &rules).unwrap();
        assert_eq!(
            canonical,
            read(&case.dir, "header-canonical-request.txt"),
            "{}",
            case.name
        );

        // One more body byte, or the wrong service, and it no longer verifies.
        let mut body = raw.body.clone();
        body.push(b'x');
        let tampered = sigv4::Request { body: &body, ..req };
        let e = sigv4::verify(&tampered, &rules, lookup).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSignature, "{}", case.name);
        let wrong = Rules {
            service: "bedrock",
            ..rules
        };
        assert!(sigv4::verify(&req, &wrong, lookup).is_err());
        let late = Rules {
            now: Some(time(ctx) + std::time::Duration::from_secs(3600)),
            ..rules
        };
        assert!(
            sigv4::verify(&req, &late, lookup).is_err(),
            "{}: skew not checked",
            case.name
        );
        assert_eq!(
            sigv4::verify(&req, &rules, |_| None).unwrap_err().kind,
            ErrorKind::UnrecognizedClient
        );
        checked += 1;
    }
    assert_eq!(checked, 38);
}
