//! `[guards.NAME]` (what Meridian's own detectors look for and what it does
//! when they fire), a model's `guardrail` (Bedrock Guardrails per region) and
//! a model's response `cache`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{At, ConfigError};

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Builtin {
    /// E-mail addresses.
    Email,
    /// Phone numbers: E.164 and common national forms.
    Phone,
    /// Payment card numbers (Luhn-checked).
    Card,
    /// IBANs (mod-97-checked).
    Iban,
    /// US social security numbers.
    Ssn,
    /// IPv4 and IPv6 addresses.
    Ip,
    /// AWS access key IDs (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// AWS secret access keys (40 characters of base64).
    AwsSecretKey,
}

impl Builtin {
    /// Every built-in detector, in the order overlapping findings are
    /// preferred.
    pub const ALL: [Builtin; 8] = [
        Builtin::AwsAccessKey,
        Builtin::AwsSecretKey,
        Builtin::Email,
        Builtin::Iban,
        Builtin::Card,
        Builtin::Ssn,
        Builtin::Ip,
        Builtin::Phone,
    ];

    /// Key in `[guards.NAME]`.
    pub fn key(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Card => "card",
            Builtin::Iban => "iban",
            Builtin::Ssn => "ssn",
            Builtin::Ip => "ip",
            Builtin::AwsAccessKey => "aws_access_key",
            Builtin::AwsSecretKey => "aws_secret_key",
        }
    }

    /// Type name in masks, placeholders, errors and records (`EMAIL`).
    pub fn label(self) -> &'static str {
        match self {
            Builtin::Email => "EMAIL",
            Builtin::Phone => "PHONE",
            Builtin::Card => "CARD",
            Builtin::Iban => "IBAN",
            Builtin::Ssn => "SSN",
            Builtin::Ip => "IP",
            Builtin::AwsAccessKey => "AWS_ACCESS_KEY",
            Builtin::AwsSecretKey => "AWS_SECRET_KEY",
        }
    }
}

/// What happens when a detector fires. Ordered by strictness: where two
/// policies disagree about a finding, the stricter action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuardAction {
    /// Count it; change nothing.
    Log,
    /// The model sees a stable placeholder (`<EMAIL_1>`); the client gets
    /// the original value back in the answer.
    Anonymize,
    /// Replaced by its type (`[EMAIL]`), for the model and in the answer.
    Mask,
    /// The request (or the answer) is refused, naming the types found.
    Block,
}

impl GuardAction {
    /// Name in the config, records and metrics.
    pub fn name(self) -> &'static str {
        match self {
            GuardAction::Log => "log",
            GuardAction::Anonymize => "anonymize",
            GuardAction::Mask => "mask",
            GuardAction::Block => "block",
        }
    }
}

/// What one rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detector {
    /// A built-in detector.
    Builtin(Builtin),
    /// A custom regular expression (the `regex` crate's syntax).
    Regex {
        /// Type name (`TICKET`), upper-cased.
        label: String,
        pattern: String,
    },
    /// Words or phrases, matched case-insensitively as whole words.
    Words { label: String, words: Vec<String> },
}

impl Detector {
    /// Type name in masks, placeholders, errors and records.
    pub fn label(&self) -> &str {
        match self {
            Detector::Builtin(b) => b.label(),
            Detector::Regex { label, .. } | Detector::Words { label, .. } => label,
        }
    }
}

/// One detector and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRule {
    pub detector: Detector,
    pub action: GuardAction,
}

/// A named guard policy (`[guards.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub name: String,
    pub rules: Vec<GuardRule>,
}

/// A Bedrock guardrail: a regional resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    /// Guardrail ID (or ARN) in that region.
    pub id: String,
    /// Version (`DRAFT` or a number).
    pub version: String,
}

/// A model's response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long an entry is served.
    pub ttl: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuard {
    pub email: Option<Spanned<String>>,
    pub phone: Option<Spanned<String>>,
    pub card: Option<Spanned<String>>,
    pub iban: Option<Spanned<String>>,
    pub ssn: Option<Spanned<String>>,
    pub ip: Option<Spanned<String>>,
    pub aws_access_key: Option<Spanned<String>>,
    pub aws_secret_key: Option<Spanned<String>>,
    #[serde(default)]
    pub custom: Vec<RawCustom>,
    #[serde(default)]
    pub words: Vec<RawWords>,
}

