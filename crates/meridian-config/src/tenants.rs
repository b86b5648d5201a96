//! Tenants, the state backend, the admin API and inbound TLS: who may call,
//! what each caller may do, and where the shared limits live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use meridian_catalog::Policy;
use toml::Spanned;

use crate::InboundCredential;
use crate::error::{At, ConfigError};
use crate::raw::{RawConfig, RawCredential};

/// The SHA-256 of an API key: the only form a key is stored in.
pub type KeyHash = [u8; 32];

/// Prefix of a key hash as written in config.
pub const HASH_PREFIX: &str = "sha256:";

/// A tenant's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Requests admitted per minute (with one second's burst).
    pub requests_per_minute: Option<u64>,
    /// Tokens (input estimate + max tokens, settled to real usage) per minute.
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u64>,
    /// Estimated spend per UTC day, USD.
    pub budget_usd_per_day: Option<f64>,
    /// Estimated spend per UTC month, USD.
    pub budget_usd_per_month: Option<f64>,
    /// With a budget: serve targets whose price the catalog does not know
    /// (a model a refresh found), uncharged and flagged, instead of refusing
    /// them (`unpriced = "admit"`; the default refuses: spend that cannot be
    /// accounted does not go upstream).
    pub admit_unpriced: bool,
}

impl Limits {
    /// Whether a budget is set and an unpriced target must be refused.
    pub fn refuses_unpriced(&self) -> bool {
        (self.budget_usd_per_day.is_some() || self.budget_usd_per_month.is_some())
            && !self.admit_unpriced
    }

    /// Whether any limit or budget is set.
    pub fn any(&self) -> bool {
        *self != Limits::default()
    }
}

/// A team calling Meridian.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Name, in records, traces and (opt-in) metric labels.
    pub name: String,
    /// Hashes of its bearer API keys.
    pub api_keys: Vec<KeyHash>,
    /// SigV4 key pairs that sign as this tenant.
    pub credentials: Vec<InboundCredential>,
    /// Exposed models it may call; `None`: all.
    pub models: Option<BTreeSet<String>>,
    /// Residency narrowing every request of the tenant; `None`: the default's.
    pub residency: Option<Policy>,
    /// Limits and budgets.
    pub limits: Limits,
    /// The `[guards]` entry applied to every request of the tenant.
    pub guard: Option<String>,
}

impl Tenant {
    /// The tenant requests belong to when no `[tenants]` are configured.
    pub fn implicit() -> Tenant {
        Tenant {
            name: "default".into(),
            api_keys: Vec::new(),
            credentials: Vec::new(),
            models: None,
            residency: None,
            limits: Limits::default(),
            guard: None,
        }
    }

    /// Whether it may call exposed model `name`.
    pub fn may_call(&self, name: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(name))
    }
}

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// In this process: one replica.
    #[default]
    Memory,
    /// A Redis 7+ / Valkey / ElastiCache server shared by every replica.
    Redis {
        /// `redis://` or `rediss://` URL.
        url: String,
    },
}

/// What a replica does when the shared backend cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnavailable {
    /// Keep serving under local limits (each limit ÷ replicas).
    #[default]
    FailOpen,
    /// Refuse limited tenants' requests until the backend is back.
    FailClosed,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// Memory or Redis.
    pub backend: Backend,
    /// When Redis is unreachable.
    pub on_unavailable: OnUnavailable,
    /// How many replicas share the limits (divides them under `fail_open`).
    pub replicas: u32,
    /// Longest wait for one backend call before it counts as unreachable.
    pub timeout_ms: u64,
    /// `url_env` named a variable that is not set where the config was
    /// read: fine for `config check` or `iam-policy` on a laptop, refused by
    /// `serve` (and reported by `doctor`).
    pub url_env_unset: Option<String>,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: Backend::Memory,
            on_unavailable: OnUnavailable::FailOpen,
            replicas: 1,
            timeout_ms: 100,
            url_env_unset: None,
        }
    }
}

impl StateSettings {
    /// Why the Redis URL is missing, when `url_env` names an unset variable.
    pub fn missing_url(&self) -> Option<String> {
        self.url_env_unset.as_ref().map(|var| {
            format!(
                "state.url_env: the environment variable {var} is not set (it should hold redis://HOST:PORT)"
            )
        })
    }
}

