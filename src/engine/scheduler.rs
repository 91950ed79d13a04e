//! The local scheduler: walks the instance DAG, reuses every stage whose
//! fingerprint has a complete record, and runs the rest as `exec-stage`
//! child processes, up to `jobs` cores at once.

use super::device::{self, DevicePolicy};
use super::exec::{Job, JobResult};
use super::fingerprint::{fingerprint, preimage, DigestCache};
use super::op::{DataRef, Registry};
use super::rundir::{host, now, RunDir, RunInfo, StageRun, StageStatus};
use super::store::{Artifact, Store};
use super::atomic;
use crate::pipeline::{Dag, Pipeline};
use anyhow::{Context, Result};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RunOptions {
    pub runs_dir: PathBuf,
    pub store_dir: PathBuf,
    pub jobs: usize,
    pub overrides: Vec<String>,
    /// Print nothing but the final JSON.
    pub quiet: bool,
    pub interrupted: Arc<AtomicBool>,
    /// How each stage's device is picked (`--device`).
    pub device: DevicePolicy,
}

/// The cache folder: `NASFLOW_CACHE`, else `<runs-dir>/.cache`.
pub fn store_dir(runs_dir: &Path) -> PathBuf {
    match std::env::var_os("NASFLOW_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => runs_dir.join(".cache"),
    }
}

/// What a stage instance's fingerprint is made of, given its upstream outputs.
pub struct Planned {
    pub fingerprint: String,
    pub preimage: Json,
    pub data: Option<DataRef>,
    /// The device class the stage runs on ("cpu" or "cuda"), as in the preimage.
    pub device: &'static str,
}

pub fn plan(
    p: &Pipeline,
    dag: &Dag,
    idx: usize,
    outputs: &[Option<BTreeMap<String, Artifact>>],
    registry: &Registry,
    digests: &DigestCache,
    policy: DevicePolicy,
) -> Result<Planned> {
    let inst = &dag.instances[idx];
    let stage = &p.stages[inst.stage];
    let op = registry.get(&stage.op).context("unknown op")?;
    let mut params = stage.params.clone();
    for (k, v) in &inst.coords {
        if stage.matrix.contains_key(k) {
            params.insert(k.clone(), v.clone());
        }
    }
    let mut inputs = BTreeMap::new();
    for (name, srcs) in &inst.inputs {
        let mut ds = Vec::new();
        for (u, out) in srcs {
            let a = outputs[*u].as_ref().and_then(|o| o.get(out)).with_context(|| format!("upstream `{}` has no output `{out}`", dag.instances[*u].id))?;
            ds.push(Json::String(a.digest.clone()));
        }
        inputs.insert(name.clone(), if op.folds_matrix { Json::Array(ds) } else { ds.pop().unwrap_or(Json::Null) });
    }
    let data = match &stage.data {
        Some(name) => {
            let spec = p.data.get(name).context("unknown data set")?;
            Some((name.clone(), spec.format.clone(), spec.path.clone()))
        }
        None => None,
    };
    let data_digest = match &data {
        Some((name, format, path)) => Some((format.clone(), digests.digest(path).map_err(|e| missing_data(p, name, format, path, e))?)),
        None => None,
    };
    let mut deps = BTreeMap::new();
    if let Some(key) = op.dep_param {
        if let Some(Json::Array(list)) = params.get(key) {
            for d in list.iter().filter_map(Json::as_str) {
                let path = stage.base_dir.join(d);
                let digest = digests.digest(&path).with_context(|| format!("stage `{}`: dependency `{d}` not found ({})", inst.id, path.display()))?;
                deps.insert(d.to_string(), digest);
            }
        }
    }
    let device = policy.stage_device(op.uses_device, stage.resources.gpus.unwrap_or(0));
    let pre = preimage(op.name, op.version, &params, &inputs, data_digest.as_ref().map(|(f, d)| (f.as_str(), d.as_str())), &deps, device);
    Ok(Planned {
        fingerprint: fingerprint(&pre),
        preimage: pre,
        data: data.map(|(name, format, path)| DataRef { name, format, path }),
        device,
    })
}

fn missing_data(p: &Pipeline, name: &str, format: &str, path: &Path, e: anyhow::Error) -> anyhow::Error {
    if path.exists() {
        return e.context(format!("cannot read data set `{name}` at {}", path.display()));
    }
    anyhow::anyhow!("data set `{name}` (format {format}) not found at {}: put the files there or change its `path:` in {} (see datasets/README.md)", path.display(), p.file.display())
}

/// Every data set a stage reads must exist before anything runs.
pub fn check_data(p: &Pipeline) -> Result<()> {
    for s in &p.stages {
        if let Some(name) = &s.data {
            if let Some(spec) = p.data.get(name) {
                if !spec.path.exists() {
                    return Err(missing_data(p, name, &spec.format, &spec.path, anyhow::anyhow!("missing")));
                }
            }
        }
    }
    Ok(())
}

