use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Price in USD per million tokens, with the model's prompt-cache prices
/// as factors of the input price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// Cache reads, as a factor of the input price.
    pub cache_read_factor: f64,
    /// Cache writes (five-minute TTL), as a factor of the input price.
    pub cache_write_factor: f64,
}

impl Price {
    /// No per-token charge (provisioned throughput: paid by the hour).
    pub const FREE: Price = Price {
        input_per_mtok: 0.0,
        output_per_mtok: 0.0,
        cache_read_factor: 0.0,
        cache_write_factor: 0.0,
    };
}

/// Prompt-cache prices relative to the input price when a model's catalog
/// entry does not set `price.cache`: Anthropic's published multipliers
/// (reads 0.1×, five-minute writes 1.25×).
pub const CACHE_READ_FACTOR: f64 = 0.1;
/// See [`CACHE_READ_FACTOR`].
pub const CACHE_WRITE_FACTOR: f64 = 1.25;

/// Bedrock's on-demand service tiers, and what each costs relative to the
/// standard (`default`) price: Flex is discounted, Priority carries a
/// premium (AWS's service-tier pages; the factors are the published
/// 50 % discount and 75 % premium, unconfirmed per model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    /// Cheaper, throttled first, best effort.
    Flex,
    /// Standard: what a request without a tier gets.
    Default,
    /// Faster, at a premium.
    Priority,
    /// Capacity reserved ahead (needs a reservation).
    Reserved,
}

impl ServiceTier {
    /// Every tier, as Bedrock names them.
    pub const ALL: [ServiceTier; 4] = [
        ServiceTier::Flex,
        ServiceTier::Default,
        ServiceTier::Priority,
        ServiceTier::Reserved,
    ];

    /// Bedrock's name (`flex`, `default`, `priority`, `reserved`).
    pub fn name(self) -> &'static str {
        match self {
            ServiceTier::Flex => "flex",
            ServiceTier::Default => "default",
            ServiceTier::Priority => "priority",
            ServiceTier::Reserved => "reserved",
        }
    }

    /// The tier Bedrock calls `name`.
    pub fn parse(name: &str) -> Option<ServiceTier> {
        ServiceTier::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Token price relative to `default`.
    pub fn price_factor(self) -> f64 {
        match self {
            ServiceTier::Flex => 0.5,
            ServiceTier::Priority => 1.75,
            ServiceTier::Default | ServiceTier::Reserved => 1.0,
        }
    }
}

impl Price {
    /// USD for these token counts (cache writes at the five-minute rate).
    pub fn cost(&self, input: u64, output: u64, cache_read: u64, cache_write: u64) -> f64 {
        (input as f64 * self.input_per_mtok
            + output as f64 * self.output_per_mtok
            + cache_read as f64 * self.input_per_mtok * self.cache_read_factor
            + cache_write as f64 * self.input_per_mtok * self.cache_write_factor)
            / 1e6
    }

    /// The price of the same tokens served on `tier`.
    pub fn on_tier(self, tier: ServiceTier) -> Price {
        let f = tier.price_factor();
        Price {
            input_per_mtok: self.input_per_mtok * f,
            output_per_mtok: self.output_per_mtok * f,
            ..self
        }
    }
}

impl From<[f64; 2]> for Price {
    fn from([input_per_mtok, output_per_mtok]: [f64; 2]) -> Self {
        Price {
            input_per_mtok,
            output_per_mtok,
            cache_read_factor: CACHE_READ_FACTOR,
            cache_write_factor: CACHE_WRITE_FACTOR,
        }
    }
}

impl From<Price> for [f64; 2] {
    fn from(p: Price) -> Self {
        [p.input_per_mtok, p.output_per_mtok]
    }
}

/// Prices of one model per kind of target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// In-region base model ID, on-demand throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<Price>,
    /// Geography profiles (`us.`, `eu.`, `apac.`, `jp.`, `au.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Price>,
    /// The `global.` profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Price>,
    /// Per-prefix overrides, e.g. `us-gov`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_prefix: BTreeMap<String, Price>,
    /// Prompt-cache prices as `[read, five-minute write]` factors of the
    /// input price; Anthropic's 0.1× and 1.25× when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<[f64; 2]>,
}

