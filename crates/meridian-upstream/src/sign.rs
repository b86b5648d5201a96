//! Outbound SigV4 signing: [`Signer`] for Bedrock's requests (checked
//! against `aws-sigv4`), and `aws-sigv4` itself where other settings are
//! needed (S3, the signing test suite).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use meridian_wire::sigv4;

/// Bedrock's signing name, for runtime and control plane alike.
pub const SIGNING_NAME: &str = "bedrock";
/// The SigV4 service name Mantle's endpoints verify.
pub const MANTLE_SIGNING_NAME: &str = "bedrock-mantle";

/// Knobs the AWS signing test suite varies; Bedrock uses the defaults.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// Normalize the path before signing.
    pub normalize: bool,
    /// Send `x-amz-content-sha256`.
    pub sign_body_header: bool,
    /// Sign the session token header (vs. adding it after signing).
    pub sign_session_token: bool,
    /// Encode the path once, as S3 expects (other services: twice).
    pub single_encode: bool,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            normalize: true,
            sign_body_header: false,
            sign_session_token: true,
            single_encode: false,
        }
    }
}

/// A request could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign request: {0}")]
pub struct SignError(String);

/// Signs `req` in place: adds `x-amz-date`, the session token if any, and `authorization`.
pub fn sign_request(
    req: &mut http::Request<Bytes>,
    creds: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    opts: SignOptions,
) -> Result<(), SignError> {
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.uri_path_normalization_mode = if opts.normalize {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    settings.payload_checksum_kind = if opts.sign_body_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    if opts.single_encode {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
    }
    settings.session_token_mode = if opts.sign_session_token {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

/// Headers `aws-sigv4` leaves out of a signature; so does [`Signer`].
const UNSIGNED: [&str; 4] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];

/// Names of the headers signing adds (constants: an insert by `&str` parses
/// the name each time).
const AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
const AMZ_SECURITY_TOKEN: http::HeaderName = http::HeaderName::from_static("x-amz-security-token");

/// Signing keys in use: one per access key, day, region and service.
const KEPT_KEYS: usize = 64;

/// Bedrock's signer: the signature `aws-sigv4` computes with its default
/// settings (path normalized and encoded twice, no payload header, session
/// token signed), with the day's signing key derived once per region instead
/// of four HMACs per request. Tests check it against `aws-sigv4`.
#[derive(Default)]
pub struct Signer {
    /// `(access key/scope, fingerprint of the secret, key)`.
    keys: parking_lot::Mutex<Vec<(String, u64, [u8; 32])>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.lock().len())
    }
}

impl Signer {
    /// Signs `req` in place: adds `x-amz-date`, the session token if any, and
    /// `authorization`.
    pub fn sign(
        &self,
        req: &mut http::Request<Bytes>,
        creds: &Credentials,
        region: &str,
        service: &str,
        time: SystemTime,
    ) -> Result<(), SignError> {
        let amz_date = sigv4::format_amz_date(time);
        let date = &amz_date[..8];
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let header = |v: &str| {
            http::HeaderValue::from_str(v).map_err(|e| SignError(format!("bad header value: {e}")))
        };
        let h = req.headers_mut();
        h.insert(AMZ_DATE, header(&amz_date)?);
        if let Some(token) = creds.session_token() {
            h.insert(AMZ_SECURITY_TOKEN, header(token)?);
        }
        let mut names: Vec<&str> = h
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|n| !UNSIGNED.contains(n))
            .collect();
        names.sort_unstable();
        names.dedup();
        let signed = names.join(";");
        let key = self.key(creds, &scope, || {
            sigv4::signing_key(creds.secret_access_key(), date, region, service)
        });
        let rules = sigv4::Rules {
            service,
            normalize: true,
            encoding: sigv4::PathEncoding::Double,
            now: None,
        };
        let wire = sigv4::Request {
            method: req.method().as_str(),
            raw_path: req.uri().path(),
            raw_query: req.uri().query().unwrap_or(""),
            headers: req.headers(),
            body: req.body(),
        };
        let auth = sigv4::authorization(
            &wire,
            &signed,
            &rules,
            creds.access_key_id(),
            &amz_date,
            &scope,
            &key,
        )
        .map_err(|e| SignError(e.message))?;
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, header(&auth)?);
        Ok(())
    }

    /// The signing key for these credentials and scope, derived by `derive`
    /// when not kept yet.
    /// A secret that changes under the same access key ID gets a new key.
    fn key(&self, creds: &Credentials, scope: &str, derive: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        creds.secret_access_key().hash(&mut h);
        let secret = h.finish();
        let access = creds.access_key_id();
        let mut keys = self.keys.lock();
        let found = keys.iter().find(|(id, s, _)| {
            *s == secret
                && id.len() == access.len() + 1 + scope.len()
                && id.starts_with(access)
                && id.ends_with(scope)
        });
        if let Some((_, _, k)) = found {
            return *k;
        }
        let k = derive();
        if keys.len() >= KEPT_KEYS {
            keys.remove(0);
        }
        keys.push((format!("{access}/{scope}"), secret, k));
        k
    }
}
