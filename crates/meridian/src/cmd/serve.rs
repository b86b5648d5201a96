//! `meridian serve`: wires config, region, upstream and the gateway together.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use meridian_catalog::env::{EnvSource, ProcessEnv};
use meridian_config::{Config, Loaded, LogSink, UpstreamMode};
use meridian_gateway::invocation::spool::Spool;
use meridian_gateway::invocation::{InvocationLog, S3Export};
use meridian_gateway::tls::Tls;
use meridian_gateway::{AppState, Live, ServeOptions, UpstreamAccount, UpstreamInfo};
use meridian_sim::{Fleet, FleetConfig};
use meridian_upstream::CredentialSource;
use meridian_upstream::aws_chain::{AwsCredentials, Identity, shared};
use meridian_upstream::s3::S3Client;
use meridian_upstream::{Auth, BedrockClient, Endpoints, Timeouts};

use super::{init_logging, shutdown_signal, source_region};

/// How the process runs (flags, not config).
pub struct Options {
    /// Address to listen on.
    pub listen: String,
    /// Seed of the in-process fleet.
    pub sim_seed: u64,
    /// How long `/ready` answers 503 before the listener closes.
    pub drain_delay: std::time::Duration,
    /// Whether a reload may lower the security posture.
    pub allow_weaker_reload: bool,
}

