//! The few S3 calls a simulated batch job makes, path-style against the
//! S3-compatible server the fleet is given (`FleetConfig::s3_endpoint`):
//! the bucket's region, an object, the keys under a prefix, and a put.
//! Signed with SigV4 for `s3` with the fleet's own credential (it stands in
//! for the job's service role).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A bucket and key, from `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    /// Parses `s3://bucket[/key]`.
    pub fn parse(uri: &str) -> Option<S3Uri> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// An S3-compatible server at `endpoint`.
#[derive(Debug, Clone)]
pub struct S3 {
    endpoint: String,
    region: String,
    credential: crate::config::SimCredential,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl S3 {
    /// A client for buckets in `region`.
    pub fn new(endpoint: &str, region: &str, credential: crate::config::SimCredential) -> S3 {
        S3 {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            credential,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
        let req = self.signed(method, path, body)?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| "S3 did not answer within 30 s".to_string())?
            .map_err(|e| format!("cannot reach S3 at {}: {e}", self.endpoint))?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("S3 answer broke off: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// A request signed for `s3` in this client's region.
    fn signed(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        use meridian_wire::sigv4;
        let uri: http::Uri = format!("{}{path}", self.endpoint)
            .parse()
            .map_err(|e| format!("bad S3 URL: {e}"))?;
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let now = std::time::SystemTime::now();
        let amz_date = sigv4::format_amz_date(now);
        let date = &amz_date[..8];
        let hash = sigv4::payload_hash(&body);
        let mut headers = http::HeaderMap::new();
        for (k, v) in [
            ("host", host.as_str()),
            ("x-amz-content-sha256", hash.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ] {
            headers.insert(
                k,
                http::HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let key = sigv4::signing_key(&self.credential.secret_access_key, date, &self.region, "s3");
        let rules = sigv4::Rules {
            service: "s3",
            normalize: false,
            encoding: sigv4::PathEncoding::Single,
            now: None,
        };
        let request = sigv4::Request {
            method: method.as_str(),
            raw_path: uri.path(),
            raw_query: uri.query().unwrap_or(""),
            headers: &headers,
            body: &body,
        };
        let auth = sigv4::authorization(
            &request,
            signed,
            &rules,
            &self.credential.access_key_id,
            &amz_date,
            &scope,
            &key,
        )
        .map_err(|e| e.message)?;
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        b.header("authorization", auth)
            .body(Full::new(body))
            .map_err(|e| e.to_string())
    }

    /// The bucket's region, or why it has none.
    pub async fn bucket_region(&self, bucket: &str) -> Result<String, String> {
        let (status, headers, _) = self
            .send(
                http::Method::HEAD,
                &format!("/{}", encode(bucket)),
                Bytes::new(),
            )
            .await?;
        if status == http::StatusCode::NOT_FOUND {
            return Err(format!("bucket '{bucket}' does not exist"));
        }
        Ok(headers
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("us-east-1")
            .to_string())
    }

    /// An object's bytes.
    pub async fn get(&self, uri: &S3Uri) -> Result<Bytes, String> {
        let (status, _, body) = self
            .send(http::Method::GET, &path(uri), Bytes::new())
            .await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!(
                "s3://{}/{} cannot be read ({})",
                uri.bucket,
                uri.key,
                status.as_u16()
            ))
        }
    }

    /// The keys under a prefix (one page of up to 1,000: a batch job reads
    /// no more files than that).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
        let q = format!("/{}?list-type=2&prefix={}", encode(bucket), encode(prefix));
        let (status, _, body) = self.send(http::Method::GET, &q, Bytes::new()).await?;
        if !status.is_success() {
            return Err(format!(
                "s3://{bucket}/{prefix} cannot be listed ({})",
                status.as_u16()
            ));
        }
        let text = String::from_utf8_lossy(&body);
        Ok(text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| unescape(k)))
            .collect())
    }

    /// Writes an object.
    pub async fn put(&self, uri: &S3Uri, body: Bytes) -> Result<(), String> {
        let (status, _, _) = self.send(http::Method::PUT, &path(uri), body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "s3://{}/{} cannot be written ({})",
                uri.bucket,
                uri.key,
                status.as_u16()
            ))
        }
    }
}

fn path(uri: &S3Uri) -> String {
    format!("/{}/{}", encode(&uri.bucket), encode(&uri.key))
}

/// Percent-encodes all but unreserved characters and `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_uris() {
        assert_eq!(
            S3Uri::parse("s3://b/in/x.jsonl"),
            Some(S3Uri {
                bucket: "b".into(),
                key: "in/x.jsonl".into()
            })
        );
        assert_eq!(S3Uri::parse("s3://b").map(|u| u.key), Some(String::new()));
        assert_eq!(S3Uri::parse("https://b/x"), None);
        assert_eq!(S3Uri::parse("s3:///x"), None);
    }
}
