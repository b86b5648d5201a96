use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

/// Prompt-cache prices relative to the input price: Anthropic's published
/// multipliers (reads 0.1×, five-minute writes 1.25×, one-hour writes 2×),
/// used for every model until the catalog carries its own cache prices.
pub const CACHE_READ_FACTOR: f64 = 0.1;
/// See [`CACHE_READ_FACTOR`].
pub const CACHE_WRITE_FACTOR: f64 = 1.25;

impl Price {
    /// USD for these token counts (cache writes at the five-minute rate).
    pub fn cost(&self, input: u64, output: u64, cache_read: u64, cache_write: u64) -> f64 {
        (input as f64 * self.input_per_mtok
            + output as f64 * self.output_per_mtok
            + cache_read as f64 * self.input_per_mtok * CACHE_READ_FACTOR
            + cache_write as f64 * self.input_per_mtok * CACHE_WRITE_FACTOR)
            / 1e6
    }
}

impl From<[f64; 2]> for Price {
    fn from([input_per_mtok, output_per_mtok]: [f64; 2]) -> Self {
        Price {
            input_per_mtok,
            output_per_mtok,
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
}

impl PriceTable {
    /// Price of a profile with this prefix (`global` included).
    pub fn for_prefix(&self, prefix: &str) -> Option<Price> {
        if let Some(p) = self.by_prefix.get(prefix) {
            return Some(*p);
        }
        if prefix == "global" {
            self.global
        } else {
            self.geo
        }
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
}

fn yes() -> bool {
    true
}
