//! Finding AWS credentials without network calls: a Bedrock API key, static
//! keys in the environment, or static keys of a profile in the shared files.
//!
//! Roles (assume-role, web identity, SSO, instance and task roles) need STS or
//! metadata calls and are not resolved here yet; `meridian doctor` says so.

use std::path::PathBuf;
use std::sync::Arc;

use aws_credential_types::Credentials;
use meridian_catalog::env::EnvSource;

use crate::bedrock::{Auth, StaticCredentials};

/// Credentials found, and where.
#[derive(Debug, Clone)]
pub struct Found {
    /// How to authenticate.
    pub auth: Auth,
    /// Where they came from, for operators (never the secret).
    pub source: String,
}

/// Looks for credentials in the environment and the shared files.
pub fn discover(env: &dyn EnvSource) -> Option<Found> {
    if let Some(token) = env.non_empty("AWS_BEARER_TOKEN_BEDROCK") {
        return Some(Found {
            auth: Auth::Bearer(token),
            source: "Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)".into(),
        });
    }
    if let (Some(ak), Some(sk)) = (
        env.non_empty("AWS_ACCESS_KEY_ID"),
        env.non_empty("AWS_SECRET_ACCESS_KEY"),
    ) {
        let creds = Credentials::new(
            ak,
            sk,
            env.non_empty("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        return Some(Found {
            auth: Auth::SigV4(Arc::new(StaticCredentials(creds))),
            source: "environment (AWS_ACCESS_KEY_ID)".into(),
        });
    }
    let profile = env
        .non_empty("AWS_PROFILE")
        .unwrap_or_else(|| "default".into());
    let file = env
        .non_empty("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".aws").join("credentials")))?;
    let text = std::fs::read_to_string(&file).ok()?;
    let (ak, sk, token) = profile_keys(&text, &profile)?;
    let creds = Credentials::new(ak, sk, token, None, "shared-credentials-file");
    Some(Found {
        auth: Auth::SigV4(Arc::new(StaticCredentials(creds))),
        source: format!("profile '{profile}' in {}", file.display()),
    })
}

/// Static keys of `[profile]` in a shared credentials file.
pub fn profile_keys(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let mut in_section = false;
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = h.trim() == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => ak = Some(v),
                "aws_secret_access_key" => sk = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((ak?, sk?, token))
}

#[cfg(test)]
mod tests {
    use meridian_catalog::env::MapEnv;

    use super::*;

    #[test]
    fn finds_keys_in_order() {
        assert!(discover(&MapEnv::new([("HOME", "/nonexistent")])).is_none());
        let f = discover(&MapEnv::new([
            ("AWS_BEARER_TOKEN_BEDROCK", "k"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .unwrap();
        assert!(matches!(f.auth, Auth::Bearer(_)));
        let f = discover(&MapEnv::new([
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]))
        .unwrap();
        assert!(f.source.contains("environment"));
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n[prod]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        assert_eq!(
            profile_keys(text, "prod"),
            Some(("B".into(), "T".into(), Some("X".into())))
        );
        assert_eq!(profile_keys(text, "none"), None);
    }
}
