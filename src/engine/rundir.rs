//! Run directories: `runs/<pipeline>/<UTC timestamp>-<id>/` with the
//! resolved pipeline, `run.json`, each stage's outputs (links into the store)
//! and one log per stage.

use super::atomic;
use super::store::Artifact;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    Pending,
    Running,
    Ran,
    Reused,
    Failed,
    Skipped,
}

impl StageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Ran => "ran",
            StageStatus::Reused => "reused",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub stage: String,
    pub op: String,
    pub op_version: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub coords: BTreeMap<String, Json>,
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preimage: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub log: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: String,
    pub pipeline: String,
    pub file: String,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// running | ok | failed | interrupted
    pub status: String,
    pub host: String,
    pub nasflow_version: String,
    pub executor: String,
    #[serde(default)]
    pub overrides: Vec<String>,
    pub stages: Vec<StageRun>,
}

impl RunInfo {
    pub fn counts(&self) -> (usize, usize, usize) {
        let c = |s: StageStatus| self.stages.iter().filter(|x| x.status == s).count();
        (c(StageStatus::Ran), c(StageStatus::Reused), c(StageStatus::Failed))
    }
}

pub struct RunDir {
    pub path: PathBuf,
    pub info: RunInfo,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn host() -> String {
    hostname::get().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "unknown".into())
}

impl RunDir {
    pub fn create(runs_dir: &Path, pipeline: &str, info: RunInfo) -> Result<RunDir> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let id = format!("{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let path = runs_dir.join(pipeline).join(&id);
        std::fs::create_dir_all(path.join("logs")).with_context(|| format!("cannot create run directory {}", path.display()))?;
        let mut info = info;
        info.id = id;
        let rd = RunDir { path, info };
        rd.save()?;
        Ok(rd)
    }

    pub fn save(&self) -> Result<()> {
        atomic::write_json(&self.path.join("run.json"), &self.info)
    }

    pub fn stage_dir(&self, instance: &str) -> PathBuf {
        self.path.join(instance)
    }

    pub fn log_path(&self, instance: &str) -> PathBuf {
        self.path.join("logs").join(format!("{instance}.log"))
    }
}

/// Every run directory under `runs_dir` (all pipelines), oldest first.
pub fn list_runs(runs_dir: &Path) -> Vec<(PathBuf, RunInfo)> {
    let mut out = Vec::new();
    let Ok(pipes) = std::fs::read_dir(runs_dir) else { return out };
    for p in pipes.flatten() {
        if p.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(p.path()) else { continue };
        for r in runs.flatten() {
            if let Some(info) = read_run(&r.path()) {
                out.push((r.path(), info));
            }
        }
    }
    out.sort_by(|a, b| a.1.started.cmp(&b.1.started).then(a.1.id.cmp(&b.1.id)));
    out
}

pub fn read_run(dir: &Path) -> Option<RunInfo> {
    let bytes = std::fs::read(dir.join("run.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A run given as a directory, a run id, or an id prefix.
pub fn find_run(runs_dir: &Path, what: &str) -> Result<(PathBuf, RunInfo)> {
    let p = Path::new(what);
    if let Some(info) = read_run(p) {
        return Ok((p.to_path_buf(), info));
    }
    let runs = list_runs(runs_dir);
    let hits: Vec<_> = runs.into_iter().filter(|(_, i)| i.id == what || i.id.starts_with(what) || i.id.ends_with(what)).collect();
    match hits.len() {
        1 => Ok(hits.into_iter().next().context("no run")?),
        0 => anyhow::bail!("no run `{what}` under {} (give a run directory or an id from `nasflow runs`)", runs_dir.display()),
        n => anyhow::bail!("`{what}` matches {n} runs; give more of the id"),
    }
}
