//! Region detection: which AWS region is Meridian running in, and which step said so.
//!
//! The chain, first answer wins: `MERIDIAN_REGION`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, the AWS config file's profile, EC2 IMDSv2, ECS task
//! metadata, then `us-east-1`. Every step's outcome is kept for `meridian detect`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::env::EnvSource;

/// The region used when nothing else answers.
pub const FALLBACK_REGION: &str = "us-east-1";
const IMDS_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// A step of the detection chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// `MERIDIAN_REGION`.
    MeridianRegion,
    /// `AWS_REGION`.
    AwsRegion,
    /// `AWS_DEFAULT_REGION`.
    AwsDefaultRegion,
    /// The AWS config file.
    ProfileConfig,
    /// EC2 instance metadata (IMDSv2).
    Imds,
    /// ECS task metadata.
    EcsMetadata,
    /// The built-in fallback.
    Fallback,
    /// Fixed in meridian.toml (set by the config layer, not by the chain).
    Config,
}

impl Step {
    /// Short name shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            Step::MeridianRegion => "MERIDIAN_REGION",
            Step::AwsRegion => "AWS_REGION",
            Step::AwsDefaultRegion => "AWS_DEFAULT_REGION",
            Step::ProfileConfig => "aws-config-file",
            Step::Imds => "ec2-imds",
            Step::EcsMetadata => "ecs-task-metadata",
            Step::Fallback => "fallback",
            Step::Config => "meridian.toml",
        }
    }
}

/// What one step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The step.
    pub step: Step,
    /// The region it found, if any.
    pub region: Option<String>,
    /// What happened, in a few words.
    pub detail: String,
}

/// The detected region and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected {
    /// Region code.
    pub region: String,
    /// The step that answered.
    pub step: Step,
    /// Every step tried, in order.
    pub attempts: Vec<Attempt>,
}

/// Knobs for the network steps.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Timeout for each metadata request.
    pub timeout: Duration,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            timeout: Duration::from_millis(1000),
        }
    }
}

/// Runs the chain against `env`.
pub async fn detect(env: &dyn EnvSource, opts: &DetectOptions) -> Detected {
    let mut attempts = Vec::new();
    for (step, key) in [
        (Step::MeridianRegion, "MERIDIAN_REGION"),
        (Step::AwsRegion, "AWS_REGION"),
        (Step::AwsDefaultRegion, "AWS_DEFAULT_REGION"),
    ] {
        let found = env.non_empty(key).map(|v| v.trim().to_string());
        let detail = if found.is_some() {
            format!("{key} is set")
        } else {
            format!("{key} is not set")
        };
        if let Some(region) = record(&mut attempts, step, found, detail) {
            return Detected {
                region,
                step,
                attempts,
            };
        }
    }
    let (found, detail) = from_profile(env);
    if let Some(region) = record(&mut attempts, Step::ProfileConfig, found, detail) {
        return Detected {
            region,
            step: Step::ProfileConfig,
            attempts,
        };
    }
    let (found, detail) = from_imds(env, opts).await;
    if let Some(region) = record(&mut attempts, Step::Imds, found, detail) {
        return Detected {
            region,
            step: Step::Imds,
            attempts,
        };
    }
    let (found, detail) = from_ecs(env, opts).await;
    if let Some(region) = record(&mut attempts, Step::EcsMetadata, found, detail) {
        return Detected {
            region,
            step: Step::EcsMetadata,
            attempts,
        };
    }
    attempts.push(Attempt {
        step: Step::Fallback,
        region: Some(FALLBACK_REGION.into()),
        detail: "nothing else answered".into(),
    });
    Detected {
        region: FALLBACK_REGION.into(),
        step: Step::Fallback,
        attempts,
    }
}

fn record(
    attempts: &mut Vec<Attempt>,
    step: Step,
    region: Option<String>,
    detail: String,
) -> Option<String> {
    attempts.push(Attempt {
        step,
        region: region.clone(),
        detail,
    });
    region
}

