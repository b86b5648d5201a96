//! Candidate identities: who calls what, where, through which surface, on
//! which service tier. A key is interned once into a dense [`KeyId`], which
//! indexes per-candidate state (breakers, quota, latency); labels and the
//! text shared with other replicas are rendered from it, never parsed back.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use meridian_catalog::{ServiceTier, Target, TargetKind};
use parking_lot::RwLock;
use serde::Serialize;

use crate::hash::fnv_bytes;

/// The kind of endpoint a candidate is called through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Surface {
    /// Bedrock Runtime's Converse and InvokeModel operations.
    Runtime,
    /// Bedrock Runtime's native Anthropic Messages endpoint
    /// (`/anthropic/v1/messages`: model or profile ID in the body, SSE).
    RuntimeMessages,
    /// Mantle's Anthropic Messages endpoint (`bedrock-mantle.{region}`:
    /// base model IDs, processed in the region called, its own quotas).
    MantleMessages,
    /// bedrock-runtime's OpenAI-compatible endpoints (`/openai/v1/…`:
    /// model or profile IDs, synchronous), for the models that have them
    /// there (OpenAI's open-weight models).
    RuntimeOpenAi,
    /// Mantle's OpenAI-compatible endpoints (`/v1/chat/completions`,
    /// `/v1/responses`: base model IDs, in-region), for the models Mantle
    /// serves through them (OpenAI's and other non-Claude models).
    MantleOpenAi,
    /// An OpenAI-compatible server from `[[providers]]`.
    Provider,
}

impl Surface {
    /// The surface `target` is called through.
    pub fn of(target: &Target) -> Surface {
        match target.kind {
            TargetKind::Provider => Surface::Provider,
            TargetKind::Mantle => Surface::MantleMessages,
            _ => Surface::Runtime,
        }
    }

    /// Whether it speaks Anthropic Messages natively (SSE answers).
    pub fn is_messages(self) -> bool {
        matches!(self, Surface::RuntimeMessages | Surface::MantleMessages)
    }

    /// Whether it speaks OpenAI's APIs natively (answers passed through to
    /// the OpenAI front doors).
    pub fn is_openai(self) -> bool {
        matches!(self, Surface::RuntimeOpenAi | Surface::MantleOpenAi)
    }

    /// Whether it is one of Mantle's endpoints (processed in the region called).
    pub fn is_mantle(self) -> bool {
        matches!(self, Surface::MantleMessages | Surface::MantleOpenAi)
    }

    /// Its name in labels and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Surface::Runtime => "runtime",
            Surface::RuntimeMessages => "runtime-messages",
            Surface::MantleMessages => "mantle-messages",
            Surface::RuntimeOpenAi => "runtime-openai",
            Surface::MantleOpenAi => "mantle-openai",
            Surface::Provider => "provider",
        }
    }
}

/// What identifies a candidate's per-target state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CandidateKey {
    /// Upstream account (or provider) name.
    pub account: Arc<str>,
    /// Region whose endpoint is called.
    pub region: Arc<str>,
    /// The endpoint surface.
    pub surface: Surface,
    /// Model ID (or ARN) sent upstream.
    pub model: Arc<str>,
    /// Service tier Meridian asks for (a tier is throttled on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<ServiceTier>,
}

impl fmt::Display for CandidateKey {
    /// `account|region|surface|model[|tier]`: the text shown in `/status` and
    /// shared with other replicas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|{}|{}",
            self.account,
            self.region,
            self.surface.name(),
            self.model
        )?;
        if let Some(t) = self.tier {
            write!(f, "|{}", t.name())?;
        }
        Ok(())
    }
}

/// A candidate key's dense index: small, `Copy`, and the same for the same
/// key for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(u32);

/// One interned key with what is derived from it once.
struct Entry {
    key: Arc<CandidateKey>,
    text: Arc<str>,
    hash: u64,
}

#[derive(Default)]
struct Interner {
    entries: Vec<Entry>,
    /// Field hash → ids with that hash (collisions compare fields).
    by_fields: HashMap<u64, Vec<KeyId>>,
    by_text: HashMap<Arc<str>, KeyId>,
}

/// The process's keys. Entries are never removed: there are as many as
/// distinct candidates the configs and catalogs of this process produced.
static KEYS: LazyLock<RwLock<Interner>> = LazyLock::new(RwLock::default);

fn field_hash(
    account: &str,
    region: &str,
    surface: Surface,
    model: &str,
    tier: Option<ServiceTier>,
) -> u64 {
    let mut h = fnv_bytes(account.as_bytes());
    for part in [
        region.as_bytes(),
        model.as_bytes(),
        surface.name().as_bytes(),
    ] {
        h = (h ^ 0x7c).wrapping_mul(0x0100_0000_01b3);
        h ^= fnv_bytes(part);
    }
    h ^ tier.map_or(0, |t| fnv_bytes(t.name().as_bytes()).rotate_left(7))
}

