//! Starting and stopping a fleet: one listener per region, a control listener,
//! and the scenario scheduler.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use meridian_catalog::Catalog;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::FleetConfig;
use crate::faults::FaultSet;
use crate::manifest::{Manifest, ManifestRegion};
use crate::record::Record;
use crate::region::{Ctx, Shared, handle};
use crate::scenario::Scenario;

/// A running fleet. Dropping it stops every listener.
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    manifest: Manifest,
    tasks: JoinSet<()>,
}

/// A fleet that could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("unknown region '{0}' in the fleet")]
    UnknownRegion(String),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    #[error("scenario: {0}")]
    Scenario(String),
}

impl Fleet {
    /// Starts the fleet on 127.0.0.1 (ports chosen by the OS; the control
    /// listener on `control_port` when given).
    pub async fn start(
        catalog: Catalog,
        mut config: FleetConfig,
        scenario: Option<Scenario>,
        control_port: Option<u16>,
    ) -> Result<Fleet, FleetError> {
        for r in &config.regions {
            if catalog.region(r).is_none() {
                return Err(FleetError::UnknownRegion(r.clone()));
            }
        }
        if let Some(s) = &scenario {
            if let Some(l) = s.latency {
                config.latency = l;
            }
            if let Some(c) = s.capacity {
                config.capacity = c;
            }
            for step in &s.steps {
                if catalog.region(&step.region).is_none() {
                    return Err(FleetError::Scenario(format!(
                        "unknown region '{}'",
                        step.region
                    )));
                }
            }
        }
        let regions = config.regions.clone();
        let credentials = config.credentials.first().cloned().unwrap_or_default();
        let shared = Arc::new(Shared::new(catalog, config));
        let mut tasks = JoinSet::new();

        let control = TcpListener::bind(("127.0.0.1", control_port.unwrap_or(0)))
            .await
            .map_err(FleetError::Bind)?;
        let control_url = format!("http://{}", control.local_addr().map_err(FleetError::Bind)?);
        let mut manifest = Manifest {
            control_url: control_url.clone(),
            credentials,
            regions: BTreeMap::new(),
        };
        for code in &regions {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(FleetError::Bind)?;
            let addr = listener.local_addr().map_err(FleetError::Bind)?;
            manifest.regions.insert(
                code.clone(),
                ManifestRegion {
                    url: format!("http://{addr}"),
                    control_url: format!("{control_url}/regions/{code}"),
                    mantle_url: format!("http://{addr}/mantle"),
                },
            );
            let ctx = Ctx {
                shared: shared.clone(),
                region: Arc::from(code.as_str()),
            };
            tasks.spawn(serve_region(listener, addr, ctx));
        }
        let router = crate::control::router(shared.clone(), manifest.clone());
        tasks.spawn(async move {
            let _ = axum::serve(control, router).await;
        });
        if let Some(s) = scenario {
            let shared = shared.clone();
            tasks.spawn(async move {
                let start = tokio::time::Instant::now();
                let mut steps = s.steps;
                steps.sort_by_key(|st| st.at_ms);
                for step in steps {
                    tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
                    shared.set_faults(&step.region, step.faults);
                }
            });
        }
        Ok(Fleet {
            shared,
            manifest,
            tasks,
        })
    }

    /// The address book.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Replaces a region's faults.
    pub fn set_faults(&self, region: &str, faults: FaultSet) -> bool {
        self.shared.set_faults(region, faults)
    }

    /// Replaces the fleet's guardrails.
    pub fn set_guardrails(&self, guardrails: Vec<crate::guardrails::SimGuardrail>) {
        self.shared.config.write().guardrails = guardrails;
    }

    /// Every request the fleet has seen, in arrival order of completion.
    pub fn records(&self) -> Vec<Record> {
        self.shared.records.lock().iter().cloned().collect()
    }

    /// Stops every listener.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Accepts connections until an outage, then closes the port (connections
/// are refused and open ones reset, after the outage's drain time if it has
/// one) until the outage ends.
async fn serve_region(listener: TcpListener, addr: SocketAddr, ctx: Ctx) {
    let router: Router = crate::batch::routes(Router::new())
        .route(
            crate::messages::RUNTIME_PATH,
            axum::routing::any(crate::messages::handle),
        )
        .route(
            crate::messages::MANTLE_PATH,
            axum::routing::any(crate::messages::handle),
        )
        .route(
            crate::messages::MANTLE_MODELS_PATH,
            axum::routing::any(crate::messages::models),
        )
        .route(
            "/openai/v1/{*api}",
            axum::routing::any(crate::openai::handle),
        )
        .route(
            "/mantle/v1/{*api}",
            axum::routing::any(crate::openai::handle),
        )
        .route(
            "/mantle/openai/v1/{*api}",
            axum::routing::any(crate::openai::handle),
        )
        .fallback(handle)
        .with_state(ctx.clone());
    let Some(state) = ctx.shared.regions.get(&*ctx.region) else {
        return;
    };
    let mut outage = state.outage.subscribe();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        // Checked on every turn, so an outage set before this task first ran is not missed.
        if *outage.borrow_and_update() {
            listener = None;
            let drain = ctx.shared.faults(&ctx.region).outage_drain_ms.unwrap_or(0);
            if drain > 0 {
                let all_done = async { while conns.join_next().await.is_some() {} };
                let _ = tokio::time::timeout(Duration::from_millis(drain), all_done).await;
            }
            conns.abort_all();
            while *outage.borrow_and_update() {
                if outage.changed().await.is_err() {
                    return;
                }
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match rebind(addr).await {
                Some(l) => l,
                None => {
                    tracing::error!(%addr, "cannot listen again after a simulated outage");
                    return;
                }
            },
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((stream, _)) = accepted {
                    let svc = TowerToHyperService::new(router.clone());
                    conns.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
            changed = outage.changed() => {
                if changed.is_err() { return; }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
        listener = Some(l);
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
