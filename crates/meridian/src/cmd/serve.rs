//! `meridian serve`: wires config, region, upstream and the gateway together.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use meridian_catalog::env::{EnvSource, ProcessEnv};
use meridian_config::{Config, Loaded, UpstreamMode};
use meridian_gateway::{AppState, ServeOptions, UpstreamInfo};
use meridian_sim::{Fleet, FleetConfig};
use meridian_upstream::aws_chain::{AwsCredentials, Identity, shared};
use meridian_upstream::{Auth, BedrockClient, Endpoints, Timeouts};

use super::{init_logging, shutdown_signal, source_region};

pub async fn run(config: Option<&Path>, listen: &str, sim_seed: u64) -> anyhow::Result<ExitCode> {
    init_logging();
    let Loaded { config, catalog } = meridian_config::load(config)?;
    let (region, step) = source_region(None, &config).await;
    if catalog.region(&region).is_none() {
        anyhow::bail!(
            "region '{region}' (from {}) is not a region Meridian knows; run `meridian doctor`",
            step.label()
        );
    }
    let found = match config.upstream.mode {
        UpstreamMode::Simulated => Err("upstream.mode = simulated".to_string()),
        _ => aws_auth(&config, &region).await,
    };
    let simulate = match (config.upstream.mode, &found) {
        (UpstreamMode::Simulated, _) => true,
        (UpstreamMode::Aws, Err(e)) => anyhow::bail!(
            "upstream.mode = aws but AWS credentials did not resolve: {e}; run `meridian doctor`"
        ),
        (_, found) => found.is_err(),
    };
    let mut fleet = None;
    let (upstream, info) = if simulate {
        // Every region any exposed model may be called in, so failover works too.
        let mut regions = BTreeSet::from([region.clone()]);
        for m in &config.models {
            if let Ok(res) = config.resolve(&catalog, &m.name, &region, None) {
                regions.extend(res.targets.iter().map(|t| t.endpoint_region.clone()));
            }
        }
        let regions: Vec<String> = regions
            .into_iter()
            .filter(|r| catalog.region(r).is_some_and(|x| x.bedrock))
            .collect();
        let mut fc = FleetConfig::new(regions.clone());
        fc.seed = sim_seed;
        fc.app_profiles = config.app_profiles.clone();
        let f = Fleet::start(catalog.clone(), fc, None, None).await?;
        let m = f.manifest();
        let client = BedrockClient::with_static_keys(
            &m.credentials.access_key_id,
            &m.credentials.secret_access_key,
            m.endpoints(),
            Timeouts::default(),
        );
        let why = match &found {
            Err(e) if config.upstream.mode == UpstreamMode::Simulated => e.clone(),
            Err(e) => format!("no AWS credentials resolved (AWS SDK said: {e})"),
            Ok(_) => String::new(),
        };
        let detail = format!(
            "{why}; simulated fleet of {} regions, control API {}",
            regions.len(),
            m.control_url
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n  *** SIMULATED BEDROCK ***  {why}: answers come from Meridian's simulated region fleet\n  ({} regions: {}), not from real models. Provide AWS credentials to use Amazon Bedrock.\n",
            regions.len(),
            regions.join(", ")
        );
        fleet = Some(f);
        (
            client,
            UpstreamInfo {
                mode: "simulated",
                detail,
            },
        )
    } else {
        let (auth, source) = found.map_err(anyhow::Error::msg)?;
        let endpoints = Endpoints {
            overrides: config.upstream.endpoints.clone(),
            fips: false,
        };
        let client = BedrockClient::new(auth, endpoints, Timeouts::default());
        (
            client,
            UpstreamInfo {
                mode: "aws",
                detail: format!("Amazon Bedrock, credentials from {source}"),
            },
        )
    };
    if config.upstream.accounts.len() > 1 {
        tracing::warn!(
            "several upstream accounts are configured; until the router lands, only the first is used"
        );
    }
    tracing::info!(region = %region, from = step.label(), upstream = info.mode, "{}", info.detail);
    let state = Arc::new(AppState::new(config, catalog, region, step, upstream, info));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "meridian is listening");
    meridian_gateway::serve(listener, state, ServeOptions::default(), shutdown_signal()).await?;
    if let Some(f) = fleet {
        f.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// How to authenticate to AWS: a Bedrock API key, else the aws-config chain
/// for the first configured account (or the default chain), probed once.
pub(super) async fn aws_auth(config: &Config, region: &str) -> Result<(Auth, String), String> {
    if let Some(token) = ProcessEnv.non_empty("AWS_BEARER_TOKEN_BEDROCK") {
        return Ok((
            Auth::Bearer(token),
            "Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)".into(),
        ));
    }
    let identity = config
        .upstream
        .accounts
        .first()
        .map_or_else(Identity::default, |a| Identity {
            profile: a.profile.clone(),
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
        });
    let creds = AwsCredentials::new(region, &identity)
        .await
        .ok_or("no credential provider is configured")?;
    creds.probe(std::time::Duration::from_secs(5)).await?;
    let source = creds.description.clone();
    Ok((Auth::SigV4(shared(creds)), source))
}
