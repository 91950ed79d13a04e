//! One stage, run in its own process (`nasflow exec-stage JOB`): the local
//! executor spawns it, a Slurm executor would sbatch the same command. It
//! takes the stage's lock, runs the op into a private folder, moves every
//! output into the store, and only then writes the record.

use super::lock::Lock;
use super::op::{DataRef, Registry, StageCtx};
use super::rundir::{host, now};
use super::store::{Record, Store};
use super::atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub stage: String,
    pub op: String,
    pub op_version: u32,
    pub fingerprint: String,
    pub preimage: Json,
    pub params: BTreeMap<String, Json>,
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    pub data: Option<DataRef>,
    pub base_dir: PathBuf,
    pub store: PathBuf,
    /// This attempt's private folder (job.json, result.json, out/).
    pub dir: PathBuf,
    pub log: PathBuf,
    pub show_progress: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    /// ran | reused | failed
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

pub fn lock_path(store: &Path, fingerprint: &str) -> PathBuf {
    store.join("locks").join(format!("{fingerprint}.lock"))
}

/// The body of `nasflow exec-stage`: never panics outward; the outcome is
/// written to `result.json` beside the job.
pub fn exec_stage(job_path: &Path, registry: &Registry) -> Result<()> {
    let text = std::fs::read_to_string(job_path).with_context(|| format!("cannot read job {}", job_path.display()))?;
    let job: Job = serde_json::from_str(&text).with_context(|| format!("job file {} is not valid", job_path.display()))?;
    let outcome = run_job(&job, registry);
    let result = match &outcome {
        Ok(status) => JobResult { status: status.to_string(), error: None },
        Err(e) => JobResult { status: "failed".into(), error: Some(format!("{e:#}")) },
    };
    if let Err(e) = &outcome {
        append_log(&job.log, &format!("error: {e:#}\n"));
    }
    atomic::write_json(&job.dir.join("result.json"), &result)?;
    outcome.map(|_| ())
}

fn append_log(path: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

fn run_job(job: &Job, registry: &Registry) -> Result<&'static str> {
    let store = Store::open(&job.store)?;
    // One attempt at a time per fingerprint, across processes and runs.
    let _lock = Lock::acquire(&lock_path(&job.store, &job.fingerprint))?;
    if let Some(rec) = store.record(&job.fingerprint) {
        if rec.outputs.values().all(|a| store.verify(a).is_ok()) {
            return Ok("reused");
        }
        store.drop_record(&job.fingerprint);
    }
    let op = registry.get(&job.op).with_context(|| format!("unknown op `{}`", job.op))?;
    let out_dir = job.dir.join("out");
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)?;
    }
    std::fs::create_dir_all(&out_dir)?;
    let work_dir = store.work_dir(&job.fingerprint);
    std::fs::create_dir_all(&work_dir)?;
    let started = now();
    append_log(&job.log, &format!("== {} ({} v{}) started {started} on {}\n", job.stage, job.op, job.op_version, host()));
    let ctx = StageCtx {
        stage: job.stage.clone(),
        params: job.params.clone(),
        inputs: job.inputs.clone(),
        data: job.data.clone(),
        out_dir: out_dir.clone(),
        work_dir: work_dir.clone(),
        base_dir: job.base_dir.clone(),
        log_path: job.log.clone(),
        show_progress: job.show_progress,
    };
    let run = op.run;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ctx)));
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            bail!("internal error in op `{}` (a bug in nasflow, please report it): {msg}", job.op);
        }
    }
    let mut outputs = BTreeMap::new();
    for (name, rel) in op.output_ports(&job.params) {
        let p = out_dir.join(&rel);
        if !p.exists() {
            bail!("stage `{}` finished but did not write its output `{name}` ({})", job.stage, rel);
        }
        outputs.insert(name, store.put(&p)?);
    }
    let rec = Record {
        fingerprint: job.fingerprint.clone(),
        op: job.op.clone(),
        op_version: job.op_version,
        preimage: job.preimage.clone(),
        outputs,
        started,
        ended: now(),
        host: host(),
        nasflow_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    store.put_record(&rec)?;
    append_log(&job.log, &format!("== {} finished {}\n", job.stage, rec.ended));
    // Outputs are safe in the store; checkpoints for resuming are no longer needed.
    let _ = std::fs::remove_dir_all(&work_dir);
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok("ran")
}