pub async fn run(config: Option<&Path>, options: &Options) -> anyhow::Result<ExitCode> {
    let Options {
        listen,
        sim_seed,
        drain_delay,
        allow_weaker_reload,
    } = options;
    let (listen, sim_seed, drain_delay) = (listen.as_str(), *sim_seed, *drain_delay);
    init_logging();
    let Loaded { config, catalog } = meridian_config::load(config)?;
    // Claimed before the simulated fleet, the tracer or Redis take ports of
    // their own: an ephemeral port handed to one of them could otherwise be
    // the one asked for. Connections wait in the backlog until serving starts.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (region, step) = source_region(None, &config).await;
    if catalog.region(&region).is_none() {
        anyhow::bail!(
            "region '{region}' (from {}) is not a region Meridian knows; run `meridian doctor`",
            step.label()
        );
    }
    if let Some(why) = config.state.missing_url() {
        anyhow::bail!("{why}");
    }
    if let Some(why) = config.strict_violation(&region) {
        anyhow::bail!("{why}");
    }
    for (policy, users) in config.transit_policies(&region) {
        tracing::warn!(
            policy = %policy,
            used_by = %users.join(", "),
            "this gateway runs in {region}, outside residency policy '{policy}': its prompts pass through {region} (set strict_residency = true to refuse this)"
        );
    }
    let (accounts, info, fleet) = upstream(&config, &catalog, &region, sim_seed).await?;
    tracing::info!(region = %region, from = step.label(), upstream = info.mode, "{}", info.detail);
    let log = invocation_log(&config, &region).await?;
    let mut state = AppState::with_accounts(config, catalog, region, step, accounts, info);
    state.runtime_mut().log = Arc::new(log);
    state.runtime_mut().tracer = state.config.tracing.otlp_endpoint.as_deref().map(|e| {
        Arc::new(meridian_gateway::traces::Tracer::start(
            e,
            state.config.tracing.otlp_protocol,
            &state.config.tracing.service_name,
        ))
    });
    let state = Arc::new(state);
    if let Some(shared) = state.limiter.shared() {
        if shared.connect(std::time::Duration::from_secs(2)).await {
            tracing::info!("connected to the Redis state backend");
        } else {
            tracing::warn!(
                "the Redis state backend does not answer yet; [state] on_unavailable applies until it does"
            );
        }
    }
    if let Some(s3) = state.log.s3.clone() {
        tokio::spawn(s3.run());
    }
    // The batch buckets are written with the default credential chain.
    let batch_creds: Arc<dyn CredentialSource> =
        match AwsCredentials::new(&state.region, &Identity::default()).await {
            Some(c) => shared(c),
            None => Arc::new(NoCredentials),
        };
    state.batches.set_credentials(batch_creds);
    let live = Live::new(state.clone());
    tokio::spawn(meridian_gateway::batch::poll(live.clone()));
    if state.upstream_info.fallback {
        // Said again every minute: a replica meant for Bedrock answering
        // from the simulator must not go unnoticed in a log.
        tokio::spawn(async {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                tracing::warn!("{}", meridian_gateway::SIMULATED_BY_FALLBACK);
            }
        });
    }
    if *allow_weaker_reload {
        live.allow_weaker_reloads();
        tracing::warn!("--allow-weaker-reload: a config reload may lower the security posture");
    }
    tokio::spawn(meridian_gateway::probe_endpoints(
        live.clone(),
        std::time::Duration::from_secs(2),
    ));
    if state.limiter.shared().is_some() {
        tokio::spawn(meridian_gateway::breaker_share::share_breakers(
            live.clone(),
        ));
    }
    if let Some(file) = state.config.file.clone() {
        tokio::spawn(meridian_gateway::reload::watch(live.clone(), file));
    }
    // Serves from the compiled catalog at once; the refresh applies what it
    // reads from Bedrock's control plane when (and if) it can.
    if state.config.catalog_refresh_s > 0 {
        tokio::spawn(meridian_gateway::catalog_refresh::run(
            live.clone(),
            std::time::Duration::from_secs(state.config.catalog_refresh_s),
        ));
    }
    let tls = match &state.config.tls {
        Some(t) => {
            let tls = Arc::new(Tls::load(&t.cert, &t.key).map_err(anyhow::Error::msg)?);
            tokio::spawn(tls.clone().watch());
            Some(tls)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, scheme, "meridian is listening");
    let draining = live.clone();
    let stop = async move {
        shutdown_signal().await;
        draining.start_draining();
        if !drain_delay.is_zero() {
            tracing::info!(
                seconds = drain_delay.as_secs(),
                "asked to stop: /ready answers 503 while load balancers take this replica out"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("no longer accepting connections; finishing requests under way");
    };
    let options = ServeOptions {
        connections: meridian_gateway::conn::Limits::from_config(&state.config.server),
        ..ServeOptions::default()
    };
    meridian_gateway::serve_with(listener, live, options, tls, stop).await?;
    // Records still queued for stdout or the file get a moment to be written.
    state.log.drain(std::time::Duration::from_secs(2)).await;
    if let Some(f) = fleet {
        f.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Records the in-process fleet keeps (without prompts).
const IN_PROCESS_RECORDS: usize = 10_000;

/// The upstream accounts for `config`: Amazon Bedrock with the resolved
/// credentials, or — in simulated mode, or with no credentials in `auto` —
/// a simulated fleet of every region an exposed model may be called in.
pub(crate) async fn upstream(
    config: &Config,
    catalog: &meridian_catalog::Catalog,
    region: &str,
    sim_seed: u64,
) -> anyhow::Result<(Vec<UpstreamAccount>, UpstreamInfo, Option<Fleet>)> {
    let region = region.to_string();
    let found = match config.upstream.mode {
        UpstreamMode::Simulated => Err("upstream.mode = simulated".to_string()),
        _ => aws_auth(config, &region).await,
    };
    let simulate = match (config.upstream.mode, &found) {
        (UpstreamMode::Simulated, _) => true,
        (UpstreamMode::Aws, Err(e)) => anyhow::bail!(
            "upstream.mode = aws but AWS credentials did not resolve: {e}; run `meridian doctor`"
        ),
        (_, found) => found.is_err(),
    };
    let mut fleet = None;
    let (accounts, info) = if simulate {
        // Every region any exposed model may be called in, so failover works too.
        let mut regions = BTreeSet::from([region.clone()]);
        for m in &config.models {
            if let Ok(res) = config.resolve(catalog, &m.name, &region, None) {
                regions.extend(res.targets.iter().map(|t| t.endpoint_region.clone()));
            }
        }
        let regions: Vec<String> = regions
            .into_iter()
            .filter(|r| catalog.region(r).is_some_and(|x| x.bedrock))
            .collect();
        let mut fc = FleetConfig::new(regions.clone());
        fc.seed = sim_seed;
        // In-process: a bounded ring of records without prompts, and a
        // control API on loopback that only the log's token opens.
        fc.max_records = IN_PROCESS_RECORDS;
        fc.keep_prompts = false;
        let token = uuid::Uuid::new_v4().simple().to_string();
        fc.control_token = Some(token.clone());
        fc.app_profiles = config.app_profiles.clone();
        fc.provisioned = super::fleet_provisioned(config, catalog);
        // Batch jobs read and write the same S3-compatible server as Meridian.
        fc.s3_endpoint.clone_from(&config.batch.s3_endpoint);
        let f = Fleet::start(catalog.clone(), fc, None, None).await?;
        let m = f.manifest();
        let client = super::fleet_client(m);
        let why = match &found {
            Err(e) if config.upstream.mode == UpstreamMode::Simulated => e.clone(),
            Err(e) => format!("no AWS credentials resolved (AWS SDK said: {e})"),
            Ok(_) => String::new(),
        };
        let detail = format!(
            "{why}; simulated fleet of {} regions, control API {} (its token is in the log)",
            regions.len(),
            m.control_url
        );
        tracing::warn!(
            control_api = %m.control_url,
            token = %token,
            "the simulated fleet's control API (faults, records) answers requests with `Authorization: Bearer <token>`"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n  *** SIMULATED BEDROCK ***  {why}: answers come from Meridian's simulated region fleet\n  ({} regions: {}), not from real models. Provide AWS credentials to use Amazon Bedrock.\n",
            regions.len(),
            regions.join(", ")
        );
        fleet = Some(f);
        // Every configured account calls the same fleet, so multi-account
        // routing can be rehearsed without AWS.
        (
            accounts_with(config, |_| Ok(client.clone()))?,
            UpstreamInfo {
                mode: "simulated",
                fallback: config.upstream.mode == UpstreamMode::Auto,
                detail,
            },
        )
    } else {
        let (auth, source) = found.map_err(anyhow::Error::msg)?;
        let endpoints = Endpoints {
            overrides: config.upstream.endpoints.clone(),
            fips: false,
            mantle: config.upstream.mantle_endpoints.clone(),
        };
        let mut sources = vec![source];
        let mut clients = Vec::new();
        for (i, a) in config.upstream.accounts.iter().enumerate() {
            if i == 0 {
                continue;
            }
            let (auth, source) = account_auth(Some(a), &region)
                .await
                .map_err(|e| anyhow::anyhow!("upstream account '{}': {e}", a.name))?;
            sources.push(format!("{}: {source}", a.name));
            clients.push(BedrockClient::new(
                auth,
                endpoints.clone(),
                Timeouts::default(),
            ));
        }
        let first = BedrockClient::new(auth, endpoints, Timeouts::default());
        let accounts = accounts_with(config, |i| {
            Ok(if i == 0 {
                first.clone()
            } else {
                clients[i - 1].clone()
            })
        })?;
        (
            accounts,
            UpstreamInfo {
                mode: "aws",
                fallback: false,
                detail: format!("Amazon Bedrock, credentials from {}", sources.join("; ")),
            },
        )
    };
    Ok((accounts, info, fleet))
}

/// The invocation-log sinks from `[logging]`; the S3 spool is opened (and
/// what a previous run left in it sealed for upload) before serving starts.
async fn invocation_log(config: &Config, region: &str) -> anyhow::Result<InvocationLog> {
    let l = &config.logging;
    let s3 = match &l.s3 {
        None => None,
        Some(s3) => {
            let spool = Spool::open(&s3.spool_dir, s3.spool_max_bytes, s3.segment_bytes)
                .with_context(|| format!("cannot open the spool {}", s3.spool_dir.display()))?;
            let guess = s3.region.clone().unwrap_or_else(|| region.to_string());
            let identity = Identity {
                profile: s3.profile.clone(),
                ..Identity::default()
            };
            let creds: Arc<dyn CredentialSource> =
                match AwsCredentials::new(&guess, &identity).await {
                    Some(c) => shared(c),
                    None => Arc::new(NoCredentials),
                };
            let client = S3Client::new(creds, s3.endpoint.clone(), &s3.bucket, &guess);
            Some(Arc::new(S3Export::new(
                spool,
                client,
                &s3.prefix,
                std::time::Duration::from_millis(s3.flush_interval_ms),
            )))
        }
    };
    InvocationLog::new(
        l.sink == LogSink::Stdout,
        if l.sink == LogSink::File {
            l.file.as_deref()
        } else {
            None
        },
        l.include_bodies,
        s3,
        config.server.log_queue_records,
    )
    .context("cannot open the invocation-log file")
}

/// Stands in when no AWS credentials resolve for S3: every call says so.
#[derive(Debug)]
struct NoCredentials;

impl CredentialSource for NoCredentials {
    fn credentials(&self) -> meridian_upstream::bedrock::futures_lite::BoxedCredentials<'_> {
        Box::pin(async { Err("no AWS credentials resolved for S3".to_string()) })
    }
}

/// The upstream accounts in config order (one `default` account when none
/// is configured), with the client `client(i)` gives the i-th.
fn accounts_with(
    config: &Config,
    client: impl Fn(usize) -> anyhow::Result<BedrockClient>,
) -> anyhow::Result<Vec<UpstreamAccount>> {
    if config.upstream.accounts.is_empty() {
        return Ok(vec![UpstreamAccount {
            name: "default".into(),
            client: client(0)?,
            regions: BTreeSet::new(),
        }]);
    }
    config
        .upstream
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Ok(UpstreamAccount {
                name: a.name.clone(),
                client: client(i)?,
                regions: a.regions.iter().cloned().collect(),
            })
        })
        .collect()
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
    account_auth(config.upstream.accounts.first(), region).await
}

/// The aws-config chain for one account (or the default chain), probed once.
async fn account_auth(
    account: Option<&meridian_config::Account>,
    region: &str,
) -> Result<(Auth, String), String> {
    let identity = account.map_or_else(Identity::default, |a| Identity {
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
