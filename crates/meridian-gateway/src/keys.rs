//! API keys: made from the OS's random source, stored and compared only as
//! SHA-256 hashes. A key is shown once, when it is made; afterwards it is
//! known by its id (from its hash) and its first characters.

use meridian_config::{HASH_PREFIX, KeyHash};
use sha2::{Digest, Sha256};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "mk-";

/// A new random key: `mk-` and 64 hex digits (two v4 UUIDs, 244 random bits).
pub fn generate() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!(
        "{KEY_PREFIX}{}{}",
        hex::encode(a.as_bytes()),
        hex::encode(b.as_bytes())
    )
}

/// The hash a key is stored as.
pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// `sha256:…`, as written in the config.
pub fn hash_text(h: &KeyHash) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(h))
}

/// Whether the request's `Authorization: Bearer` key hashes to `want`
/// (compared in constant time).
pub fn bearer_is(headers: &http::HeaderMap, want: &KeyHash) -> bool {
    use subtle::ConstantTimeEq;
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    bool::from(hash(token).ct_eq(want))
}

/// A key's public id: `key_` and the first 12 hex digits of its hash.
pub fn id(h: &KeyHash) -> String {
    format!("key_{}", &hex::encode(h)[..12])
}

/// The first characters of a key, enough to recognise it, not to use it.
pub fn prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_known_by_hash_only() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("mk-") && a.len() == 67);
        let h = hash(&a);
        assert_eq!(meridian_config::parse_key_hash(&hash_text(&h)), Some(h));
        assert!(id(&h).starts_with("key_") && !id(&h).contains(&a[3..15]));
        assert_eq!(prefix(&a).len(), 7);
        // The SHA-256 of "abc" (FIPS 180-2 example).
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
