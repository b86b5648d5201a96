//! `/health`, `/ready`, `/status` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use meridian_catalog::arn::partition_of;
use serde_json::{Value, json};

use crate::live::Live;
use crate::metrics::Family;
use crate::state::AppState;

/// Liveness: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Who may read `/status`: everyone without tenants; with tenants, the
/// admin key (everything) or a tenant's key (its own tenant and the models
/// it may call).
enum Viewer {
    Operator,
    Tenant(Arc<meridian_config::Tenant>),
}

/// The viewer of a `/status` request, or its refusal.
async fn viewer(
    state: &AppState,
    parts: &http::request::Parts,
) -> Result<Viewer, axum::response::Response> {
    if !state.tenants.enforced() {
        return Ok(Viewer::Operator);
    }
    if let Some(want) = &state.config.admin_key
        && crate::keys::bearer_is(&parts.headers, want)
    {
        return Ok(Viewer::Operator);
    }
    let refused = |status, text: &str| crate::admin::message(status, text);
    match crate::auth::identify(state, &parts.headers, crate::auth::BEDROCK).await {
        Ok(identified) => match crate::auth::authenticate(identified, parts, b"") {
            Ok(t) => Ok(Viewer::Tenant(t)),
            Err(e) => Err(refused(http::StatusCode::UNAUTHORIZED, &e.message)),
        },
        Err(e) if e.kind == meridian_wire::ErrorKind::ServiceUnavailable => {
            Err(refused(http::StatusCode::SERVICE_UNAVAILABLE, &e.message))
        }
        Err(_) => Err(refused(
            http::StatusCode::UNAUTHORIZED,
            "/status needs the admin key or a tenant's key when [tenants] are configured",
        )),
    }
}

/// Which inbound authentication is enforced, in words.
fn inbound_auth(state: &AppState) -> String {
    let tenants = state.config.tenants.len();
    match (tenants, state.config.auth.is_enforced()) {
        (0, false) => "none: every caller is accepted (no [tenants] or [auth] in config)".into(),
        (0, true) => "enforced: [auth] keys and SigV4 credentials".into(),
        (n, auth) => format!(
            "enforced: {n} tenant(s) by API key or SigV4{}",
            if auth {
                ", and [auth] as tenant 'default'"
            } else {
                ""
            }
        ),
    }
}

