//! `meridian sim`: a standalone simulated fleet.

use std::process::ExitCode;

use anyhow::Context;
use meridian_catalog::Catalog;
use meridian_sim::{Fleet, FleetConfig, Scenario};

use super::{emit, emit_json, init_logging, shutdown_signal};
use crate::cli::SimArgs;
use crate::table::Table;

pub async fn run(opts: &SimArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let (seed, json) = (opts.seed, opts.json);
    let scenario = match &opts.scenario {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Scenario::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let mut config = FleetConfig::new(opts.regions.iter().cloned());
    config.seed = seed;
    config.s3_endpoint.clone_from(&opts.s3_endpoint);
    config.batch_job_ms = opts.batch_job_ms;
    let catalog = match &opts.config {
        Some(path) => {
            let loaded = meridian_config::load(Some(path))?;
            config.provisioned = super::fleet_provisioned(&loaded.config, &loaded.catalog);
            config.app_profiles = loaded.config.app_profiles;
            loaded.catalog
        }
        None => Catalog::builtin()?,
    };
    let fleet = Fleet::start(catalog, config, scenario, opts.control_port).await?;
    let m = fleet.manifest();
    if let Some(path) = &opts.manifest {
        std::fs::write(path, serde_json::to_string_pretty(m)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        emit_json(m)?;
    } else {
        let mut t = Table::new(&["REGION", "ENDPOINT", "FAULTS"]);
        for (code, r) in &m.regions {
            t.row(vec![
                code.clone(),
                r.url.clone(),
                r.control_url.clone() + "/faults",
            ]);
        }
        emit(&format!(
            "simulated Bedrock fleet (seed {seed})\n\n{}\ncontrol API: {}\nsign requests with access key {} and secret {}\n",
            t.render(),
            m.control_url,
            m.credentials.access_key_id,
            m.credentials.secret_access_key
        ))?;
    }
    shutdown_signal().await;
    fleet.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
