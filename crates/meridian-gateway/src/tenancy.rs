//! Who a caller is: the tenant its API key or SigV4 access key belongs to.
//! Built from the config (and rebuilt with it); keys issued at run time
//! through `/admin` are looked up in the state backend.
//!
//! Without `[tenants]`, every caller is the implicit tenant `default`, and
//! `[auth]` credentials and API keys (if any) identify it.

use std::collections::HashMap;
use std::sync::Arc;

use meridian_config::{Config, InboundCredential, KeyHash, Tenant};
use subtle::ConstantTimeEq;

/// The configured tenants, indexed for identification.
#[derive(Debug)]
pub struct Tenants {
    list: Vec<Arc<Tenant>>,
    by_key: Vec<(KeyHash, usize)>,
    by_access_key: HashMap<String, (usize, String)>,
    enforced: bool,
    /// Who an unidentified caller is when nothing is enforced.
    anonymous: Arc<Tenant>,
}

impl Tenants {
    /// From the config: `[tenants.*]`, and `[auth]` as the implicit tenant's.
    pub fn new(config: &Config) -> Tenants {
        let mut list: Vec<Arc<Tenant>> = config.tenants.iter().cloned().map(Arc::new).collect();
        let auth = &config.auth;
        if list.is_empty() || auth.is_enforced() {
            let mut implicit = Tenant::implicit();
            implicit.api_keys = auth.api_keys.iter().map(|k| crate::keys::hash(k)).collect();
            implicit.credentials.clone_from(&auth.credentials);
            list.push(Arc::new(implicit));
        }
        let mut by_key = Vec::new();
        let mut by_access_key = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            for h in &t.api_keys {
                by_key.push((*h, i));
            }
            for InboundCredential {
                access_key_id,
                secret_access_key,
            } in &t.credentials
            {
                by_access_key.insert(access_key_id.clone(), (i, secret_access_key.clone()));
            }
        }
        let anonymous = list
            .iter()
            .find(|t| t.name == "default")
            .or(list.first())
            .cloned()
            .unwrap_or_else(|| Arc::new(Tenant::implicit()));
        Tenants {
            list,
            by_key,
            by_access_key,
            enforced: !config.tenants.is_empty() || auth.is_enforced(),
            anonymous,
        }
    }

    /// Whether callers must identify themselves.
    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// The tenant of an unidentified caller when nothing is enforced.
    pub fn anonymous(&self) -> Arc<Tenant> {
        self.anonymous.clone()
    }

    /// The tenant of a configured API key, by its hash. Every configured
    /// hash is compared, each in constant time.
    pub fn by_key(&self, h: &KeyHash) -> Option<Arc<Tenant>> {
        let mut found = None;
        for (k, i) in &self.by_key {
            if bool::from(k.ct_eq(h)) {
                found = Some(*i);
            }
        }
        found.map(|i| self.list[i].clone())
    }

    /// The tenant and secret of a SigV4 access key.
    pub fn by_access_key(&self, id: &str) -> Option<(Arc<Tenant>, &str)> {
        self.by_access_key
            .get(id)
            .map(|(i, secret)| (self.list[*i].clone(), secret.as_str()))
    }

    /// The tenant called `name`.
    pub fn named(&self, name: &str) -> Option<Arc<Tenant>> {
        self.list.iter().find(|t| t.name == name).cloned()
    }

    /// Every tenant.
    pub fn all(&self) -> &[Arc<Tenant>] {
        &self.list
    }
}