impl KeyId {
    /// The id of this key, interning it on first sight. A known key is
    /// found without allocating.
    pub fn intern(
        account: &str,
        region: &str,
        surface: Surface,
        model: &str,
        tier: Option<ServiceTier>,
    ) -> KeyId {
        let h = field_hash(account, region, surface, model, tier);
        let same = |k: &CandidateKey| {
            &*k.account == account
                && &*k.region == region
                && k.surface == surface
                && &*k.model == model
                && k.tier == tier
        };
        {
            let keys = KEYS.read();
            if let Some(ids) = keys.by_fields.get(&h)
                && let Some(id) = ids.iter().find(|id| same(&keys.entries[id.index()].key))
            {
                return *id;
            }
        }
        let mut keys = KEYS.write();
        if let Some(ids) = keys.by_fields.get(&h)
            && let Some(id) = ids.iter().find(|id| same(&keys.entries[id.index()].key))
        {
            return *id;
        }
        let key = CandidateKey {
            account: account.into(),
            region: region.into(),
            surface,
            model: model.into(),
            tier,
        };
        let text: Arc<str> = key.to_string().into();
        let id = KeyId(u32::try_from(keys.entries.len()).unwrap_or(u32::MAX));
        keys.entries.push(Entry {
            key: Arc::new(key),
            hash: fnv_bytes(text.as_bytes()),
            text: text.clone(),
        });
        keys.by_fields.entry(h).or_default().push(id);
        keys.by_text.entry(text).or_insert(id);
        id
    }

    /// The id of a key rendered as [`CandidateKey`]'s `Display` text, if this
    /// process knows it (another replica's breaker for a candidate this one
    /// has none of is of no use here).
    pub fn find(text: &str) -> Option<KeyId> {
        KEYS.read().by_text.get(text).copied()
    }

    /// The index into per-candidate tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The key itself.
    pub fn key(self) -> Arc<CandidateKey> {
        KEYS.read().entries[self.index()].key.clone()
    }

    /// The key as text.
    pub fn text(self) -> Arc<str> {
        KEYS.read().entries[self.index()].text.clone()
    }

    /// A stable hash of the key, for consistent choices (prompt affinity).
    pub fn hash(self) -> u64 {
        KEYS.read().entries[self.index()].hash
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A table of per-candidate state indexed by [`KeyId`], grown on demand.
#[derive(Debug)]
pub struct PerKey<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for PerKey<T> {
    fn default() -> Self {
        PerKey { slots: Vec::new() }
    }
}

impl<T> PerKey<T> {
    /// `id`'s entry, created by `new` when absent.
    pub fn get_or_insert_with(&mut self, id: KeyId, new: impl FnOnce() -> T) -> &mut T {
        let i = id.index();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].get_or_insert_with(new)
    }

    /// `id`'s entry, if any.
    pub fn get_mut(&mut self, id: KeyId) -> Option<&mut T> {
        self.slots.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// Every present entry with its id.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (KeyId, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| Some((KeyId(i as u32), s.as_mut()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_is_one_id_and_every_field_tells_keys_apart() {
        let a = KeyId::intern("acct", "us-east-1", Surface::Runtime, "m", None);
        assert_eq!(
            a,
            KeyId::intern("acct", "us-east-1", Surface::Runtime, "m", None)
        );
        let others = [
            KeyId::intern("other", "us-east-1", Surface::Runtime, "m", None),
            KeyId::intern("acct", "us-west-2", Surface::Runtime, "m", None),
            KeyId::intern("acct", "us-east-1", Surface::Provider, "m", None),
            KeyId::intern("acct", "us-east-1", Surface::Runtime, "n", None),
            KeyId::intern(
                "acct",
                "us-east-1",
                Surface::Runtime,
                "m",
                Some(ServiceTier::Flex),
            ),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(a, *o, "differs in field {i}");
        }
        let flex = others[4];
        assert_eq!(flex.key().tier, Some(ServiceTier::Flex));
        assert_eq!(&*flex.text(), "acct|us-east-1|runtime|m|flex");
        assert_eq!(KeyId::find("acct|us-east-1|runtime|m|flex"), Some(flex));
        assert_eq!(KeyId::find("acct|us-east-1|runtime|m|nope"), None);
    }

    #[test]
    fn fields_that_share_text_across_a_separator_are_different_keys() {
        let a = KeyId::intern("a|b", "c", Surface::Runtime, "m", None);
        let b = KeyId::intern("a", "b|c", Surface::Runtime, "m", None);
        assert_ne!(a, b);
        assert_eq!(a.key().account.as_ref(), "a|b");
    }

    #[test]
    fn per_key_tables_grow_to_the_id_and_list_only_present_entries() {
        let id = KeyId::intern("t", "eu-west-1", Surface::Runtime, "per-key", None);
        let mut t: PerKey<u32> = PerKey::default();
        assert!(t.get_mut(id).is_none());
        *t.get_or_insert_with(id, || 1) += 1;
        assert_eq!(t.get_mut(id).copied(), Some(2));
        assert_eq!(
            t.iter_mut().map(|(k, v)| (k, *v)).collect::<Vec<_>>(),
            [(id, 2)]
        );
    }
}