/// The `region` of the active profile in the AWS config file.
fn from_profile(env: &dyn EnvSource) -> (Option<String>, String) {
    let path = match env.non_empty("AWS_CONFIG_FILE") {
        Some(p) => PathBuf::from(p),
        None => match env.home() {
            Some(home) => home.join(".aws").join("config"),
            None => return (None, "no AWS_CONFIG_FILE and no HOME".into()),
        },
    };
    let profile = env
        .non_empty("AWS_PROFILE")
        .unwrap_or_else(|| "default".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return (None, format!("{}: {e}", path.display())),
    };
    match profile_region(&text, &profile) {
        Some(r) => (
            Some(r),
            format!("profile '{profile}' in {}", path.display()),
        ),
        None => (
            None,
            format!("profile '{profile}' in {} has no region", path.display()),
        ),
    }
}

/// Reads `region` from `[default]`/`[profile NAME]` of an AWS config file.
pub fn profile_region(text: &str, profile: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = header.trim();
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            in_section = name == profile;
            continue;
        }
        if in_section
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "region"
        {
            let value = value.split(['#', ';']).next().unwrap_or("").trim();
            if !value.is_empty() {
                return Some(value.to_string());
            }
        }
    }
    None
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn send(
    client: &HttpClient,
    req: http::Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<(http::StatusCode, String), String> {
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// IMDSv2: PUT a session token, then GET the placement region with it.
async fn from_imds(env: &dyn EnvSource, opts: &DetectOptions) -> (Option<String>, String) {
    if env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return (None, "AWS_EC2_METADATA_DISABLED=true".into());
    }
    let base = env
        .non_empty("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| IMDS_DEFAULT_ENDPOINT.into());
    let base = base.trim_end_matches('/');
    let client = client(opts.timeout);
    let token_req = http::Request::put(format!("{base}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(Empty::new());
    let token = match token_req.map_err(|e| e.to_string()) {
        Ok(req) => send(&client, req, opts.timeout).await,
        Err(e) => Err(e),
    };
    let token = match token {
        Ok((s, body)) if s.is_success() => body.trim().to_string(),
        Ok((s, _)) => return (None, format!("{base}: token request answered {s}")),
        Err(e) => return (None, format!("{base}: {e}")),
    };
    let region_req = http::Request::get(format!("{base}/latest/meta-data/placement/region"))
        .header("x-aws-ec2-metadata-token", token)
        .body(Empty::new());
    let answer = match region_req.map_err(|e| e.to_string()) {
        Ok(req) => send(&client, req, opts.timeout).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((s, body)) if s.is_success() && !body.trim().is_empty() => (
            Some(body.trim().to_string()),
            format!("{base} placement/region"),
        ),
        Ok((s, _)) => (None, format!("{base}: region request answered {s}")),
        Err(e) => (None, format!("{base}: {e}")),
    }
}

/// ECS task metadata v4 (or v3): the region from the task ARN.
async fn from_ecs(env: &dyn EnvSource, opts: &DetectOptions) -> (Option<String>, String) {
    let Some(base) = env
        .non_empty("ECS_CONTAINER_METADATA_URI_V4")
        .or_else(|| env.non_empty("ECS_CONTAINER_METADATA_URI"))
    else {
        return (
            None,
            "not running on ECS (no ECS_CONTAINER_METADATA_URI_V4)".into(),
        );
    };
    let url = format!("{}/task", base.trim_end_matches('/'));
    let answer = match http::Request::get(&url).body(Empty::new()) {
        Ok(req) => send(&client(opts.timeout), req, opts.timeout).await,
        Err(e) => Err(e.to_string()),
    };
    let body = match answer {
        Ok((s, body)) if s.is_success() => body,
        Ok((s, _)) => return (None, format!("{url} answered {s}")),
        Err(e) => return (None, format!("{url}: {e}")),
    };
    let task: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (None, format!("{url}: not JSON: {e}")),
    };
    let from_arn = task["TaskARN"]
        .as_str()
        .and_then(|arn| arn.split(':').nth(3))
        .filter(|r| !r.is_empty());
    match from_arn {
        Some(r) => (Some(r.to_string()), format!("{url} TaskARN")),
        None => (None, format!("{url}: no TaskARN")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profile_sections() {
        let text = "[default]\nregion = eu-west-3\n\n[profile prod]\n# comment\noutput=json\nregion=ap-northeast-1 ; note\n[profile empty]\n";
        assert_eq!(
            profile_region(text, "default").as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            profile_region(text, "prod").as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(profile_region(text, "empty"), None);
        assert_eq!(profile_region(text, "missing"), None);
    }
}
