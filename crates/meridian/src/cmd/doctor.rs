//! `meridian doctor`: checks config, region and models, and says how to fix
//! what is wrong. Exits non-zero when any check is an error.

use std::path::Path;
use std::process::ExitCode;

use meridian_catalog::Lifecycle;
use meridian_catalog::resolve::ResolveError;
use meridian_config::{Loaded, UpstreamMode};
use serde::Serialize;

use super::{emit, emit_json, source_region};
use crate::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Error,
}

#[derive(Debug, Serialize)]
struct Check {
    level: Level,
    area: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Debug, Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(
        &mut self,
        level: Level,
        area: impl Into<String>,
        message: impl Into<String>,
        fix: Option<&str>,
    ) {
        self.0.push(Check {
            level,
            area: area.into(),
            message: message.into(),
            fix: fix.map(str::to_string),
        });
    }
}

pub async fn run(config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    match meridian_config::load(config) {
        Err(e) => report.add(
            Level::Error,
            "config",
            e.to_string(),
            Some("fix the file at the line shown, then run `meridian config check FILE`"),
        ),
        Ok(loaded) => {
            let from = loaded
                .config
                .file
                .as_ref()
                .map_or("built-in defaults".to_string(), |f| f.display().to_string());
            report.add(Level::Ok, "config", format!("loaded {from}"), None);
            check_loaded(&loaded, &mut report).await;
        }
    }
    let failed = report.0.iter().any(|c| c.level == Level::Error);
    if json {
        emit_json(&serde_json::json!({"ok": !failed, "checks": report.0}))?;
    } else {
        let mut t = Table::new(&["", "AREA", "FINDING"]);
        for c in &report.0 {
            let mark = match c.level {
                Level::Ok => "ok",
                Level::Warn => "warn",
                Level::Error => "ERROR",
            };
            let mut msg = c.message.replace('\n', "\n        ");
            if let Some(fix) = &c.fix {
                msg.push_str(&format!(" -> {fix}"));
            }
            t.row(vec![mark.into(), c.area.clone(), msg]);
        }
        let verdict = if failed {
            "problems found"
        } else {
            "all checks passed"
        };
        emit(&format!("{}\n{verdict}\n", t.render()))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The Redis state backend answers; the TLS pair loads.
async fn check_shared(config: &meridian_config::Config, report: &mut Report) {
    if let Some(why) = config.state.missing_url() {
        report.add(
            Level::Error,
            "state",
            why,
            Some("set it to the Redis URL (a Kubernetes Secret or an ECS secret holds it)"),
        );
    } else if let meridian_config::Backend::Redis { url } = &config.state.backend {
        let shared = meridian_gateway::limits::Shared::new(
            url,
            std::time::Duration::from_millis(config.state.timeout_ms),
        );
        if shared.connect(std::time::Duration::from_secs(2)).await {
            report.add(
                Level::Ok,
                "state",
                format!("Redis at {} answers", redact(url)),
                None,
            );
        } else {
            report.add(
                Level::Error,
                "state",
                format!("Redis at {} does not answer within 2 s", redact(url)),
                Some("start it, or check [state] url; until it answers, [state] on_unavailable applies"),
            );
        }
    }
    if let Some(t) = &config.tls {
        match meridian_gateway::tls::server_config(&t.cert, &t.key) {
            Ok(_) => report.add(Level::Ok, "tls", format!("{} and its key load", t.cert.display()), None),
            Err(e) => report.add(
                Level::Error,
                "tls",
                e,
                Some("point [server] tls_cert and tls_key at a PEM certificate chain and its private key"),
            ),
        }
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

async fn check_loaded(loaded: &Loaded, report: &mut Report) {
    let (config, catalog) = (&loaded.config, &loaded.catalog);
    check_shared(config, report).await;
    let (region, step) = source_region(None, config).await;
    match catalog.region(&region) {
        None => report.add(
            Level::Error,
            "region",
            format!("'{region}' (from {}) is not a region the catalog knows", step.label()),
            Some("set MERIDIAN_REGION or `region` in meridian.toml to a code from `meridian regions`"),
        ),
        Some(r) if !r.bedrock => report.add(
            Level::Warn,
            "region",
            format!("{region} (from {}) does not serve Bedrock; every call will go to another region", step.label()),
            Some("deploy Meridian in a Bedrock region (`meridian regions --bedrock`) to keep calls local"),
        ),
        Some(r) => report.add(Level::Ok, "region", format!("{} {} (from {})", r.code, r.name, step.label()), None),
    }
    if let Some(why) = config.strict_violation(&region) {
        report.add(
            Level::Error,
            "residency",
            why,
            Some("run Meridian in a region every policy allows, or set strict_residency = false"),
        );
    } else {
        for (policy, users) in config.transit_policies(&region) {
            report.add(
                Level::Warn,
                "residency",
                format!(
                    "this gateway runs in {region}, outside residency policy '{policy}' ({}): prompts pass through it",
                    users.join(", ")
                ),
                Some("run Meridian inside the policy, or set strict_residency = true to refuse this"),
            );
        }
    }
    if catalog.region(&region).is_some() {
        for m in &config.models {
            check_model(loaded, &m.name, &region, report);
        }
        let unconfirmed = report
            .0
            .iter()
            .filter(|c| c.message.contains("(unconfirmed in catalog)"))
            .count();
        if unconfirmed > 0 {
            report.add(
                Level::Warn,
                "catalog",
                format!("{unconfirmed} models' first targets rest on catalog data no AWS source confirms"),
                Some("check them with GetInferenceProfile in this region and record them in a catalog override file"),
            );
        }
    }
    for (file, meta) in &catalog.meta {
        report.add(
            Level::Ok,
            "catalog",
            format!("{file} checked {}", meta.checked),
            None,
        );
    }
    let models = catalog.models().iter().filter(|m| !m.confirmed).count();
    let routes = catalog.routes().filter(|r| !r.confirmed).count();
    report.add(
        if models + routes > 0 { Level::Warn } else { Level::Ok },
        "catalog",
        format!(
            "{models} of {} compiled models and {routes} of {} profile families are marked unconfirmed (no AWS source checked for this file)",
            catalog.models().len(),
            catalog.routes().count()
        ),
        (models + routes > 0).then_some(
            "with AWS credentials, `meridian catalog diff` compares them with ListInferenceProfiles; `serve` refreshes from it every [catalog] refresh_interval_s",
        ),
    );
    if check_upstream(loaded, &region, report).await {
        check_refresh(loaded, &region, step, report).await;
    }
}

/// With AWS credentials: what a catalog refresh would read now.
async fn check_refresh(
    loaded: &Loaded,
    region: &str,
    step: meridian_catalog::detect::Step,
    report: &mut Report,
) {
    let Ok(reading) = super::catalog::read_now(
        loaded.config.clone(),
        loaded.catalog.clone(),
        region.to_string(),
        step,
    )
    .await
    else {
        return;
    };
    use meridian_catalog::discovered::Verdict as V;
    let count = |v: V| reading.findings.iter().filter(|f| f.verdict == v).count();
    let contradictions = reading.contradictions();
    let (found, errors) = (&reading.found, &reading.errors);
    report.add(
        if found.regions.is_empty() || contradictions > 0 { Level::Warn } else { Level::Ok },
        "catalog",
        format!(
            "refresh from ListInferenceProfiles: {} region(s) read, {} not; {} confirmed, {} added, {contradictions} contradicted",
            found.regions.len(),
            errors.len(),
            count(V::Confirmed),
            count(V::Added),
        ),
        (contradictions > 0).then_some("`meridian catalog diff` lists them; residency uses the wider set of each"),
    );
}

fn check_model(loaded: &Loaded, name: &str, region: &str, report: &mut Report) {
    let area = format!("model {name}");
    match loaded.config.resolve(&loaded.catalog, name, region, None) {
        Ok(res) => {
            let first = &res.targets[0];
            report.add(
                Level::Ok,
                &area,
                format!(
                    "{} target{}; first {} called in {}{}",
                    res.targets.len(),
                    if res.targets.len() == 1 { "" } else { "s" },
                    first.model_id,
                    first.endpoint_region,
                    if first.confirmed {
                        ""
                    } else {
                        " (unconfirmed in catalog)"
                    }
                ),
                None,
            );
            if let Some(model) = res.alias.as_deref().and_then(|a| loaded.catalog.model(a))
                && model.lifecycle == Lifecycle::Legacy
            {
                let eol = model
                    .end_of_life
                    .as_deref()
                    .map_or(String::new(), |d| format!(", end of life {d}"));
                report.add(
                    Level::Warn,
                    &area,
                    format!("{} is a legacy model{eol}", model.alias),
                    Some("move to a current model"),
                );
            }
        }
        Err(e @ ResolveError::NoTarget { .. }) => report.add(
            Level::Error,
            &area,
            e.to_string(),
            Some(
                "widen the model's residency policy, or run Meridian in a region the policy allows",
            ),
        ),
        Err(e) => report.add(Level::Error, &area, e.to_string(), None),
    }
}

/// Whether AWS credentials resolved (so the control plane can be asked).
async fn check_upstream(loaded: &Loaded, region: &str, report: &mut Report) -> bool {
    // The same probe `serve` makes, so the two never disagree.
    let found = match loaded.config.upstream.mode {
        UpstreamMode::Simulated => None,
        _ => Some(super::serve::aws_auth(&loaded.config, region).await),
    };
    let aws = matches!(found, Some(Ok(_)));
    match (loaded.config.upstream.mode, found) {
        (UpstreamMode::Simulated, _) => report.add(Level::Ok, "upstream", "simulated region fleet (upstream.mode = simulated)", None),
        (_, Some(Ok((_, source)))) => report.add(Level::Ok, "upstream", format!("AWS credentials: {source}"), None),
        (UpstreamMode::Aws, Some(Err(e))) => report.add(
            Level::Error,
            "upstream",
            format!("upstream.mode = aws but AWS credentials did not resolve: {e}"),
            Some("set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_BEARER_TOKEN_BEDROCK, or run with an instance/task role"),
        ),
        (_, _) => report.add(
            Level::Warn,
            "upstream",
            "no AWS credentials resolved; `meridian serve` will use the simulated region fleet",
            Some("provide AWS credentials to call real Bedrock"),
        ),
    }
    for (region, url) in &loaded.config.upstream.endpoints {
        report.add(
            Level::Ok,
            "upstream",
            format!("endpoint override {region} -> {url}"),
            None,
        );
    }
    aws
}
