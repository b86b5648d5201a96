//! The two S3 calls the invocation log needs, path-style so any
//! S3-compatible server works: HeadBucket (to learn the bucket's region from
//! `x-amz-bucket-region`) and PutObject, signed with SigV4 for `s3`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use parking_lot::RwLock;

use crate::Timeouts;
use crate::bedrock::{CredentialSource, HttpsClient, https_client};
use crate::sign::{SignOptions, sign_request};

/// How S3 wants requests signed: the path as sent (encoded once, not
/// normalized) and the payload hash in `x-amz-content-sha256`.
const S3_SIGNING: SignOptions = SignOptions {
    normalize: false,
    sign_body_header: true,
    sign_session_token: true,
    single_encode: true,
};

/// An S3 (or S3-compatible) client for one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: HttpsClient,
    creds: Arc<dyn CredentialSource>,
    endpoint: Option<String>,
    bucket: String,
    region: Arc<RwLock<String>>,
    timeout: Duration,
}

impl S3Client {
    /// A client for `bucket`; `endpoint` overrides AWS's
    /// (`http://127.0.0.1:9000` for a local server), `region` is the first
    /// guess until [`S3Client::head_bucket`] learns the real one.
    pub fn new(
        creds: Arc<dyn CredentialSource>,
        endpoint: Option<String>,
        bucket: &str,
        region: &str,
    ) -> S3Client {
        let timeouts = Timeouts::default();
        S3Client {
            http: https_client(&timeouts),
            creds,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            bucket: bucket.to_string(),
            region: Arc::new(RwLock::new(region.to_string())),
            timeout: Duration::from_secs(30),
        }
    }

    /// The bucket's region as last learned (or guessed).
    pub fn region(&self) -> String {
        self.region.read().clone()
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn url(&self, region: &str, key: &str) -> String {
        let base = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        if key.is_empty() {
            format!("{base}/{}", self.bucket)
        } else {
            format!("{base}/{}/{}", self.bucket, encode_key(key))
        }
    }

    async fn send(
        &self,
        method: http::Method,
        region: &str,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<http::Response<Bytes>, String> {
        let creds = self.creds.credentials().await?;
        let mut b = http::Request::builder()
            .method(method)
            .uri(self.url(region, key));
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let mut req = b.body(body).map_err(|e| e.to_string())?;
        sign_request(
            &mut req,
            &creds,
            region,
            "s3",
            SystemTime::now(),
            S3_SIGNING,
        )
        .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req.map(Full::new)))
            .await
            .map_err(|_| format!("S3 did not answer within {:?}", self.timeout))?
            .map_err(|e| format!("cannot reach S3: {e}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(self.timeout, body.collect())
            .await
            .map_err(|_| "S3 stopped sending its answer".to_string())?
            .map_err(|e| format!("S3 answer broke off: {e}"))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, bytes))
    }

    /// HeadBucket: learns and returns the bucket's region. An error says
    /// whether the bucket is missing, forbidden or unreachable.
    pub async fn head_bucket(&self) -> Result<String, String> {
        let guess = self.region();
        let resp = self
            .send(http::Method::HEAD, &guess, "", Bytes::new(), None)
            .await?;
        let region = resp
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(r) = &region {
            *self.region.write() = r.clone();
        }
        match (resp.status().as_u16(), region) {
            (200, Some(r)) => Ok(r),
            (200, None) => Ok(guess),
            (301 | 400, Some(r)) => Ok(r),
            (404, _) => Err(format!("bucket '{}' does not exist", self.bucket)),
            (403, _) => Err(format!("access to bucket '{}' is denied", self.bucket)),
            (s, _) => Err(format!("HeadBucket '{}' answered {s}", self.bucket)),
        }
    }

    /// PutObject; the same key twice replaces the object (so re-sending a
    /// batch after a crash cannot duplicate it).
    pub async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), String> {
        let region = self.region();
        let resp = self
            .send(http::Method::PUT, &region, key, body, Some(content_type))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(resp.body());
            Err(format!(
                "PutObject {key} answered {}: {}",
                resp.status().as_u16(),
                text.chars().take(300).collect::<String>()
            ))
        }
    }
}

impl S3Client {
    /// GetObject: the object's bytes, `None` when there is no such key.
    pub async fn get_object(&self, key: &str) -> Result<Option<Bytes>, String> {
        let region = self.region();
        let resp = self
            .send(http::Method::GET, &region, key, Bytes::new(), None)
            .await?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.into_body())),
            404 => Ok(None),
            s => Err(format!("GetObject {key} answered {s}")),
        }
    }
}

/// Percent-encodes a key for the path, keeping `/` and unreserved characters.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_credential_types::Credentials;

    /// Signs a request to the example bucket of AWS's S3 SigV4 documentation
    /// ("Examples: Signature Calculations", 2013-05-24, us-east-1) the way
    /// `S3Client` signs, and returns the signature.
    fn documented_signature(
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> String {
        let creds = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "s3-docs",
        );
        let mut b = http::Request::builder().method(method).uri(format!(
            "https://examplebucket.s3.amazonaws.com{path_and_query}"
        ));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(Bytes::from_static(body.as_bytes())).unwrap();
        let may_24 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        sign_request(&mut req, &creds, "us-east-1", "s3", may_24, S3_SIGNING).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        auth.rsplit_once("Signature=").unwrap().1.to_string()
    }

    #[test]
    fn signs_the_documented_get_object_example() {
        let sig = documented_signature("GET", "/test.txt", &[("range", "bytes=0-9")], "");
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The key has a `$`: the canonical path must encode it once
    /// (`%24`), as S3 does, where other services encode it twice.
    #[test]
    fn signs_the_documented_put_object_example_with_the_key_encoded_once() {
        let path = format!("/{}", encode_key("test$file.text"));
        assert_eq!(path, "/test%24file.text");
        let sig = documented_signature(
            "PUT",
            &path,
            &[
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            "Welcome to Amazon S3.",
        );
        assert_eq!(
            sig,
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn signs_the_documented_bucket_examples_with_query_strings() {
        assert_eq!(
            documented_signature("GET", "/?lifecycle", &[], ""),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        assert_eq!(
            documented_signature("GET", "/?max-keys=2&prefix=J", &[], ""),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn keys_keep_slashes_and_escape_the_rest() {
        assert_eq!(
            encode_key("logs/dt=2026-11-22/hour=07/a b.ndjson.gz"),
            "logs/dt%3D2026-11-22/hour%3D07/a%20b.ndjson.gz"
        );
    }
}
