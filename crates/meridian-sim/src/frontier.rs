//! Models only Mantle serves (its frontier models, on its OpenAI-compatible
//! endpoints), and where.

/// Models only Mantle serves, and the regions whose Mantle does (the
/// fleet's stand-in for Mantle's frontier models; regions unconfirmed).
pub const MANTLE_ONLY: [(&str, &[&str]); 1] = [(
    "openai.gpt-5.5",
    &[
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "eu-north-1",
        "ap-northeast-1",
    ],
)];

/// Whether `base` is a Mantle-only model served in `region`.
pub fn mantle_only_in(base: &str, region: &str) -> bool {
    MANTLE_ONLY
        .iter()
        .any(|(id, regions)| *id == base && regions.contains(&region))
}
