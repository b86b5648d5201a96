//! One module per command; `run` dispatches.

mod catalog;
mod config_check;
mod detect;
mod doctor;
pub mod drill;
mod iam_policy;
mod keys;
mod plan_migration;
mod probe;
mod regions;
mod resolve;
mod serve;
mod sim;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use meridian_catalog::detect::{DetectOptions, Step, detect};
use meridian_catalog::env::ProcessEnv;
use meridian_config::{Config, RegionSetting};

use crate::cli::{CatalogCommand, Command, ConfigCommand, KeysCommand};

/// Runs one command to completion.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config,
            listen,
            sim_seed,
            drain_delay_s,
            allow_weaker_reload,
        } => {
            let options = serve::Options {
                listen,
                sim_seed,
                drain_delay: std::time::Duration::from_secs(drain_delay_s),
                allow_weaker_reload,
            };
            serve::run(config.config.as_deref(), &options).await
        }
        Command::Sim(args) => sim::run(&args).await,
        Command::Drill(args) => drill::run(&args).await,
        Command::Regions { geo, bedrock, json } => regions::run(geo.as_deref(), bedrock, json.json),
        Command::Resolve {
            model,
            region,
            allow,
            exclude,
            config,
            json,
        } => {
            resolve::run(
                &model,
                region,
                &allow,
                &exclude,
                config.config.as_deref(),
                json.json,
            )
            .await
        }
        Command::Detect { json } => detect::run(json.json).await,
        Command::IamPolicy {
            region,
            account,
            config,
            format,
            ..
        } => iam_policy::run(region, &account, config.config.as_deref(), format).await,
        Command::Doctor { config, json } => doctor::run(config.config.as_deref(), json.json).await,
        Command::Config {
            command: ConfigCommand::Check { file, json },
        } => config_check::run(&file, json.json),
        Command::Keys {
            command: KeysCommand::Create { tenant, json },
        } => keys::create(&tenant, json.json),
        Command::Keys {
            command: KeysCommand::Hash,
        } => keys::hash(),
        Command::Catalog {
            command: CatalogCommand::Diff { config, all, json },
        } => catalog::diff_cmd(config.config.as_deref(), all, json.json).await,
        Command::Catalog {
            command:
                CatalogCommand::Models {
                    config,
                    refresh,
                    json,
                },
        } => catalog::models_cmd(config.config.as_deref(), refresh, json.json).await,
        Command::PlanMigration {
            to,
            from,
            config,
            json,
        } => plan_migration::run(&to, from, config.config.as_deref(), json.json).await,
        Command::Probe {
            listen,
            path,
            timeout_ms,
        } => probe::run(&listen, &path, std::time::Duration::from_millis(timeout_ms)).await,
    }
}

/// Logs to stderr; `MERIDIAN_LOG` sets the filter (default `info`). Colours
/// only when stderr is a terminal, so log collectors get plain text.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Writes text to stdout.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// Writes text to stderr.
pub fn emit_err(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stderr().lock();
    out.write_all(text.as_bytes())
        .context("writing to stderr")?;
    out.flush().context("writing to stderr")
}

/// Writes a value as pretty JSON to stdout.
pub fn emit_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)
}

/// The source region: a flag, else the config's fixed region, else detection.
pub async fn source_region(flag: Option<String>, config: &Config) -> (String, Step) {
    if let Some(r) = flag {
        return (r, Step::Config);
    }
    match &config.region {
        RegionSetting::Fixed(r) => (r.clone(), Step::Config),
        RegionSetting::Auto => {
            let d = detect(&ProcessEnv, &DetectOptions::default()).await;
            (d.region, d.step)
        }
    }
}

/// A Bedrock client signing with the simulated fleet's credential, calling its endpoints.
pub(crate) fn fleet_client(m: &meridian_sim::Manifest) -> meridian_upstream::BedrockClient {
    meridian_upstream::BedrockClient::with_static_keys(
        &m.credentials.access_key_id,
        &m.credentials.secret_access_key,
        m.endpoints(),
        meridian_upstream::Timeouts::default(),
    )
    .with_mantle(m.mantle_endpoints())
}

/// The provisioned throughput a config declares, for a simulated fleet to
/// serve as if it had been bought (full capacity per ARN).
pub(crate) fn fleet_provisioned(
    config: &Config,
    catalog: &meridian_catalog::Catalog,
) -> Vec<meridian_sim::SimProvisioned> {
    let resolver = meridian_catalog::Resolver::new(catalog, &config.app_profiles);
    config
        .models
        .iter()
        .flat_map(|m| {
            let base = resolver
                .model_of(&m.model)
                .map_or_else(|| m.model.clone(), |c| c.id.clone());
            m.provisioned
                .iter()
                .map(move |p| meridian_sim::SimProvisioned {
                    arn: p.arn.clone(),
                    model_id: base.clone(),
                    tokens_per_minute: p.tokens_per_minute(),
                })
        })
        .collect()
}