/// Inbound TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Parses `sha256:<64 hex>`.
pub fn parse_key_hash(s: &str) -> Option<KeyHash> {
    let hex = s.strip_prefix(HASH_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn key_hash(at: &At<'_>, s: &Spanned<String>, key: &str) -> Result<KeyHash, ConfigError> {
    parse_key_hash(s.get_ref()).ok_or_else(|| {
        // Never repeat the value: it may be a key pasted by mistake.
        at.at(
            s,
            key,
            "expected a key hash 'sha256:' followed by 64 hex digits (`meridian keys create --tenant NAME` prints one); keys themselves are never stored in the config",
        )
    })
}

pub(crate) fn credentials(
    at: &At<'_>,
    raw: &[RawCredential],
    key: &str,
) -> Result<Vec<InboundCredential>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            if c.access_key_id.get_ref().trim().is_empty() || c.secret_access_key.is_empty() {
                return Err(at.at(
                    &c.access_key_id,
                    format!("{key}[{i}]"),
                    "access_key_id and secret_access_key must not be empty",
                ));
            }
            Ok(InboundCredential {
                access_key_id: c.access_key_id.get_ref().clone(),
                secret_access_key: c.secret_access_key.clone(),
            })
        })
        .collect()
}

fn positive<T: PartialOrd + Default + Copy>(
    at: &At<'_>,
    v: &Option<Spanned<T>>,
    key: &str,
) -> Result<Option<T>, ConfigError> {
    match v {
        Some(s) if *s.get_ref() > T::default() => Ok(Some(*s.get_ref())),
        Some(s) => Err(at.at(
            s,
            key,
            "must be greater than zero (leave it out for no limit)",
        )),
        None => Ok(None),
    }
}

/// Turns a residency value at a key into a policy.
pub(crate) type PolicyOf<'a> =
    dyn Fn(&Spanned<crate::raw::RawResidency>, &str) -> Result<Policy, ConfigError> + 'a;

