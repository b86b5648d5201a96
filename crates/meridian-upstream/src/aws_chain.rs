//! Credentials through aws-config: the default chain (environment, profiles
//! with SSO and credential_process, web identity, ECS, IMDS), a named
//! profile, or a role assumed through STS with an external ID. Cached, and
//! refreshed five minutes before they expire by one background task while
//! requests keep signing with the cached credentials; only a caller with no
//! valid credentials at all waits, for that same refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio::sync::Notify;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_types::region::Region;

use crate::bedrock::{CredentialSource, futures_lite::BoxedCredentials};

/// Refresh this long before expiry.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Which identity to use.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Named profile (else the default chain).
    pub profile: Option<String>,
    /// Role to assume on top of it.
    pub role_arn: Option<String>,
    /// External ID for the role.
    pub external_id: Option<String>,
}

/// A cached aws-config credential provider.
#[derive(Debug)]
pub struct AwsCredentials {
    inner: Arc<Cache>,
    /// What it is, for operators.
    pub description: String,
}

#[derive(Debug)]
struct Cache {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Credentials>>,
    last_error: RwLock<Option<String>>,
    refreshing: AtomicBool,
    refreshed: Notify,
}

fn valid_until(c: &Credentials, t: SystemTime) -> bool {
    c.expiry().is_none_or(|e| e > t)
}

impl AwsCredentials {
    /// Builds the provider for `identity`; STS and SSO calls go to `region`.
    pub async fn new(region: &str, identity: &Identity) -> Option<AwsCredentials> {
        // rustls on ring: one crypto provider for the whole process.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(region.to_string()));
        if let Some(p) = &identity.profile {
            loader = loader.profile_name(p);
        }
        let sdk = loader.load().await;
        let base = sdk.credentials_provider()?;
        let mut description = match &identity.profile {
            Some(p) => format!("AWS profile '{p}'"),
            None => "the AWS default credential chain".to_string(),
        };
        let provider = match &identity.role_arn {
            None => base,
            Some(role) => {
                let mut b =
                    aws_config::sts::AssumeRoleProvider::builder(role).session_name("meridian");
                if let Some(ext) = &identity.external_id {
                    b = b.external_id(ext);
                }
                description = format!("role {role} assumed from {description}");
                SharedCredentialsProvider::new(b.configure(&sdk).build().await)
            }
        };
        Some(AwsCredentials::from_provider(provider, &description))
    }

    /// Credentials from any aws-config provider, cached and refreshed the same way.
    pub fn from_provider(provider: SharedCredentialsProvider, description: &str) -> AwsCredentials {
        AwsCredentials {
            inner: Arc::new(Cache {
                provider,
                current: RwLock::new(None),
                last_error: RwLock::new(None),
                refreshing: AtomicBool::new(false),
                refreshed: Notify::new(),
            }),
            description: description.to_string(),
        }
    }

    /// Resolves once, within `timeout`: whether credentials are really there.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.get()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn get(&self) -> Result<Credentials, String> {
        let c = &self.inner;
        // Registered before the check, so a refresh ending in between still wakes it.
        let refreshed = c.refreshed.notified();
        let now = SystemTime::now();
        let cached = c.current.read().clone();
        match cached {
            Some(creds) if valid_until(&creds, now + REFRESH_BEFORE) => return Ok(creds),
            Some(creds) if valid_until(&creds, now) => {
                self.refresh();
                return Ok(creds);
            }
            _ => self.refresh(),
        }
        refreshed.await;
        match c.current.read().clone() {
            Some(creds) if valid_until(&creds, SystemTime::now()) => Ok(creds),
            _ => Err(c
                .last_error
                .read()
                .clone()
                .unwrap_or_else(|| "credentials could not be refreshed".into())),
        }
    }

    /// Starts a refresh unless one is running.
    fn refresh(&self) {
        let c = self.inner.clone();
        if c.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            match c.provider.provide_credentials().await {
                Ok(fresh) => {
                    *c.current.write() = Some(fresh);
                    *c.last_error.write() = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AWS credentials could not be refreshed");
                    *c.last_error.write() = Some(format!("{e}"));
                }
            }
            c.refreshing.store(false, Ordering::Release);
            c.refreshed.notify_waiters();
        });
    }
}

impl CredentialSource for AwsCredentials {
    fn credentials(&self) -> BoxedCredentials<'_> {
        Box::pin(self.get())
    }
}

/// Shared form, for [`crate::Auth::SigV4`].
pub fn shared(c: AwsCredentials) -> Arc<dyn CredentialSource> {
    Arc::new(c)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use aws_credential_types::provider::future::ProvideCredentials as Pending;

    use super::*;

    /// Hands out credentials valid for `ttl`, slowly, counting calls.
    #[derive(Debug)]
    struct Slow {
        calls: Arc<AtomicU32>,
        ttl: Duration,
    }

    impl ProvideCredentials for Slow {
        fn provide_credentials<'a>(&'a self) -> Pending<'a>
        where
            Self: 'a,
        {
            Pending::new(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    None,
                    Some(SystemTime::now() + self.ttl),
                    "test",
                ))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn near_expiry_requests_sign_with_the_cache_while_one_refresh_runs() {
        let calls = Arc::new(AtomicU32::new(0));
        let provider = SharedCredentialsProvider::new(Slow {
            calls: calls.clone(),
            ttl: Duration::from_secs(60),
        });
        let creds = AwsCredentials::from_provider(provider, "test");
        // No credentials yet: the first callers wait for one refresh.
        let (a, b) = tokio::join!(creds.get(), creds.get());
        assert_eq!(a.unwrap().access_key_id(), "AKID1");
        assert_eq!(b.unwrap().access_key_id(), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Valid for 60 s, inside the 5-minute refresh window: every caller
        // gets the cached credentials at once, and one refresh starts.
        for _ in 0..50 {
            let now = std::pin::pin!(creds.get());
            let got = futures_util::FutureExt::now_or_never(now)
                .expect("served from the cache without waiting")
                .unwrap();
            assert_eq!(got.access_key_id(), "AKID1");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one background refresh for 50 callers"
        );
    }
}