/// What this Meridian is and where it sends requests.
pub async fn status(
    State(live): State<Arc<Live>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let state = live.get();
    let (parts, _) = req.into_parts();
    let viewer = match viewer(&state, &parts).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let sees_model = |name: &str| match &viewer {
        Viewer::Operator => true,
        Viewer::Tenant(t) => t.may_call(name),
    };
    let sees_tenant = |name: &str| match &viewer {
        Viewer::Operator => true,
        Viewer::Tenant(t) => t.name == name,
    };
    let reloads = live.reloads.read().clone();
    let models: Vec<Value> = state
        .config
        .models
        .iter()
        .filter(|m| sees_model(&m.name))
        .map(|m| match state.resolve(&m.name, None) {
            Ok(res) => json!({
                "name": m.name, "model": m.model, "residency": m.policy.to_string(),
                "targets": res.targets.iter().map(|t| json!({
                    "endpoint_region": t.endpoint_region, "model_id": t.model_id,
                    "destinations": t.destinations,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"name": m.name, "model": m.model, "residency": m.policy.to_string(), "error": e.to_string()}),
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "region": state.region,
        "region_source": state.region_step.label(),
        "partition": partition_of(&state.region),
        "upstream": state.upstream_info,
        "state_backend": state_backend(&state),
        "config": {
            "file": state.config.file.as_ref().map(|f| f.display().to_string()),
            "reloads": reloads,
        },
        "tls": state.config.tls.is_some(),
        "catalog": live.catalog_status.read().to_status(&state),
        "viewer": match &viewer { Viewer::Operator => "operator".to_string(), Viewer::Tenant(t) => format!("tenant {}", t.name) },
        "tenants": state.tenants.all().iter().filter(|t| sees_tenant(&t.name)).map(|t| json!({
            "name": t.name,
            "api_keys": t.api_keys.len(),
            "sigv4_keys": t.credentials.iter().map(|c| c.access_key_id.clone()).collect::<Vec<_>>(),
            "models": t.models,
            "residency": t.residency.as_ref().map(ToString::to_string),
            "limits": {
                "requests_per_minute": t.limits.requests_per_minute,
                "tokens_per_minute": t.limits.tokens_per_minute,
                "max_concurrent": t.limits.max_concurrent,
                "budget_usd_per_day": t.limits.budget_usd_per_day,
                "budget_usd_per_month": t.limits.budget_usd_per_month,
            },
        })).collect::<Vec<_>>(),
        "inbound_auth": inbound_auth(&state),
        "models": models,
        "residency_transit": {
            "strict_residency": state.config.strict_residency,
            "policies_outside_this_region": state.config.transit_policies(&state.region).into_iter()
                .map(|(p, users)| json!({"policy": p, "used_by": users}))
                .collect::<Vec<_>>(),
        },
        "ready": !state.upstream_info.fallback && state.readiness().iter().all(|r| r.healthy > 0),
        "invocation_log": {
            "sinks": state.log.sink_names(),
            "queued": state.log.queued(),
            "dropped_queue_full": state.log.dropped(),
            "when_stdout_or_file_fall_behind": "records for stdout and the file are dropped and counted (meridian_log_records_dropped_total{reason=\"queue_full\"}); requests never wait for them; the S3 spool keeps every record",
            "include_bodies": state.log.include_bodies,
            "s3": state.log.s3.as_ref().map(|s| s.status()),
        },
        "breakers": crate::status::breakers(&state),
        "candidates": state.router.views(),
    }))
    .into_response()
}

fn state_backend(state: &AppState) -> Value {
    let s = &state.config.state;
    let (kind, up) = match state.limiter.shared() {
        Some(shared) => ("redis", Some(shared.is_up())),
        None => ("memory", None),
    };
    json!({
        "backend": kind,
        "reachable": up,
        "on_unavailable": format!("{:?}", s.on_unavailable),
        "replicas": s.replicas,
        "admitted_by_local_limits": state.limiter.degraded.load(std::sync::atomic::Ordering::Relaxed),
        "routing_state": "breakers, retry budget, latency and quota estimates are kept per gateway process",
    })
}

/// Why a gateway whose `auto` mode fell back to the fleet is not ready.
pub const SIMULATED_BY_FALLBACK: &str = "not ready: no AWS credentials resolved, so upstream mode \"auto\" fell back to the simulated fleet, whose answers are not model output; provide credentials, or set [upstream] mode = \"simulated\" to serve from the fleet on purpose";

/// Readiness: every exposed model has at least one allowed candidate whose
/// endpoint answers the prober and whose breaker is not open. 503 otherwise,
/// naming the models that have none — and 503 once the process is draining.
pub async fn ready(State(live): State<Arc<Live>>) -> axum::response::Response {
    let state = live.get();
    use axum::response::IntoResponse;
    let models = state.readiness();
    let draining = live.is_draining();
    let fallback = state.upstream_info.fallback;
    let ready = !draining && !fallback && models.iter().all(|m| m.healthy > 0);
    let mut body = json!({"ready": ready, "draining": draining, "models": models});
    if fallback {
        body["upstream"] = json!(SIMULATED_BY_FALLBACK);
    }
    let body = Json(body);
    let status = if ready {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Prometheus text exposition, or OpenMetrics with exemplars when the
/// scraper asks for it.
pub async fn metrics(
    State(live): State<Arc<Live>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    let state = live.get();
    use crate::metrics::owned;
    use axum::response::IntoResponse;
    let mut gauges = Vec::new();
    for v in state.router.views() {
        let k = &v.key;
        let mut labels = vec![
            ("region", &*k.region),
            ("account", &*k.account),
            ("model", &*k.model),
            ("surface", k.surface.name()),
        ];
        if let Some(t) = k.tier {
            labels.push(("tier", t.name()));
        }
        let l = owned(&labels);
        gauges.push((Family::BreakerState, l.clone(), v.breaker.gauge()));
        gauges.push((
            Family::QuotaUsedTokensPerMinute,
            l.clone(),
            v.tokens_last_min as f64,
        ));
        if let Some(q) = v.quota_tokens_per_min {
            if q > 0 {
                // The ratio alerts use, ready-made for backends without
                // label joins (CloudWatch alarms take its maximum).
                gauges.push((
                    Family::QuotaUtilization,
                    l.clone(),
                    v.tokens_last_min as f64 / q as f64,
                ));
            }
            gauges.push((Family::QuotaEstimateTokensPerMinute, l, q as f64));
        }
    }
    if let Some(gate) = live.connections() {
        gauges.push((Family::ConnectionsOpen, Vec::new(), gate.open() as f64));
        gauges.push((Family::ConnectionsMax, Vec::new(), gate.limits().max as f64));
    }
    if let Some(s3) = &state.log.s3 {
        let st = s3.status();
        gauges.push((Family::LogSpoolBytes, Vec::new(), st.spool_bytes as f64));
        gauges.push((
            Family::LogRecordsUploadedTotal,
            Vec::new(),
            st.uploaded_records as f64,
        ));
        gauges.push((
            Family::LogRecordsDroppedTotal,
            owned(&[("reason", "spool_full")]),
            st.dropped_records as f64,
        ));
    }
    if !state.log.sink_names().is_empty() {
        gauges.push((
            Family::LogRecordsDroppedTotal,
            owned(&[("reason", "queue_full")]),
            state.log.dropped() as f64,
        ));
    }
    if let Some(t) = &state.tracer {
        let c = t.counts();
        gauges.push((
            Family::TraceSpansExportedTotal,
            Vec::new(),
            c.exported.load(Ordering::Relaxed) as f64,
        ));
        for (reason, n) in [
            ("queue_full", &c.queue_full),
            ("export_failed", &c.export_failed),
        ] {
            gauges.push((
                Family::TraceSpansDroppedTotal,
                owned(&[("reason", reason)]),
                n.load(Ordering::Relaxed) as f64,
            ));
        }
    }
    let ready = !state.upstream_info.fallback && state.readiness().iter().all(|r| r.healthy > 0);
    gauges.push((Family::Ready, Vec::new(), if ready { 1.0 } else { 0.0 }));
    {
        let c = live.catalog_status.read();
        if let Some(age) = c.age_secs() {
            gauges.push((Family::CatalogAgeSeconds, Vec::new(), age));
            gauges.push((
                Family::CatalogContradictions,
                Vec::new(),
                c.contradictions() as f64,
            ));
        }
    }
    if let Some(shared) = state.limiter.shared() {
        gauges.push((
            Family::StateBackendUp,
            Vec::new(),
            if shared.is_up() { 1.0 } else { 0.0 },
        ));
    }
    gauges.push((
        Family::AdmittedByLocalLimitsTotal,
        Vec::new(),
        state
            .limiter
            .degraded
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    ));
    let format = crate::metrics::Format::for_accept(
        headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    (
        [("content-type", format.content_type())],
        state.metrics.render_as(&gauges, format),
    )
        .into_response()
}

/// Every known breaker, by its key's fields and its text.
pub fn breakers(state: &AppState) -> Vec<Value> {
    state
        .router
        .health
        .states()
        .into_iter()
        .map(|(id, st)| {
            let mut b = json!(*id.key());
            b["target"] = json!(id.text());
            b["state"] = json!(st);
            b
        })
        .collect()
}
