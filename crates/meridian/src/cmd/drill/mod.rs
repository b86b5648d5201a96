//! `meridian drill SCENARIO`: starts the simulated fleet and the gateway in
//! this process, drives open-loop load at the gateway over loopback HTTP,
//! applies the scenario's faults on schedule, and reports what clients saw
//! and where the fleet says each request was processed.

mod load;
mod report;
mod scenario;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_catalog::detect::Step;
use meridian_gateway::{AppState, ServeOptions, UpstreamInfo};
use meridian_sim::{Fleet, FleetConfig};
use tokio::time::Instant;

pub use crate::cli::DrillArgs;

/// Runs a drill; exits 1 when a check fails.
pub async fn run(args: &DrillArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate <= 5000.0) {
        anyhow::bail!("--rate must be between 0 and 5000 requests per second");
    }
    if !(args.duration >= 6.0 && args.duration <= 3600.0) {
        anyhow::bail!("--duration must be between 6 and 3600 seconds");
    }
    let sc = scenario::Scenario::build(
        args.scenario,
        Some(args.duration),
        args.rate,
        args.max_tokens,
    );
    let meridian_config::Loaded { config, catalog } =
        meridian_config::parse(&sc.config, None).context("the drill's built-in config")?;
    let region = match &config.region {
        meridian_config::RegionSetting::Fixed(r) => r.clone(),
        meridian_config::RegionSetting::Auto => "us-east-1".into(),
    };
    let exposed = config
        .model(sc.model)
        .context("the drill's model is not in its config")?;
    let policy = exposed.policy.clone();
    let provisioned = exposed.provisioned.clone();
    let resolution = config
        .resolve(&catalog, sc.model, &region, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut regions: BTreeSet<String> = resolution
        .targets
        .iter()
        .map(|t| t.endpoint_region.clone())
        .collect();
    regions.extend(sc.steps.iter().map(|s| s.region.clone()));
    regions.retain(|r| catalog.region(r).is_some_and(|x| x.bedrock));
    let mut fc = FleetConfig::new(regions.iter().cloned());
    fc.seed = args.seed;
    fc.capacity = sc.capacity;
    fc.provisioned = crate::cmd::fleet_provisioned(&config, &catalog);
    let prices = catalog.clone();
    let fleet = Fleet::start(catalog.clone(), fc, None, None).await?;
    let m = fleet.manifest();
    let client = crate::cmd::fleet_client(m);
    let info = UpstreamInfo {
        mode: "simulated",
        fallback: false,
        detail: format!("drill '{}'", sc.name.as_str()),
    };
    let state = Arc::new(AppState::new(
        config,
        catalog,
        region,
        Step::Config,
        client,
        info,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(meridian_gateway::serve(
        listener,
        state.clone(),
        ServeOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    if !args.json {
        let _ = writeln!(
            std::io::stderr(),
            "drill {}: {} req/s for {} s against {} regions of the simulated fleet",
            sc.name.as_str(),
            args.rate,
            sc.duration_s,
            regions.len()
        );
    }
    let traffic = load::Traffic {
        base: format!("http://{addr}"),
        model: sc.model.to_string(),
        residency: sc.residency_header.map(str::to_string),
        rate: args.rate,
        shape: sc.shape.clone(),
        duration_s: sc.duration_s,
        max_tokens: args.max_tokens,
    };
    let start = Instant::now() + Duration::from_millis(200);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let schedule = async {
        for step in &sc.steps {
            tokio::time::sleep_until(start + Duration::from_secs_f64(step.at_s)).await;
            fleet.set_faults(&step.region, step.faults.clone());
        }
    };
    let sampler = report::sample_breakers(&state, start, done_rx);
    let load = async {
        let samples = load::drive(&traffic, start).await;
        let _ = done_tx.send(true);
        samples
    };
    let (samples, (), transitions) = tokio::join!(load, schedule, sampler);
    let records = fleet.records();
    let mut report = report::analyse(&sc, args, &policy, &samples, &records, transitions);
    if !provisioned.is_empty() {
        report::add_provisioned(&mut report, &sc, &provisioned, &prices, &records);
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    fleet.shutdown().await;
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::text(&report))?;
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