impl RawGuard {
    fn builtin(&self, b: Builtin) -> Option<&Spanned<String>> {
        match b {
            Builtin::Email => self.email.as_ref(),
            Builtin::Phone => self.phone.as_ref(),
            Builtin::Card => self.card.as_ref(),
            Builtin::Iban => self.iban.as_ref(),
            Builtin::Ssn => self.ssn.as_ref(),
            Builtin::Ip => self.ip.as_ref(),
            Builtin::AwsAccessKey => self.aws_access_key.as_ref(),
            Builtin::AwsSecretKey => self.aws_secret_key.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustom {
    pub name: Spanned<String>,
    pub regex: Spanned<String>,
    pub action: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWords {
    pub name: Spanned<String>,
    pub words: Spanned<Vec<String>>,
    pub action: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub ttl: Spanned<String>,
}

fn action(at: &At<'_>, s: &Spanned<String>, key: &str) -> Result<GuardAction, ConfigError> {
    match s.get_ref().as_str() {
        "log" => Ok(GuardAction::Log),
        "anonymize" => Ok(GuardAction::Anonymize),
        "mask" => Ok(GuardAction::Mask),
        "block" => Ok(GuardAction::Block),
        other => Err(at.at(
            s,
            key,
            format!("'{other}' is not an action; expected block, mask, anonymize or log"),
        )),
    }
}

fn label(at: &At<'_>, s: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let n = s.get_ref();
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(at.at(s, key, "a detector name uses letters, digits, '-' and '_'"));
    }
    Ok(n.to_ascii_uppercase().replace('-', "_"))
}

/// Validates `[guards.*]`.
pub(crate) fn validate_guards(
    at: &At<'_>,
    raw: &BTreeMap<Spanned<String>, RawGuard>,
) -> Result<BTreeMap<String, Guard>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, g) in raw {
        let key = format!("guards.{}", name.get_ref());
        let mut rules = Vec::new();
        for b in Builtin::ALL {
            if let Some(a) = g.builtin(b) {
                rules.push(GuardRule {
                    detector: Detector::Builtin(b),
                    action: action(at, a, &format!("{key}.{}", b.key()))?,
                });
            }
        }
        for (i, c) in g.custom.iter().enumerate() {
            let k = format!("{key}.custom[{i}]");
            let label = label(at, &c.name, &format!("{k}.name"))?;
            if let Err(e) = regex::Regex::new(c.regex.get_ref()) {
                return Err(at.at(&c.regex, format!("{k}.regex"), e.to_string()));
            }
            rules.push(GuardRule {
                detector: Detector::Regex {
                    label,
                    pattern: c.regex.get_ref().clone(),
                },
                action: action(at, &c.action, &format!("{k}.action"))?,
            });
        }
        for (i, w) in g.words.iter().enumerate() {
            let k = format!("{key}.words[{i}]");
            let label = label(at, &w.name, &format!("{k}.name"))?;
            let words: Vec<String> = w
                .words
                .get_ref()
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if words.is_empty() {
                return Err(at.at(&w.words, format!("{k}.words"), "expected at least one word"));
            }
            rules.push(GuardRule {
                detector: Detector::Words { label, words },
                action: action(at, &w.action, &format!("{k}.action"))?,
            });
        }
        if rules.is_empty() {
            return Err(at.at(
                name,
                key,
                "a guard names at least one detector (email, phone, card, iban, ssn, ip, \
                 aws_access_key, aws_secret_key, custom, words)",
            ));
        }
        out.insert(
            name.get_ref().clone(),
            Guard {
                name: name.get_ref().clone(),
                rules,
            },
        );
    }
    Ok(out)
}

/// A `guard = "NAME"` reference.
pub(crate) fn guard_ref(
    at: &At<'_>,
    guards: &BTreeMap<String, Guard>,
    r: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(r) = r else { return Ok(None) };
    if guards.contains_key(r.get_ref()) {
        return Ok(Some(r.get_ref().clone()));
    }
    let known: Vec<&str> = guards.keys().map(String::as_str).collect();
    Err(at.at(
        r,
        key,
        format!(
            "'{}' is not a [guards] entry; defined: {}",
            r.get_ref(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    ))
}

/// A model's `guardrail = { REGION = "ID:VERSION" }`.
pub(crate) fn guardrails(
    at: &At<'_>,
    catalog: &meridian_catalog::Catalog,
    raw: &BTreeMap<Spanned<String>, Spanned<String>>,
    key: &str,
) -> Result<BTreeMap<String, Guardrail>, ConfigError> {
    let mut out = BTreeMap::new();
    for (region, v) in raw {
        if catalog.region(region.get_ref()).is_none() {
            return Err(at.at(
                region,
                key,
                format!("'{}' is not a known region", region.get_ref()),
            ));
        }
        let (id, version) = match v.get_ref().rsplit_once(':') {
            Some((id, ver))
                if !id.is_empty()
                    && (ver == "DRAFT"
                        || (!ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit()))) =>
            {
                (id.to_string(), ver.to_string())
            }
            _ => {
                return Err(at.at(
                    v,
                    format!("{key}.{}", region.get_ref()),
                    "expected \"GUARDRAIL_ID:VERSION\" (VERSION a number or DRAFT)",
                ));
            }
        };
        out.insert(region.get_ref().clone(), Guardrail { id, version });
    }
    Ok(out)
}

/// A model's `cache = { ttl = "10m" }`.
pub(crate) fn cache(
    at: &At<'_>,
    raw: Option<&RawCache>,
    key: &str,
) -> Result<Option<CacheSettings>, ConfigError> {
    let Some(c) = raw else { return Ok(None) };
    match parse_duration(c.ttl.get_ref()) {
        Some(ttl) if !ttl.is_zero() => Ok(Some(CacheSettings { ttl })),
        _ => Err(at.at(
            &c.ttl,
            format!("{key}.ttl"),
            "expected a duration such as \"30s\", \"10m\", \"2h\" or \"1d\"",
        )),
    }
}

/// `"30s"`, `"10m"`, `"2h"`, `"1d"`, `"500ms"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("3w"), None);
    }
}
