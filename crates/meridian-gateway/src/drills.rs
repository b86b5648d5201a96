//! Drills started from the dashboard: each is a `meridian drill` child
//! process (its own simulated fleet and gateway, nothing shared with the
//! serving one), one at a time, its output kept for the page and its HTML
//! report for `/ui/api/drills/{id}/report`.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

/// The scenarios `meridian drill` knows.
pub const SCENARIOS: [&str; 6] = [
    "region-outage",
    "brownout",
    "throttle-storm",
    "flapping",
    "residency-squeeze",
    "provisioned-overflow",
];

/// Most output lines kept per drill.
const LINES: usize = 200;
/// Drills remembered (the oldest report is forgotten first).
const KEEP: usize = 20;

/// What `POST /ui/api/drills` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub scenario: String,
    /// Seconds of load, 6–120 (default 8).
    pub duration_s: Option<u32>,
    /// Requests per second, 1–200 (default 40).
    pub rate: Option<u32>,
}

/// One drill, as the page sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    pub id: u64,
    pub scenario: String,
    pub duration_s: u32,
    pub started: u64,
    /// `running`, `passed`, `failed` (a check failed) or `error`.
    pub status: String,
    pub lines: Vec<String>,
    pub report: bool,
}

/// The drills of this process.
#[derive(Debug)]
pub struct Drills {
    list: Arc<Mutex<Vec<Drill>>>,
    dir: PathBuf,
    program: Option<PathBuf>,
}

impl Default for Drills {
    fn default() -> Self {
        Drills {
            list: Arc::default(),
            dir: std::env::temp_dir().join(format!("meridian-drills-{}", std::process::id())),
            program: std::env::current_exe().ok(),
        }
    }
}

impl Drills {
    /// Every drill, newest last.
    pub fn list(&self) -> Vec<Drill> {
        self.list.lock().clone()
    }

    fn report_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("drill-{id}.html"))
    }

    /// Starts a drill; refused while one runs.
    pub async fn start(&self, req: &Start) -> Result<Drill, String> {
        if !SCENARIOS.contains(&req.scenario.as_str()) {
            return Err(format!(
                "unknown scenario '{}'; known: {}",
                req.scenario,
                SCENARIOS.join(", ")
            ));
        }
        let duration = req.duration_s.unwrap_or(8).clamp(6, 120);
        let rate = req.rate.unwrap_or(40).clamp(1, 200);
        let program = self
            .program
            .clone()
            .ok_or("this process cannot find its own executable")?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| e.to_string())?;
        let mut list = self.list.lock();
        if list.iter().any(|d| d.status == "running") {
            return Err("a drill is already running; one at a time".into());
        }
        let id = list.last().map_or(1, |d| d.id + 1);
        let report = self.report_path(id);
        let child = tokio::process::Command::new(program)
            .arg("drill")
            .arg(&req.scenario)
            .arg("--duration")
            .arg(duration.to_string())
            .arg("--rate")
            .arg(rate.to_string())
            .arg("--report")
            .arg(&report)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the drill: {e}"))?;
        let drill = Drill {
            id,
            scenario: req.scenario.clone(),
            duration_s: duration,
            started: crate::traffic::unix_now(),
            status: "running".into(),
            lines: Vec::new(),
            report: false,
        };
        list.push(drill.clone());
        while list.len() > KEEP {
            let old = list.remove(0);
            let path = self.report_path(old.id);
            tokio::spawn(async move {
                let _ = tokio::fs::remove_file(path).await;
            });
        }
        drop(list);
        tokio::spawn(watch(self.list.clone(), id, child, report));
        Ok(drill)
    }

    /// A finished drill's report.
    pub async fn report(&self, id: u64) -> Option<String> {
        if !self.list.lock().iter().any(|d| d.id == id && d.report) {
            return None;
        }
        tokio::fs::read_to_string(self.report_path(id)).await.ok()
    }
}

/// Follows a drill's output until it exits.
async fn watch(
    list: Arc<Mutex<Vec<Drill>>>,
    id: u64,
    mut child: tokio::process::Child,
    report: PathBuf,
) {
    let push = |line: String| {
        let mut l = list.lock();
        if let Some(d) = l.iter_mut().find(|d| d.id == id) {
            d.lines.push(line);
            if d.lines.len() > LINES {
                d.lines.remove(0);
            }
        }
    };
    let out = child.stdout.take();
    let err = child.stderr.take();
    let stdout = async {
        if let Some(o) = out {
            let mut lines = tokio::io::BufReader::new(o).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                push(l);
            }
        }
    };
    let stderr = async {
        if let Some(e) = err {
            let mut lines = tokio::io::BufReader::new(e).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                push(l);
            }
        }
    };
    tokio::join!(stdout, stderr);
    let status = match child.wait().await {
        Ok(s) if s.success() => "passed",
        Ok(s) if s.code() == Some(1) => "failed",
        _ => "error",
    };
    let has_report = tokio::fs::metadata(&report).await.is_ok();
    let mut l = list.lock();
    if let Some(d) = l.iter_mut().find(|d| d.id == id) {
        d.status = status.into();
        d.report = has_report;
    }
}
