//! One stage, run in its own process (`nasflow exec-stage JOB`): the local
//! executor spawns it, a Slurm executor would sbatch the same command. It
//! takes the stage's lock, runs the op into a private folder, moves every
//! output into the store, and only then writes the record.

use super::lock::SharedLock;
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
    /// The device class the stage runs on ("cpu" or "cuda"), decided by the
    /// scheduler (`engine::device`) and already in `preimage`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Set when the fingerprint could not be known at submit time (Slurm:
    /// the parents had not run yet). `fingerprint`/`preimage` are then empty
    /// and the job computes them from its parents' records when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferred>,
}

fn default_device() -> String {
    super::device::CPU.to_string()
}

/// What a job needs to plan itself on the compute node. The job's
/// `preimage` already holds everything that does not depend on its parents
/// (params, data and dependency digests, computed at submit time on the
/// login node, the device class included); its `inputs` are filled in when
/// the job starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deferred {
    /// Per input port, its sources in order.
    pub inputs: BTreeMap<String, Vec<Source>>,
    /// The op folds a matrix: the port's digests form a list.
    pub folds: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Source {
    /// The parent job's private folder (its result.json names its fingerprint).
    pub job_dir: PathBuf,
    pub output: String,
    /// Where the input is laid out for the op (the parent's run-dir folder).
    pub path: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    /// ran | reused | failed
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    /// The fingerprint the job ran under (a deferred job learns it at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

pub fn lock_path(store: &Path, fingerprint: &str) -> PathBuf {
    store.join("locks").join(format!("{fingerprint}.lock"))
}

/// The body of `nasflow exec-stage`: never panics outward; the outcome is
/// written to `result.json` beside the job.
pub fn exec_stage(job_path: &Path, registry: &Registry) -> Result<()> {
    let text = std::fs::read_to_string(job_path).with_context(|| format!("cannot read job {}", job_path.display()))?;
    let mut job: Job = serde_json::from_str(&text).with_context(|| format!("job file {} is not valid", job_path.display()))?;
    let outcome = match job.deferred.take() {
        Some(d) => plan_now(&mut job, &d).and_then(|()| run_job(&job, registry)),
        None => run_job(&job, registry),
    };
    let fingerprint = (!job.fingerprint.is_empty()).then(|| job.fingerprint.clone());
    let result = match &outcome {
        Ok(status) => JobResult { status: status.to_string(), error: None, fingerprint },
        Err(e) => JobResult { status: "failed".into(), error: Some(format!("{e:#}")), fingerprint },
    };
    if let Err(e) = &outcome {
        append_log(&job.log, &format!("error: {e:#}\n"));
    }
    atomic::write_json(&job.dir.join("result.json"), &result)?;
    outcome.map(|_| ())
}

/// Plan a deferred job: read each parent's fingerprint from its result,
/// its outputs' digests from the store, lay the inputs out where the op
/// expects them, and compute this stage's preimage and fingerprint exactly
/// as the scheduler would have (so records are shared with local runs).
fn plan_now(job: &mut Job, d: &Deferred) -> Result<()> {
    let store = Store::open(&job.store)?;
    let mut inputs = BTreeMap::new();
    for (port, sources) in &d.inputs {
        let mut digests = Vec::new();
        for src in sources {
            let rpath = src.job_dir.join("result.json");
            let r: JobResult = std::fs::read(&rpath)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .with_context(|| format!("input `{port}`: the upstream job left no result at {} (did it run?)", rpath.display()))?;
            let fp = r.fingerprint.filter(|_| r.status != "failed").with_context(|| format!("input `{port}`: the upstream job failed ({})", rpath.display()))?;
            let rec = store.record(&fp).with_context(|| format!("input `{port}`: no record {fp} in the store {}", job.store.display()))?;
            let a = rec.outputs.get(&src.output).with_context(|| format!("input `{port}`: the upstream stage has no output `{}`", src.output))?;
            materialize_once(&store, a, &src.path)?;
            digests.push(Json::String(a.digest.clone()));
        }
        inputs.insert(port.clone(), if d.folds { Json::Array(digests) } else { digests.pop().unwrap_or(Json::Null) });
    }
    let mut pre = std::mem::take(&mut job.preimage);
    let obj = pre.as_object_mut().context("the deferred job's preimage is not an object (job file damaged?)")?;
    obj.insert("inputs".into(), serde_json::to_value(&inputs)?);
    // The device the submitter decided (the same binary decides it the same
    // way on every node), so records are shared with local runs.
    obj.insert("device".into(), Json::String(job.device.clone()));
    job.fingerprint = super::fingerprint::fingerprint(&pre);
    job.preimage = pre;
    Ok(())
}

/// Lay an artifact out at `dest` unless it is there already. Built aside and
/// renamed into place, so that a job reading `dest` while the scheduler (or a
/// sibling job) lays out the same output never sees half of a folder.
pub fn materialize_once(store: &Store, a: &super::store::Artifact, dest: &Path) -> Result<()> {
    if dest.symlink_metadata().is_ok() {
        return Ok(());
    }
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dest.with_file_name(format!(".{name}.tmp-{}-{}", std::process::id(), atomic::unique()));
    store.materialize(a, &tmp)?;
    if std::fs::rename(&tmp, dest).is_err() {
        // Someone else put it there first (a folder cannot be renamed over).
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_file(&tmp);
        if dest.symlink_metadata().is_err() {
            anyhow::bail!("cannot lay out {} in the run directory", dest.display());
        }
    }
    Ok(())
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
    // The shared lock also holds across nodes on NFS (owner file + heartbeat).
    let _lock = SharedLock::acquire(&lock_path(&job.store, &job.fingerprint))?;
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
    append_log(&job.log, &format!("== {} ({} v{}) started {started} on {} ({})\n", job.stage, job.op, job.op_version, host(), job.device));
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
        device: job.device.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path, device: &str) -> Job {
        Job {
            stage: "search".into(),
            op: "darts.search".into(),
            op_version: 1,
            fingerprint: String::new(),
            preimage: super::super::fingerprint::preimage("darts.search", 1, &BTreeMap::new(), &BTreeMap::new(), None, &BTreeMap::new(), "cpu"),
            params: BTreeMap::new(),
            inputs: BTreeMap::new(),
            data: None,
            base_dir: dir.to_path_buf(),
            store: dir.join("store"),
            dir: dir.join("job"),
            log: dir.join("log"),
            show_progress: false,
            device: device.into(),
            deferred: None,
        }
    }

    #[test]
    fn job_file_round_trips_the_device() {
        let tmp = tempfile::tempdir().unwrap();
        for device in ["cpu", "cuda"] {
            let text = serde_json::to_string(&job(tmp.path(), device)).unwrap();
            let back: Job = serde_json::from_str(&text).unwrap();
            assert_eq!(back.device, device);
        }
        // A job file written before the field existed runs on the CPU.
        let mut v = serde_json::to_value(job(tmp.path(), "cuda")).unwrap();
        v.as_object_mut().unwrap().remove("device");
        let old: Job = serde_json::from_value(v).unwrap();
        assert_eq!(old.device, "cpu");
    }

    #[test]
    fn a_deferred_job_plans_with_its_own_device() {
        // Slurm: the login node decided the device; the node must not replace it.
        let tmp = tempfile::tempdir().unwrap();
        for device in ["cpu", "cuda"] {
            let mut j = job(tmp.path(), device);
            let d = Deferred { inputs: BTreeMap::new(), folds: false };
            plan_now(&mut j, &d).unwrap();
            assert_eq!(j.preimage["device"], device);
            assert_eq!(j.fingerprint, super::super::fingerprint::fingerprint(&j.preimage));
        }
    }
}
