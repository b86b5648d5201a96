//! Hot reload: on SIGHUP, or when the config file changes and then stays
//! unchanged for a second, the file is read and validated again (off the
//! runtime). A valid config switches tenants, keys, limits, models and
//! routing atomically for new requests — requests already running finish
//! with the config they started with. An invalid one is refused with the
//! same file:line errors as `meridian config check`, and the running config
//! stays.
//!
//! A reload fails closed: an empty file, or one that would lower the inbound
//! security posture (tenants or `[auth]` gone, `[admin]` gone, a residency
//! policy widened, a guard removed, `strict_residency` off) is refused,
//! logged, counted and shown in `/status` — a half-written file parses as a
//! valid config without tenants. Such a change takes a restart, or
//! `serve --allow-weaker-reload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::live::Live;
use crate::metrics::Family;
use crate::metrics::labels;

/// How often the file's modification time is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of the file: its modification time and size.
fn version(p: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(p)
        .and_then(|m| Ok((m.modified()?, m.len())))
        .ok()
}

/// Forever: reloads `path` on SIGHUP, and when it changed and then did not
/// change for one more check (a writer still writing is not read).
pub async fn watch(live: Arc<Live>, path: PathBuf) {
    let mut last = version(&path);
    // A version seen once: read when the next check sees it again.
    let mut settling: Option<Option<(SystemTime, u64)>> = None;
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
                let now = tokio::task::spawn_blocking(move || version(&p)).await.ok().flatten();
                if now == last {
                    settling = None;
                    continue;
                }
                if settling != Some(now) {
                    settling = Some(now);
                    continue;
                }
                settling = None;
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
    let loaded = tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if text.trim().is_empty() {
            return Err(format!(
                "{}: the file is empty; an empty config is never applied by a reload",
                p.display()
            ));
        }
        meridian_config::parse(&text, Some(&p)).map_err(|e| e.to_string())
    })
    .await;
    let state = live.get();
    let loaded = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::error!(error = %e, trigger = why, "config reload refused; the running config stays");
            refuse(live, &state, "refused", e, Vec::new());
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload failed");
            return;
        }
    };
    let weaker =
        meridian_config::posture::weakenings(&state.config, &loaded.config, &state.catalog);
    if !weaker.is_empty() {
        if live.allows_weaker_reloads() {
            tracing::warn!(trigger = why, weaker = ?weaker, "config reload lowers the security posture; applied because --allow-weaker-reload is set");
        } else {
            tracing::error!(trigger = why, file = %path.display(), weaker = ?weaker, "config reload refused: it would lower the security posture; restart to apply it (or serve with --allow-weaker-reload)");
            let e = format!(
                "refused: the new config would lower the security posture ({}); restart to apply it",
                weaker.join("; ")
            );
            refuse(live, &state, "weaker", e, weaker);
            return;
        }
    }
    // What the last catalog refresh read still applies to the new catalog.
    let catalog = match state.catalog.discovered() {
        Some(found) => loaded.catalog.with_discovered(found.clone()),
        None => loaded.catalog,
    };
    let (next, restart) = state.reloaded(loaded.config, catalog);
    live.swap(Arc::new(next));
    state.metrics.add(
        Family::ConfigReloadsTotal,
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
    s.weaker = Vec::new();
    s.needs_restart = restart;
}

/// Counts and records a refused reload; the running config stays.
fn refuse(
    live: &Live,
    state: &crate::state::AppState,
    outcome: &'static str,
    error: String,
    weaker: Vec<String>,
) {
    state.metrics.add(
        Family::ConfigReloadsTotal,
        labels([("outcome", outcome)]),
        1.0,
    );
    let mut s = live.reloads.write();
    s.refused += 1;
    s.last_error = Some(error);
    s.weaker = weaker;
}
