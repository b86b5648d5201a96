//! `meridian keys`: new API keys, shown once; the config keeps their hashes.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use meridian_gateway::keys;
use serde_json::json;

use super::{emit, emit_json};

/// `meridian keys create --tenant NAME`.
pub fn create(tenant: &str, json: bool) -> anyhow::Result<ExitCode> {
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        anyhow::bail!("tenant names use letters, digits, '-' and '_'");
    }
    let key = keys::generate();
    let h = keys::hash(&key);
    let hash = keys::hash_text(&h);
    let line = if tenant == "admin" {
        format!("[admin]\nkey_hash = \"{hash}\"")
    } else {
        format!("[tenants.{tenant}]\napi_keys = [\"{hash}\"]")
    };
    if json {
        emit_json(
            &json!({"tenant": tenant, "key": key, "id": keys::id(&h), "hash": hash, "config": line}),
        )?;
    } else {
        emit(&format!(
            "key (shown once; give it to the tenant, it is not stored anywhere):\n  {key}\n\nid: {}\n\nadd to meridian.toml (append to api_keys if the tenant has some):\n{line}\n",
            keys::id(&h)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `meridian keys hash < key`.
pub fn hash() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .context("reading the key from standard input")?;
    let key = key.trim();
    if key.is_empty() {
        anyhow::bail!("no key on standard input");
    }
    emit(&format!("{}\n", keys::hash_text(&keys::hash(key))))?;
    Ok(ExitCode::SUCCESS)
}
