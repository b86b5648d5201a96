//! Bedrock model references: aliases, IDs and ARNs.

/// What a caller named as the model, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef<'a> {
    /// A system inference profile ID: `eu.anthropic.claude-...`.
    SystemProfile { prefix: &'a str, base: &'a str },
    /// An ARN: `arn:<partition>:<service>:<region>:<account>:<resource>`.
    Arn(Arn<'a>),
    /// Anything else: an alias or a base model ID.
    Name(&'a str),
}

/// The parts of an ARN Meridian looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    /// The whole ARN as given.
    pub raw: &'a str,
    /// `aws`, `aws-us-gov`, ...
    pub partition: &'a str,
    /// `bedrock` or `sagemaker`.
    pub service: &'a str,
    /// Region code, possibly empty.
    pub region: &'a str,
    /// Account ID, possibly empty.
    pub account: &'a str,
    /// Resource type: `foundation-model`, `inference-profile`, ...
    pub resource_type: &'a str,
    /// Resource ID after the first `/`.
    pub resource_id: &'a str,
}

/// The system inference-profile prefixes Bedrock uses (longest first, so
/// `us-gov.` is not read as `us.`).
pub const PROFILE_PREFIXES: [&str; 7] = ["us-gov", "global", "apac", "us", "eu", "jp", "au"];

impl<'a> ModelRef<'a> {
    /// Classifies a model reference without consulting the catalog.
    pub fn parse(s: &'a str) -> ModelRef<'a> {
        if let Some(arn) = Arn::parse(s) {
            return ModelRef::Arn(arn);
        }
        for prefix in PROFILE_PREFIXES {
            if let Some(base) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
                // A base model ID always has a provider part: "anthropic.claude…".
                if base.contains('.') {
                    return ModelRef::SystemProfile { prefix, base };
                }
            }
        }
        ModelRef::Name(s)
    }
}

impl<'a> Arn<'a> {
    /// Parses an ARN; `None` when `s` is not one.
    pub fn parse(s: &'a str) -> Option<Arn<'a>> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?;
        let service = parts.next()?;
        let region = parts.next()?;
        let account = parts.next()?;
        let resource = parts.next()?;
        let (resource_type, resource_id) = resource.split_once('/')?;
        if partition.is_empty() || service.is_empty() || resource_id.is_empty() {
            return None;
        }
        Some(Arn {
            raw: s,
            partition,
            service,
            region,
            account,
            resource_type,
            resource_id,
        })
    }
}

/// The partition a region belongs to, from its code.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("cn-") {
        "aws-cn"
    } else {
        "aws"
    }
}

/// `arn:<partition>:bedrock:<region>::foundation-model/<id>`.
pub fn foundation_model_arn(region: &str, model_id: &str) -> String {
    format!(
        "arn:{}:bedrock:{region}::foundation-model/{model_id}",
        partition_of(region)
    )
}

/// `arn:<partition>:bedrock:<region>:<account>:inference-profile/<id>`.
pub fn inference_profile_arn(region: &str, account: &str, profile_id: &str) -> String {
    format!(
        "arn:{}:bedrock:{region}:{account}:inference-profile/{profile_id}",
        partition_of(region)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_references() {
        assert_eq!(
            ModelRef::parse("us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ModelRef::SystemProfile {
                prefix: "us-gov",
                base: "anthropic.claude-sonnet-4-5-20250929-v1:0"
            }
        );
        assert_eq!(
            ModelRef::parse("eu.amazon.nova-pro-v1:0"),
            ModelRef::SystemProfile {
                prefix: "eu",
                base: "amazon.nova-pro-v1:0"
            }
        );
        assert_eq!(
            ModelRef::parse("claude-sonnet-4-5"),
            ModelRef::Name("claude-sonnet-4-5")
        );
        assert_eq!(
            ModelRef::parse("amazon.nova-pro-v1:0"),
            ModelRef::Name("amazon.nova-pro-v1:0")
        );
        let ModelRef::Arn(arn) = ModelRef::parse(
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
        ) else {
            panic!("not an ARN")
        };
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.resource_type, "application-inference-profile");
        assert_eq!(arn.resource_id, "abc123");
        assert_eq!(Arn::parse("arn:aws:bedrock:us-east-1:1:nothing"), None);
    }

    #[test]
    fn arns_use_the_region_partition() {
        assert_eq!(
            foundation_model_arn("us-gov-west-1", "m"),
            "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/m"
        );
        assert_eq!(
            inference_profile_arn("eu-west-3", "*", "eu.m"),
            "arn:aws:bedrock:eu-west-3:*:inference-profile/eu.m"
        );
    }
}