/// Validates `[tenants.*]`. `policy` turns a residency value into a policy;
/// `models` are the exposed names.
pub(crate) fn validate_tenants(
    at: &At<'_>,
    raw: &RawConfig,
    models: &BTreeSet<&str>,
    policy: &PolicyOf<'_>,
    guards: &BTreeMap<String, crate::guard::Guard>,
) -> Result<Vec<Tenant>, ConfigError> {
    let mut out = Vec::new();
    let mut hashes: BTreeMap<KeyHash, String> = BTreeMap::new();
    let mut key_ids: BTreeMap<String, String> = BTreeMap::new();
    for (name, t) in &raw.tenants {
        let n = name.get_ref();
        let key = format!("tenants.{n}");
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(at.at(name, &key, "tenant names use letters, digits, '-' and '_'"));
        }
        let mut api_keys = Vec::new();
        for (i, k) in t.api_keys.iter().enumerate() {
            let k_key = format!("{key}.api_keys[{i}]");
            let h = key_hash(at, k, &k_key)?;
            if let Some(other) = hashes.insert(h, n.clone()) {
                return Err(at.at(
                    k,
                    k_key,
                    format!("this key hash is already tenant '{other}''s"),
                ));
            }
            api_keys.push(h);
        }
        let creds = credentials(at, &t.credentials, &format!("{key}.credentials"))?;
        for (c, raw_c) in creds.iter().zip(&t.credentials) {
            if let Some(other) = key_ids.insert(c.access_key_id.clone(), n.clone()) {
                return Err(at.at(
                    &raw_c.access_key_id,
                    format!("{key}.credentials"),
                    format!(
                        "access key '{}' is already tenant '{other}''s",
                        c.access_key_id
                    ),
                ));
            }
        }
        let allowed = match &t.models {
            None => None,
            Some(list) => {
                for m in list.get_ref() {
                    if !models.contains(m.as_str()) {
                        let known: Vec<&str> = models.iter().copied().collect();
                        return Err(at.at(
                            list,
                            format!("{key}.models"),
                            format!(
                                "'{m}' is not an exposed model; exposed: {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                Some(list.get_ref().iter().cloned().collect())
            }
        };
        let residency = match &t.residency {
            Some(r) => Some(policy(r, &format!("{key}.residency"))?),
            None => None,
        };
        let limits = Limits {
            requests_per_minute: positive(
                at,
                &t.requests_per_minute,
                &format!("{key}.requests_per_minute"),
            )?,
            tokens_per_minute: positive(
                at,
                &t.tokens_per_minute,
                &format!("{key}.tokens_per_minute"),
            )?,
            max_concurrent: positive(at, &t.max_concurrent, &format!("{key}.max_concurrent"))?,
            budget_usd_per_day: positive(
                at,
                &t.budget_usd_per_day,
                &format!("{key}.budget_usd_per_day"),
            )?,
            budget_usd_per_month: positive(
                at,
                &t.budget_usd_per_month,
                &format!("{key}.budget_usd_per_month"),
            )?,
            admit_unpriced: match &t.unpriced {
                None => false,
                Some(v) => match v.get_ref().as_str() {
                    "refuse" => false,
                    "admit" => true,
                    other => {
                        return Err(at.at(
                            v,
                            format!("{key}.unpriced"),
                            format!("'{other}' is not one of: refuse, admit"),
                        ));
                    }
                },
            },
        };
        if api_keys.is_empty() && creds.is_empty() {
            return Err(at.at(
                name,
                key,
                "a tenant needs api_keys (hashes) or credentials to be identified by (keys issued through /admin can be added later, but list one to start)",
            ));
        }
        out.push(Tenant {
            name: n.clone(),
            api_keys,
            credentials: creds,
            models: allowed,
            residency,
            limits,
            guard: crate::guard::guard_ref(at, guards, t.guard.as_ref(), &format!("{key}.guard"))?,
        });
    }
    Ok(out)
}

/// Validates `[state]`.
pub(crate) fn validate_state(at: &At<'_>, raw: &RawConfig) -> Result<StateSettings, ConfigError> {
    let r = &raw.state;
    let mut out = StateSettings::default();
    match r.backend.as_ref().map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "memory")) => {
            if let Some(u) = r.url.as_ref().or(r.url_env.as_ref()) {
                return Err(at.at(u, "state.url", "a url is for backend = \"redis\""));
            }
        }
        Some((_, "redis")) => {
            let (url, key) = match (&r.url, &r.url_env) {
                (Some(u), None) => (u.get_ref().clone(), u),
                (None, Some(var)) => {
                    use meridian_catalog::env::EnvSource as _;
                    match meridian_catalog::env::ProcessEnv.non_empty(var.get_ref()) {
                        Some(u) => (u, var),
                        None => {
                            out.url_env_unset = Some(var.get_ref().clone());
                            ("redis://unset".to_string(), var)
                        }
                    }
                }
                (Some(u), Some(_)) => {
                    return Err(at.at(u, "state.url", "set url or url_env, not both"));
                }
                (None, None) => {
                    return Err(at.err(
                        None,
                        "state.url",
                        "backend = \"redis\" needs url = \"redis://HOST:PORT\" (or url_env = \"VARIABLE\" naming where it is)",
                    ));
                }
            };
            // The URL may carry a password: errors name where it came from, never its text.
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(at.at(
                    key,
                    "state.url",
                    "expected redis://HOST:PORT[/DB] or rediss://…",
                ));
            }
            out.backend = Backend::Redis { url };
        }
        Some((b, other)) => {
            return Err(at.at(
                b,
                "state.backend",
                format!("unknown backend '{other}'; expected memory or redis"),
            ));
        }
    }
    if let Some(o) = &r.on_unavailable {
        out.on_unavailable = match o.get_ref().as_str() {
            "fail_open" => OnUnavailable::FailOpen,
            "fail_closed" => OnUnavailable::FailClosed,
            other => {
                return Err(at.at(
                    o,
                    "state.on_unavailable",
                    format!("unknown '{other}'; expected fail_open or fail_closed"),
                ));
            }
        };
    }
    if let Some(n) = &r.replicas {
        if !(1..=1000).contains(n.get_ref()) {
            return Err(at.at(n, "state.replicas", "expected 1 to 1000 replicas"));
        }
        out.replicas = *n.get_ref();
    }
    if let Some(t) = &r.timeout_ms {
        if !(1..=10_000).contains(t.get_ref()) {
            return Err(at.at(t, "state.timeout_ms", "expected 1 to 10000 milliseconds"));
        }
        out.timeout_ms = *t.get_ref();
    }
    Ok(out)
}

/// Validates `[admin] key_hash`.
pub(crate) fn validate_admin(at: &At<'_>, raw: &RawConfig) -> Result<Option<KeyHash>, ConfigError> {
    raw.admin
        .key_hash
        .as_ref()
        .map(|k| key_hash(at, k, "admin.key_hash"))
        .transpose()
}

/// Validates `[server] tls_cert` and `tls_key`: both or neither, files that exist.
pub(crate) fn validate_tls(
    at: &At<'_>,
    raw: &RawConfig,
    dir: &Path,
) -> Result<Option<Tls>, ConfigError> {
    let s = &raw.server;
    match (&s.tls_cert, &s.tls_key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => {
            let cert = dir.join(c.get_ref());
            let key = dir.join(k.get_ref());
            for (p, sp, name) in [(&cert, c, "server.tls_cert"), (&key, k, "server.tls_key")] {
                if !p.is_file() {
                    return Err(at.at(sp, name, format!("no such file: {}", p.display())));
                }
            }
            Ok(Some(Tls { cert, key }))
        }
        (Some(c), None) => Err(at.at(c, "server.tls_key", "tls_cert needs tls_key too")),
        (None, Some(k)) => Err(at.at(k, "server.tls_cert", "tls_key needs tls_cert too")),
    }
}