impl PriceTable {
    /// Price of a profile with this prefix (`global` included).
    pub fn for_prefix(&self, prefix: &str) -> Option<Price> {
        let p = match self.by_prefix.get(prefix) {
            Some(p) => Some(*p),
            None if prefix == "global" => self.global,
            None => self.geo,
        };
        self.cached(p)
    }

    /// Price of the base model ID in its region (on-demand throughput).
    pub fn in_region(&self) -> Option<Price> {
        self.cached(self.on_demand)
    }

    /// `p` with this table's cache prices.
    fn cached(&self, p: Option<Price>) -> Option<Price> {
        let [read, write] = self
            .cache
            .unwrap_or([CACHE_READ_FACTOR, CACHE_WRITE_FACTOR]);
        p.map(|p| Price {
            cache_read_factor: read,
            cache_write_factor: write,
            ..p
        })
    }
}

/// Where a model is in its life on Bedrock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    #[default]
    Active,
    Legacy,
}

/// A Bedrock foundation model, known by alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Logical name, e.g. `claude-sonnet-4-5`.
    pub alias: String,
    /// Base model ID, e.g. `anthropic.claude-sonnet-4-5-20250929-v1:0`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Provider, e.g. `anthropic`.
    pub provider: String,
    /// Input modalities.
    pub input: Vec<String>,
    /// Output modalities.
    pub output: Vec<String>,
    /// Whether response streaming is supported.
    pub streaming: bool,
    /// Whether tool use is supported.
    #[serde(default)]
    pub tools: bool,
    /// Context window in tokens.
    pub context_window: u32,
    /// Largest `maxTokens` the model accepts.
    pub max_output_tokens: u32,
    /// Inference-profile families (route IDs) the model is offered on.
    pub routes: Vec<String>,
    /// Regions where the base model ID is accepted with on-demand throughput.
    pub on_demand: Vec<String>,
    /// False when availability or prices are not confirmed by an AWS source.
    #[serde(default = "yes")]
    pub confirmed: bool,
    /// Active or legacy.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// End-of-life date (ISO 8601) when AWS has announced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<String>,
    /// Prices per kind of target.
    pub price: PriceTable,
    /// Service tiers offered besides `default` (`flex`, `priority`,
    /// `reserved`); Bedrock refuses the others with `ValidationException`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_tiers: Vec<ServiceTier>,
    /// Whether the model takes a thinking configuration (extended
    /// thinking, `reasoningContent` in answers).
    #[serde(default)]
    pub reasoning: bool,
    /// Whether the model takes Converse structured output
    /// (`outputConfig.textFormat`, JSON schema).
    #[serde(default)]
    pub structured_output: bool,
    /// Anthropic's legacy Bedrock integration (ARN-versioned model IDs,
    /// Opus 4.6 and earlier): an InvokeModel body's `anthropic_version` must
    /// be `bedrock-2023-05-31`; current SDKs' `2026-10-21` is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arn_versioned: bool,
    /// Where this entry's facts come from (every compiled entry says).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// When those sources were read (ISO 8601 date).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checked: String,
}

impl Model {
    /// The name the provider's own API gives the model, where Meridian knows
    /// the rule: Anthropic's is the Bedrock ID without `anthropic.` and the
    /// version suffix (`anthropic.claude-sonnet-4-5-20250929-v1:0` →
    /// `claude-sonnet-4-5-20250929`).
    pub fn provider_name(&self) -> Option<&str> {
        let rest = self.id.strip_prefix("anthropic.")?;
        let cut = rest.rfind("-v").filter(|&i| {
            rest[i + 2..]
                .split(':')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        Some(cut.map_or(rest, |i| &rest[..i]))
    }

    /// Whether `name` is [`Model::provider_name`]: the name is the start of
    /// the ID after `anthropic.`, which rules out nearly every model before
    /// the version suffix is looked for (catalog lookups run per request).
    pub fn has_provider_name(&self, name: &str) -> bool {
        self.id
            .strip_prefix("anthropic.")
            .is_some_and(|rest| rest.starts_with(name))
            && self.provider_name() == Some(name)
    }

    /// Whether the model offers `tier` (`default` always).
    pub fn offers_tier(&self, tier: ServiceTier) -> bool {
        tier == ServiceTier::Default || self.service_tiers.contains(&tier)
    }
}

fn yes() -> bool {
    true
}
