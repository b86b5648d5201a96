//! Bedrock's signer ([`Signer`]: signing keys kept per day, canonical request
//! from meridian-wire) must sign exactly as `aws-sigv4` does with Bedrock's
//! settings, for every kind of request Meridian sends, across days, regions,
//! session tokens and a secret that changes under the same access key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use meridian_upstream::sign::{SIGNING_NAME, SignOptions, Signer, sign_request};

fn request(method: &str, url: &str, body: &str, extra: &[(&str, &str)]) -> http::Request<Bytes> {
    let uri: http::Uri = url.parse().unwrap();
    let mut b = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("host", uri.authority().unwrap().as_str())
        .header("content-type", "application/json");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body.to_string())).unwrap()
}

fn signed_headers(req: &http::Request<Bytes>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn signs_as_aws_sigv4_does() {
    let urls = [
        (
            "POST",
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
        ),
        (
            "POST",
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/eu.amazon.nova-pro-v1%3A0/converse-stream",
        ),
        (
            "POST",
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Aprovisioned-model%2Fabc123/invoke",
        ),
        (
            "POST",
            "http://127.0.0.1:8080/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
        ),
        ("POST", "http://127.0.0.1:8080/model/m/count-tokens"),
        (
            "GET",
            "https://bedrock.us-east-1.amazonaws.com/inference-profiles?maxResults=1000&type=SYSTEM_DEFINED",
        ),
        (
            "GET",
            "https://bedrock.eu-central-1.amazonaws.com/foundation-models?byInferenceType=ON_DEMAND&nextToken=a%2Fb%3D",
        ),
    ];
    let extras: [&[(&str, &str)]; 4] = [
        &[],
        &[("x-amzn-bedrock-service-tier", "flex")],
        &[
            ("accept", "application/vnd.amazon.eventstream"),
            ("x-amzn-bedrock-trace", "ENABLED"),
        ],
        &[
            ("user-agent", "meridian/0.1"),
            ("x-amzn-trace-id", "Root=1-abc"),
            ("x-amzn-bedrock-guardrailidentifier", "gr-1  with   spaces "),
        ],
    ];
    let creds = [
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "t",
        ),
        Credentials::new(
            "ASIAEXAMPLE",
            "secret-two",
            Some("FwoGZXIvYXdzE//token==".into()),
            None,
            "t",
        ),
    ];
    let regions = ["us-east-1", "eu-west-3", "ap-northeast-1"];
    let signer = Signer::default();
    let mut checked = 0;
    for day in 0..3u64 {
        // Around midnight UTC: the second request of a pair is on the next day.
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_305_599 + day * 86_400);
        for (i, (method, url)) in urls.iter().enumerate() {
            for (j, extra) in extras.iter().enumerate() {
                let c = &creds[(i + j) % creds.len()];
                let region = regions[(i + j + day as usize) % regions.len()];
                let t = base + Duration::from_secs((i as u64 + j as u64) % 2);
                let body = if *method == "GET" {
                    ""
                } else {
                    r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#
                };
                let mut ours = request(method, url, body, extra);
                let mut theirs = ours.clone();
                signer.sign(&mut ours, c, region, SIGNING_NAME, t).unwrap();
                sign_request(
                    &mut theirs,
                    c,
                    region,
                    SIGNING_NAME,
                    t,
                    SignOptions::default(),
                )
                .unwrap();
                assert_eq!(
                    signed_headers(&ours),
                    signed_headers(&theirs),
                    "{method} {url} {extra:?} {region}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * urls.len() * extras.len());
}

#[test]
fn a_changed_secret_gets_a_new_key() {
    let signer = Signer::default();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_331_109);
    let url = "http://127.0.0.1:1/model/m/converse";
    for secret in ["first-secret", "second-secret", "first-secret"] {
        let c = Credentials::new("AKIDSAME", secret, None, None, "t");
        let mut ours = request("POST", url, "{}", &[]);
        let mut theirs = ours.clone();
        signer
            .sign(&mut ours, &c, "us-east-1", SIGNING_NAME, t)
            .unwrap();
        sign_request(
            &mut theirs,
            &c,
            "us-east-1",
            SIGNING_NAME,
            t,
            SignOptions::default(),
        )
        .unwrap();
        assert_eq!(signed_headers(&ours), signed_headers(&theirs), "{secret}");
    }
}