enum State {
    Pending,
    Running { child: Child, dir: PathBuf, started: Instant },
    Done(BTreeMap<String, Artifact>),
    Failed,
}

pub fn run(p: &Pipeline, registry: &Registry, opts: &RunOptions) -> Result<RunDir> {
    // Before the run directory or the cache is touched.
    opts.device.check()?;
    let dag = Dag::build(p, registry).map_err(|_| anyhow::anyhow!("the stages form a cycle"))?;
    let store = Store::open(&opts.store_dir)?;
    let digests = DigestCache::open(&opts.store_dir);
    let mut rd = new_run(p, &dag, registry, opts, "local")?;
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };
    say(format!("run {} ({})", rd.info.id, rd.path.display()));

    let n = dag.instances.len();
    let mut state: Vec<State> = (0..n).map(|_| State::Pending).collect();
    // Progress bars need the terminal to themselves: only a stage that starts
    // while nothing else runs draws them (one stage's bars at a time).
    let tty = std::io::stderr().is_terminal() && !opts.quiet;
    let exe = std::env::current_exe().context("cannot find the nasflow executable")?;
    let cpus_of = |i: usize| p.stages[dag.instances[i].stage].resources.cpus.unwrap_or(1).clamp(1, opts.jobs as u64) as usize;
    let mut busy = 0usize;
    // One GPU (device 0): one CUDA stage at a time.
    let mut on_gpu: Vec<bool> = vec![false; n];
    loop {
        let interrupted = opts.interrupted.load(Ordering::SeqCst);
        // Collect finished children.
        for i in 0..n {
            let State::Running { child, dir, started } = &mut state[i] else { continue };
            let Some(exit) = child.try_wait()? else { continue };
            let secs = started.elapsed().as_secs_f64();
            let dir = dir.clone();
            busy -= cpus_of(i);
            on_gpu[i] = false;
            let result: Option<JobResult> = std::fs::read(dir.join("result.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let sr = &mut rd.info.stages[i];
            sr.end = Some(now());
            sr.seconds = Some(secs);
            let fp = sr.fingerprint.clone().unwrap_or_default();
            match (exit.success(), result) {
                (true, Some(r)) if r.status != "failed" => match store.record(&fp) {
                    Some(rec) => {
                        sr.status = if r.status == "reused" { StageStatus::Reused } else { StageStatus::Ran };
                        finish(&store, &rd, i, &rec.outputs, registry)?;
                        let sr = &mut rd.info.stages[i];
                        sr.outputs = rec.outputs.clone();
                        sr.metrics = headline(&store, &rec.outputs);
                        say(format!("  {:<7} {}  ({})", sr.status.as_str(), sr.name, human(secs)));
                        state[i] = State::Done(rec.outputs);
                    }
                    None => {
                        sr.status = StageStatus::Failed;
                        sr.error = Some("the stage finished but left no record".into());
                        state[i] = State::Failed;
                    }
                },
                (_, r) => {
                    sr.status = StageStatus::Failed;
                    let why = r.and_then(|r| r.error).unwrap_or_else(|| {
                        if interrupted { "interrupted".into() } else { format!("the stage process exited with {exit}") }
                    });
                    say(format!("  failed  {}  ({}): {}\n          log: {}", sr.name, human(secs), why, rd.path.join(&sr.log).display()));
                    sr.error = Some(why);
                    state[i] = State::Failed;
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
            rd.save()?;
        }
        if interrupted {
            for (i, s) in state.iter_mut().enumerate() {
                if let State::Running { child, dir, .. } = s {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(&*dir);
                    rd.info.stages[i].status = StageStatus::Failed;
                    rd.info.stages[i].error = Some("interrupted".into());
                    rd.info.stages[i].end = Some(now());
                    *s = State::Failed;
                }
            }
            break;
        }
        // Start what is ready.
        let mut progressed = false;
        for i in 0..n {
            if !matches!(state[i], State::Pending) {
                continue;
            }
            let deps = &dag.instances[i].deps;
            if deps.iter().any(|&d| matches!(state[d], State::Failed) || rd.info.stages[d].status == StageStatus::Skipped) {
                rd.info.stages[i].status = StageStatus::Skipped;
                rd.info.stages[i].error = Some("an upstream stage failed".into());
                say(format!("  skipped {}  (upstream failed)", rd.info.stages[i].name));
                state[i] = State::Failed;
                progressed = true;
                continue;
            }
            if !deps.iter().all(|&d| matches!(state[d], State::Done(_))) {
                continue;
            }
            let outputs: Vec<Option<BTreeMap<String, Artifact>>> = state.iter().map(|s| if let State::Done(o) = s { Some(o.clone()) } else { None }).collect();
            let planned = match plan(p, &dag, i, &outputs, registry, &digests, opts.device) {
                Ok(pl) => pl,
                Err(e) => {
                    let sr = &mut rd.info.stages[i];
                    sr.status = StageStatus::Failed;
                    sr.error = Some(format!("{e:#}"));
                    say(format!("  failed  {}: {e:#}", sr.name));
                    state[i] = State::Failed;
                    progressed = true;
                    continue;
                }
            };
            let inputs = input_paths(p, &dag, registry, &rd, i);
            let sr = &mut rd.info.stages[i];
            sr.fingerprint = Some(planned.fingerprint.clone());
            sr.preimage = Some(planned.preimage.clone());
            // Reuse when a complete, intact record exists.
            if let Some(rec) = store.record(&planned.fingerprint) {
                match rec.outputs.values().try_for_each(|a| store.verify(a)) {
                    Ok(()) => {
                        sr.status = StageStatus::Reused;
                        sr.outputs = rec.outputs.clone();
                        sr.metrics = headline(&store, &rec.outputs);
                        sr.start = Some(rec.started.clone());
                        sr.end = Some(rec.ended.clone());
                        say(format!("  reused  {}", sr.name));
                        finish(&store, &rd, i, &rec.outputs, registry)?;
                        state[i] = State::Done(rec.outputs);
                        progressed = true;
                        continue;
                    }
                    Err(e) => {
                        say(format!("  warning: {}: {e:#}; recomputing the stage", sr.name));
                        store.drop_record(&planned.fingerprint);
                    }
                }
            }
            let need = cpus_of(i);
            if busy + need > opts.jobs && busy > 0 {
                continue;
            }
            let gpu = planned.device == device::CUDA;
            if gpu && on_gpu.iter().any(|&g| g) {
                continue;
            }
            let st = &p.stages[dag.instances[i].stage];
            if st.resources.gpus.unwrap_or(0) > 0 && opts.device == DevicePolicy::Auto && !device::cuda_built() {
                say(format!("  note: {} asks for {} GPU(s); this nasflow has no CUDA, so it runs on the CPU", sr.name, st.resources.gpus.unwrap_or(0)));
            }
            let op = registry.get(&st.op).context("unknown op")?;
            let params = instance_params(p, &dag, i);
            let dir = store.tmp_dir().join(format!("{}-{}-{}", &planned.fingerprint[..16], std::process::id(), super::atomic::unique()));
            std::fs::create_dir_all(&dir)?;
            let job = Job {
                stage: dag.instances[i].id.clone(),
                op: op.name.to_string(),
                op_version: op.version,
                fingerprint: planned.fingerprint.clone(),
                preimage: planned.preimage.clone(),
                params,
                inputs,
                data: planned.data.clone(),
                base_dir: st.base_dir.canonicalize().unwrap_or(st.base_dir.clone()),
                store: std::fs::canonicalize(&opts.store_dir).unwrap_or(opts.store_dir.clone()),
                dir: std::fs::canonicalize(&dir).unwrap_or(dir.clone()),
                log: std::fs::canonicalize(&rd.path).unwrap_or(rd.path.clone()).join(&sr.log),
                show_progress: tty && busy == 0,
                device: planned.device.to_string(),
                deferred: None,
            };
            let job_path = dir.join("job.json");
            atomic::write_json(&job_path, &job)?;
            let child = spawn_stage(&exe, &job_path, opts.quiet)?;
            sr.status = StageStatus::Running;
            sr.start = Some(now());
            say(format!("  running {}", sr.name));
            busy += need;
            on_gpu[i] = gpu;
            state[i] = State::Running { child, dir, started: Instant::now() };
            progressed = true;
        }
        if progressed {
            rd.save()?;
        }
        let running = state.iter().any(|s| matches!(s, State::Running { .. }));
        let pending = state.iter().any(|s| matches!(s, State::Pending));
        if !running && !pending {
            break;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    digests.save();
    let interrupted = opts.interrupted.load(Ordering::SeqCst);
    let failed = state.iter().any(|s| matches!(s, State::Failed));
    rd.info.status = if interrupted { "interrupted" } else if failed { "failed" } else { "ok" }.into();
    rd.info.ended = Some(now());
    rd.save()?;
    Ok(rd)
}

/// A new run directory with every stage instance pending, the resolved
/// pipeline and its source file beside run.json (shared by the executors).
pub(crate) fn new_run(p: &Pipeline, dag: &Dag, registry: &Registry, opts: &RunOptions, executor: &str) -> Result<RunDir> {
    let stages: Vec<StageRun> = dag
        .instances
        .iter()
        .map(|i| {
            let st = &p.stages[i.stage];
            let op = registry.get(&st.op);
            StageRun {
                name: i.id.clone(),
                stage: st.name.clone(),
                op: st.op.clone(),
                op_version: op.map(|o| o.version).unwrap_or(0),
                coords: i.coords.clone(),
                status: StageStatus::Pending,
                fingerprint: None,
                preimage: None,
                start: None,
                end: None,
                seconds: None,
                outputs: BTreeMap::new(),
                metrics: None,
                error: None,
                log: format!("logs/{}.log", i.id),
                job: None,
            }
        })
        .collect();
    let info = RunInfo {
        id: String::new(),
        pipeline: p.name.clone(),
        file: p.file.display().to_string(),
        started: now(),
        ended: None,
        status: "running".into(),
        host: host(),
        nasflow_version: env!("CARGO_PKG_VERSION").to_string(),
        executor: executor.into(),
        overrides: opts.overrides.clone(),
        stages,
    };
    let rd = RunDir::create(&opts.runs_dir, &p.name, info)?;
    atomic::write_json(&rd.path.join("pipeline.json"), p)?;
    if let Ok(text) = std::fs::read(&p.file) {
        atomic::write(&rd.path.join("pipeline.yaml"), &text)?;
    }
    Ok(rd)
}

/// Per input port, the paths (in the run directory) of the outputs it reads.
pub(crate) fn input_paths(p: &Pipeline, dag: &Dag, registry: &Registry, rd: &RunDir, i: usize) -> BTreeMap<String, Vec<PathBuf>> {
    let mut inputs = BTreeMap::new();
    for (name, srcs) in &dag.instances[i].inputs {
        let paths: Vec<PathBuf> = srcs.iter().map(|(u, out)| output_path(p, dag, registry, rd, *u, out)).collect();
        inputs.insert(name.clone(), paths);
    }
    inputs
}

/// Where instance `u`'s output `out` is laid out in the run directory.
pub(crate) fn output_path(p: &Pipeline, dag: &Dag, registry: &Registry, rd: &RunDir, u: usize, out: &str) -> PathBuf {
    let ust = &p.stages[dag.instances[u].stage];
    let uop = registry.get(&ust.op);
    let rel = uop.and_then(|o| o.output_ports(&ust.params).into_iter().find(|(n, _)| n == out).map(|(_, r)| r)).unwrap_or(out.to_string());
    rd.stage_dir(&dag.instances[u].id).join(rel)
}

/// A stage instance's params: the stage's, with its matrix coordinates.
pub(crate) fn instance_params(p: &Pipeline, dag: &Dag, i: usize) -> BTreeMap<String, Json> {
    let st = &p.stages[dag.instances[i].stage];
    let mut params = st.params.clone();
    for (k, v) in &dag.instances[i].coords {
        if st.matrix.contains_key(k) {
            params.insert(k.clone(), v.clone());
        }
    }
    params
}

fn spawn_stage(exe: &Path, job: &Path, quiet: bool) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.arg("exec-stage").arg(job).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    if quiet {
        cmd.stderr(std::process::Stdio::null());
    }
    // The stage dies with the scheduler (kill -9 included): no orphan keeps
    // writing after its run was abandoned.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))
}

/// Lay a finished stage's outputs out in the run directory.
pub(crate) fn finish(store: &Store, rd: &RunDir, i: usize, outputs: &BTreeMap<String, Artifact>, registry: &Registry) -> Result<()> {
    let inst = &rd.info.stages[i];
    let dir = rd.stage_dir(&inst.name);
    std::fs::create_dir_all(&dir)?;
    let ports: BTreeMap<String, String> = registry.get(&inst.op).map(|o| o.output_ports(&params_of(rd, i)).into_iter().collect()).unwrap_or_default();
    for (name, a) in outputs {
        let rel = ports.get(name).cloned().unwrap_or(name.clone());
        store.materialize(a, &dir.join(rel))?;
    }
    Ok(())
}

fn params_of(rd: &RunDir, i: usize) -> BTreeMap<String, Json> {
    rd.info.stages[i]
        .preimage
        .as_ref()
        .and_then(|p| p.get("params"))
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default()
}

/// A stage's headline metrics: its `metrics` output, when that is a JSON object.
pub(crate) fn headline(store: &Store, outputs: &BTreeMap<String, Artifact>) -> Option<Json> {
    let a = outputs.get("metrics")?;
    if a.kind != super::store::Kind::File {
        return None;
    }
    let bytes = std::fs::read(store.object_path(&a.digest)).ok()?;
    let v: Json = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

pub fn human(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (secs / 3600.0) as u64, ((secs % 3600.0) / 60.0) as u64)
    }
}
