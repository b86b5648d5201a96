//! The state new requests start with. A config reload swaps in a new one;
//! requests already running keep the one they started with.

use std::sync::Arc;

use crate::state::AppState;

/// The gateway state requests start with; a config reload swaps in a new
/// one, and requests already running finish with the one they started with.
#[derive(Debug)]
pub struct Live {
    current: parking_lot::RwLock<Arc<AppState>>,
    /// What config reloads did.
    pub reloads: parking_lot::RwLock<ReloadStatus>,
    /// What catalog refreshes did.
    pub catalog_status: parking_lot::RwLock<RefreshStatus>,
    /// Set when the process was asked to stop: `/ready` answers 503 so load
    /// balancers take the replica out while it still serves.
    draining: std::sync::atomic::AtomicBool,
    /// Open connections and their limits, once the server runs.
    connections: parking_lot::RwLock<Option<Arc<crate::conn::Gate>>>,
    /// Whether a reload may lower the security posture (`--allow-weaker-reload`).
    allow_weaker: std::sync::atomic::AtomicBool,
}

impl Live {
    /// Serving `state`.
    pub fn new(state: Arc<AppState>) -> Arc<Live> {
        Arc::new(Live {
            current: parking_lot::RwLock::new(state),
            reloads: Default::default(),
            catalog_status: Default::default(),
            draining: Default::default(),
            allow_weaker: Default::default(),
            connections: Default::default(),
        })
    }

    /// From now on `/ready` says the replica is going away.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the process was asked to stop.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// From now on a reload may lower the security posture.
    pub fn allow_weaker_reloads(&self) {
        self.allow_weaker
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a reload may lower the security posture.
    pub fn allows_weaker_reloads(&self) -> bool {
        self.allow_weaker.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The server's connection gate, once it serves.
    pub fn connections(&self) -> Option<Arc<crate::conn::Gate>> {
        self.connections.read().clone()
    }

    /// Serves connections through `gate`.
    pub fn set_connections(&self, gate: Arc<crate::conn::Gate>) {
        *self.connections.write() = Some(gate);
    }

    /// The state for a new request.
    pub fn get(&self) -> Arc<AppState> {
        self.current.read().clone()
    }

    /// Serves `state` from now on.
    pub fn swap(&self, state: Arc<AppState>) {
        *self.current.write() = state;
    }
}

/// What the last reload did, for `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Reloads applied since start.
    pub applied: u64,
    /// Reloads refused since start.
    pub refused: u64,
    /// The last refusal's error, while the running config is older than the file.
    pub last_error: Option<String>,
    /// Sections that changed but wait for a restart.
    pub needs_restart: Vec<&'static str>,
    /// How the last refused file would have lowered the security posture.
    pub weaker: Vec<String>,
}

/// What the refresh has done, for `/status` and `meridian doctor`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RefreshStatus {
    /// Refreshes applied.
    pub refreshes: u64,
    /// When the served facts were read (none: compiled data only).
    #[serde(skip)]
    pub refreshed_at: Option<std::time::SystemTime>,
    /// The last attempt's errors, per region.
    pub errors: Vec<String>,
    /// The last applied refresh compared with the compiled catalog.
    pub findings: Vec<meridian_catalog::discovered::Finding>,
}
