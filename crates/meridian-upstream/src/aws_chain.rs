//! Credentials through aws-config: the default chain (environment, profiles
//! with SSO and credential_process, web identity, ECS, IMDS), a named
//! profile, or a role assumed through STS with an external ID. Cached, and
//! refreshed five minutes before they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    provider: SharedCredentialsProvider,
    cache: tokio::sync::Mutex<Option<Credentials>>,
    /// What it is, for operators.
    pub description: String,
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
        Some(AwsCredentials {
            provider,
            cache: tokio::sync::Mutex::new(None),
            description,
        })
    }

    /// Resolves once, within `timeout`: whether credentials are really there.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.get()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn get(&self) -> Result<Credentials, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(c.clone());
        }
        let fresh = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("{e}"))?;
        *cache = Some(fresh.clone());
        Ok(fresh)
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
