//! Outbound SigV4 signing with `aws-sigv4` (signing name `bedrock`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;

/// Bedrock's signing name, for runtime and control plane alike.
pub const SIGNING_NAME: &str = "bedrock";

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
