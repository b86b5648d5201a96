//! Hot reload: on SIGHUP, or when the config file changes, the file is read
//! and validated again (off the runtime). A valid config switches tenants,
//! keys, limits, models and routing atomically for new requests — requests
//! already running finish with the config they started with. An invalid
//! one is refused with the same file:line errors as `meridian config check`,
//! and the running config stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::live::Live;
use crate::metrics::labels;

/// How often the file's modification time is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Forever: reloads `path` on SIGHUP and when it changes.
pub async fn watch(live: Arc<Live>, path: PathBuf) {
    let mut last = modified(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let why = tokio::select! {
            () = hangup => "SIGHUP",
            () = tokio::time::sleep(CHECK_EVERY) => {
                let p = path.clone();
                let now = tokio::task::spawn_blocking(move || modified(&p)).await.ok().flatten();
                if now == last {
                    continue;
                }
                last = now;
                "the file changed"
            }
        };
        reload(&live, &path, why).await;
    }
}

/// Reads, validates and applies `path`; refuses it when invalid.
pub async fn reload(live: &Live, path: &Path, why: &str) {
    let p = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || meridian_config::load(Some(&p))).await;
    let state = live.get();
    let loaded = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::error!(error = %e, trigger = why, "config reload refused; the running config stays");
            state.metrics.add(
                "meridian_config_reloads_total",
                labels([("outcome", "refused")]),
                1.0,
            );
            let mut s = live.reloads.write();
            s.refused += 1;
            s.last_error = Some(e.to_string());
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload failed");
            return;
        }
    };
    // What the last catalog refresh read still applies to the new catalog.
    let catalog = match state.catalog.discovered() {
        Some(found) => loaded.catalog.with_discovered(found.clone()),
        None => loaded.catalog,
    };
    let (next, restart) = state.reloaded(loaded.config, catalog);
    live.swap(Arc::new(next));
    state.metrics.add(
        "meridian_config_reloads_total",
        labels([("outcome", "success")]),
        1.0,
    );
    if restart.is_empty() {
        tracing::info!(trigger = why, file = %path.display(), "config reloaded");
    } else {
        tracing::warn!(trigger = why, file = %path.display(), needs_restart = ?restart, "config reloaded; these sections changed but take effect only after a restart");
    }
    let mut s = live.reloads.write();
    s.applied += 1;
    s.last_error = None;
    s.needs_restart = restart;
}
