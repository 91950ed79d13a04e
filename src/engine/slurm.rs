//! The Slurm executor: every stale stage instance becomes an `sbatch` job
//! that runs `nasflow exec-stage` on a compute node.
//!
//! The whole stale part of the DAG is submitted at once, each stage as one
//! job (a job array when it has several matrix cells) with
//! `--dependency=afterok:` on its parents' jobs. A stage's fingerprint needs
//! its inputs' digests, which exist only after the parents ran, so a
//! submitted job is *deferred* (see `exec::Deferred`): it computes its
//! fingerprint on the node from its parents' results and records, and may
//! still find a record there and reuse it (early cutoff).
//!
//! This process (on the login node) then follows the jobs by polling
//! `squeue`; a job's `result.json` on the shared file system is the truth
//! about how it ended, and `sacct` / `scontrol show job` say why a job that
//! left none ended (timeout, cancelled, out of memory, node failure).

use super::exec::{materialize_once, Deferred, Job, JobResult, Source};
use super::device::{self, DevicePolicy};
use super::fingerprint::DigestCache;
use super::op::Registry;
use super::rundir::{list_runs, now, RunDir, RunInfo, StageStatus};
use super::scheduler::{self, headline, RunOptions};
use super::store::{Artifact, Kind, Store};
use super::atomic;
use crate::pipeline::{Dag, Pipeline};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
}

/// How often squeue is asked (`NASFLOW_SLURM_POLL`, seconds; default 2).
fn poll_interval() -> Duration {
    let secs = std::env::var("NASFLOW_SLURM_POLL").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// A job's private folder: `<run>/.slurm/<instance index>/`.
fn job_dir(rd: &RunDir, i: usize) -> PathBuf {
    rd.path.join(".slurm").join(i.to_string())
}

/// The job id a stage's task carries: `123` or `123_4` in an array; the
/// part before `_` is what scancel and dependencies name.
fn group_of(task: &str) -> &str {
    task.split('_').next().unwrap_or(task)
}

pub fn run(p: &Pipeline, registry: &Registry, opts: &RunOptions, so: &SlurmOptions) -> Result<RunDir> {
    // Before anything is submitted or written.
    opts.device.check()?;
    let dag = Dag::build(p, registry).map_err(|_| anyhow::anyhow!("the stages form a cycle"))?;
    let store = Store::open(&opts.store_dir)?;
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };
    if Command::new("sbatch").arg("--version").output().is_err() {
        bail!("--executor slurm needs Slurm's `sbatch` on PATH (run nasflow on the cluster's login node, or use --executor local)");
    }
    // A second `nasflow run` while the first one's jobs are in flight follows
    // those jobs instead of submitting the same stages again.
    if let Some((path, info)) = in_flight(&opts.runs_dir, p, &opts.overrides) {
        let mut rd = RunDir { path, info };
        say(format!("run {} ({}) has Slurm jobs in flight: following them", rd.info.id, rd.path.display()));
        follow(&mut rd, &dag, &store, registry, opts)?;
        return Ok(rd);
    }
    let digests = DigestCache::open(&opts.store_dir);
    let mut rd = scheduler::new_run(p, &dag, registry, opts, "slurm")?;
    say(format!("run {} ({})", rd.info.id, rd.path.display()));
    let stale = plan_locally(p, &dag, registry, &store, &digests, &mut rd, opts.device, &say)?;
    digests.save();
    rd.save()?;
    if let Err(e) = submit(p, &dag, registry, opts, so, &mut rd, &stale, &say) {
        // Nothing half-submitted stays queued.
        let groups: BTreeSet<String> = rd.info.stages.iter().filter_map(|s| s.job.as_deref().map(|j| group_of(j).to_string())).collect();
        scancel(&groups.into_iter().collect::<Vec<_>>());
        for s in rd.info.stages.iter_mut().filter(|s| matches!(s.status, StageStatus::Pending | StageStatus::Running)) {
            s.status = StageStatus::Failed;
            s.error = Some(format!("not submitted: {e:#}"));
        }
        rd.info.status = "failed".into();
        rd.info.ended = Some(now());
        rd.save()?;
        return Err(e);
    }
    rd.save()?;
    follow(&mut rd, &dag, &store, registry, opts)?;
    Ok(rd)
}

/// Walk the DAG in order on the login node: a stage whose parents are all
/// known and whose fingerprint has an intact record is reused (nothing is
/// submitted); the rest is stale and returned in submission order.
#[allow(clippy::too_many_arguments)]
fn plan_locally(p: &Pipeline, dag: &Dag, registry: &Registry, store: &Store, digests: &DigestCache, rd: &mut RunDir, policy: DevicePolicy, say: &dyn Fn(String)) -> Result<Vec<usize>> {
    let n = dag.instances.len();
    let order = topo_order(dag);
    let mut known: Vec<Option<BTreeMap<String, Artifact>>> = vec![None; n];
    let mut stale = Vec::new();
    for &i in &order {
        let deps = &dag.instances[i].deps;
        if deps.iter().any(|&d| matches!(rd.info.stages[d].status, StageStatus::Failed | StageStatus::Skipped)) {
            rd.info.stages[i].status = StageStatus::Skipped;
            rd.info.stages[i].error = Some("an upstream stage failed".into());
            say(format!("  skipped {}  (upstream failed)", rd.info.stages[i].name));
            continue;
        }
        // Parents not yet run stand in as placeholders: only the parts of
        // the preimage that do not depend on them are used (see Deferred).
        let all_known = deps.iter().all(|&d| known[d].is_some());
        let mut outputs = known.clone();
        for (u, out) in dag.instances[i].inputs.values().flatten() {
            if known[*u].is_none() {
                outputs[*u].get_or_insert_with(BTreeMap::new).insert(out.clone(), Artifact { kind: Kind::File, digest: String::new() });
            }
        }
        let planned = match scheduler::plan(p, dag, i, &outputs, registry, digests, policy) {
            Ok(pl) => pl,
            Err(e) => {
                let sr = &mut rd.info.stages[i];
                sr.status = StageStatus::Failed;
                sr.error = Some(format!("{e:#}"));
                say(format!("  failed  {}: {e:#}", sr.name));
                continue;
            }
        };
        if all_known {
            if let Some(rec) = store.record(&planned.fingerprint).filter(|r| r.outputs.values().all(|a| store.verify(a).is_ok())) {
                let sr = &mut rd.info.stages[i];
                sr.fingerprint = Some(planned.fingerprint.clone());
                sr.preimage = Some(planned.preimage.clone());
                sr.status = StageStatus::Reused;
                sr.metrics = headline(store, &rec.outputs);
                sr.outputs = rec.outputs.clone();
                sr.start = Some(rec.started.clone());
                sr.end = Some(rec.ended.clone());
                say(format!("  reused  {}", sr.name));
                lay_out(store, rd, registry, i, &rec.outputs)?;
                // Deferred children read a parent's fingerprint from its job folder.
                let dir = job_dir(rd, i);
                atomic::write_json(&dir.join("result.json"), &JobResult { status: "reused".into(), error: None, fingerprint: Some(planned.fingerprint.clone()) })?;
                known[i] = Some(rec.outputs);
                continue;
            }
        }
        rd.info.stages[i].preimage = Some(planned.preimage);
        stale.push(i);
    }
    Ok(stale)
}

fn topo_order(dag: &Dag) -> Vec<usize> {
    let n = dag.instances.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let before = order.len();
        for i in 0..n {
            if !done[i] && dag.instances[i].deps.iter().all(|&d| done[d]) {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            break; // a cycle; Dag::build has refused those already
        }
    }
    order
}

/// Lay a finished stage's outputs out in the run directory (never replacing
/// what a job on a node may be reading).
fn lay_out(store: &Store, rd: &RunDir, registry: &Registry, i: usize, outputs: &BTreeMap<String, Artifact>) -> Result<()> {
    let sr = &rd.info.stages[i];
    let params = sr.preimage.as_ref().and_then(|p| p.get("params")).and_then(|p| serde_json::from_value(p.clone()).ok()).unwrap_or_default();
    let ports: BTreeMap<String, String> = registry.get(&sr.op).map(|o| o.output_ports(&params).into_iter().collect()).unwrap_or_default();
    let dir = rd.stage_dir(&sr.name);
    std::fs::create_dir_all(&dir)?;
    for (name, a) in outputs {
        let rel = ports.get(name).cloned().unwrap_or(name.clone());
        materialize_once(store, a, &dir.join(rel))?;
    }
    Ok(())
}

/// Write the jobs and sbatch one job (or array) per stage, parents first.
#[allow(clippy::too_many_arguments)]
fn submit(p: &Pipeline, dag: &Dag, registry: &Registry, opts: &RunOptions, so: &SlurmOptions, rd: &mut RunDir, stale: &[usize], say: &dyn Fn(String)) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the nasflow executable")?;
    let store_abs = std::fs::canonicalize(&opts.store_dir).unwrap_or(opts.store_dir.clone());
    let run_abs = std::fs::canonicalize(&rd.path).unwrap_or(rd.path.clone());
    rd.path = run_abs.clone();
    // Stage index -> its stale instances, in DAG order.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in stale {
        groups.entry(dag.instances[i].stage).or_default().push(i);
    }
    let stale_set: BTreeSet<usize> = stale.iter().copied().collect();
    let mut job_of_stage: BTreeMap<usize, String> = BTreeMap::new();
    while job_of_stage.len() < groups.len() {
        let before = job_of_stage.len();
        for (&stage, members) in &groups {
            if job_of_stage.contains_key(&stage) {
                continue;
            }
            let parents: BTreeSet<usize> = members.iter().flat_map(|&i| dag.instances[i].deps.iter().copied()).filter(|d| stale_set.contains(d)).map(|d| dag.instances[d].stage).collect();
            if !parents.iter().all(|s| job_of_stage.contains_key(s)) {
                continue;
            }
            let after: Vec<&str> = parents.iter().map(|s| job_of_stage[s].as_str()).collect();
            let mut script = String::from("#!/bin/sh\n# written by nasflow: runs one stage job (an array task picks its job file)\ncase \"${SLURM_ARRAY_TASK_ID:-0}\" in\n");
            for (k, &i) in members.iter().enumerate() {
                let job = write_job(p, dag, registry, rd, &store_abs, i)?;
                script.push_str(&format!("  {k}) job={} ;;\n", sh_quote(&job)));
            }
            script.push_str(&format!("esac\nexec {} exec-stage \"$job\"\n", sh_quote(&exe)));
            let st = &p.stages[stage];
            let script_path = run_abs.join(".slurm").join(format!("{}.sh", safe(&st.name)));
            atomic::write(&script_path, script.as_bytes())?;
            let mut args: Vec<String> = vec!["--parsable".into(), format!("--job-name=nasflow:{}:{}", p.name, st.name), format!("--chdir={}", run_abs.display())];
            let log = |pat: &str| run_abs.join("logs").join(format!("slurm-{}-{pat}.out", safe(&st.name))).display().to_string();
            if members.len() > 1 {
                args.push(format!("--array=0-{}", members.len() - 1));
                args.push(format!("--output={}", log("%A_%a")));
            } else {
                args.push(format!("--output={}", log("%j")));
            }
            if !after.is_empty() {
                args.push(format!("--dependency=afterok:{}", after.join(":")));
                // Should this process die, Slurm itself drops jobs whose
                // parents failed instead of leaving them pending forever.
                args.push("--kill-on-invalid-dep=yes".into());
            }
            // The cells of one stage share their op and resources, so their device.
            let dev = members.first().map(|&i| job_device(&rd.info.stages[i].preimage)).unwrap_or_default();
            args.extend(resource_args(&st.resources, &dev));
            if let Some(part) = &so.partition {
                args.push(format!("--partition={part}"));
            }
            if let Some(acct) = &so.account {
                args.push(format!("--account={acct}"));
            }
            args.push(script_path.display().to_string());
            let id = sbatch(&args).with_context(|| format!("sbatch refused stage `{}`", st.name))?;
            for (k, &i) in members.iter().enumerate() {
                let sr = &mut rd.info.stages[i];
                sr.job = Some(if members.len() > 1 { format!("{id}_{k}") } else { id.clone() });
                sr.status = StageStatus::Pending;
            }
            say(format!(
                "  submitted {}  (job {id}{}{})",
                st.name,
                if members.len() > 1 { format!(", array of {}", members.len()) } else { String::new() },
                if after.is_empty() { String::new() } else { format!(", after {}", after.join(",")) }
            ));
            job_of_stage.insert(stage, id);
            rd.save()?;
        }
        if job_of_stage.len() == before {
            bail!("internal error: the stale stages could not be ordered for submission");
        }
    }
    Ok(())
}

/// Write instance `i`'s deferred job file; returns its path.
fn write_job(p: &Pipeline, dag: &Dag, registry: &Registry, rd: &RunDir, store_abs: &Path, i: usize) -> Result<PathBuf> {
    let inst = &dag.instances[i];
    let st = &p.stages[inst.stage];
    let op = registry.get(&st.op).context("unknown op")?;
    let dir = job_dir(rd, i);
    std::fs::create_dir_all(&dir)?;
    let mut sources = BTreeMap::new();
    for (port, srcs) in &inst.inputs {
        let v: Vec<Source> = srcs.iter().map(|(u, out)| Source { job_dir: job_dir(rd, *u), output: out.clone(), path: scheduler::output_path(p, dag, registry, rd, *u, out) }).collect();
        sources.insert(port.clone(), v);
    }
    let planned_data = st.data.as_ref().and_then(|name| p.data.get(name).map(|spec| super::op::DataRef { name: name.clone(), format: spec.format.clone(), path: spec.path.clone() }));
    let job = Job {
        stage: inst.id.clone(),
        op: op.name.to_string(),
        op_version: op.version,
        fingerprint: String::new(),
        preimage: rd.info.stages[i].preimage.clone().unwrap_or_default(),
        params: scheduler::instance_params(p, dag, i),
        inputs: scheduler::input_paths(p, dag, registry, rd, i),
        data: planned_data,
        base_dir: st.base_dir.canonicalize().unwrap_or(st.base_dir.clone()),
        store: store_abs.to_path_buf(),
        dir: dir.clone(),
        log: rd.path.join(&rd.info.stages[i].log),
        show_progress: false,
        device: job_device(&rd.info.stages[i].preimage),
        deferred: Some(Deferred { inputs: sources, folds: op.folds_matrix }),
    };
    let path = dir.join("job.json");
    atomic::write_json(&path, &job)?;
    Ok(path)
}

/// The device class planned into a stage's preimage (the login node decided it).
fn job_device(preimage: &Option<serde_json::Value>) -> String {
    preimage.as_ref().and_then(|p| p.get("device")).and_then(|d| d.as_str()).unwrap_or(device::CPU).to_string()
}

/// A stage's `resources` as sbatch options; a stage that runs on CUDA gets
/// a GPU even when its `resources` name none (`--device cuda`).
fn resource_args(r: &crate::pipeline::load::Resources, device: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(c) = r.cpus {
        v.push(format!("--cpus-per-task={c}"));
    }
    match r.gpus.filter(|g| *g > 0) {
        Some(g) => v.push(format!("--gres=gpu:{g}")),
        None if device == device::CUDA => v.push("--gres=gpu:1".into()),
        None => {}
    }
    if let Some(m) = &r.mem {
        v.push(format!("--mem={m}"));
    }
    if let Some(t) = &r.time {
        v.push(format!("--time={t}"));
    }
    v
}

fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

fn sbatch(args: &[String]) -> Result<String> {
    let out = Command::new("sbatch").args(args).output().context("cannot run sbatch")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    // --parsable prints `jobid` or `jobid;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id: {}", text.trim());
    }
    Ok(id)
}

/// Queue state of the given jobs' tasks: task id -> (state, reason).
/// Finished jobs are absent. An error means squeue itself did not answer.
fn squeue(groups: &[String]) -> Result<BTreeMap<String, (String, String)>> {
    let mut map = BTreeMap::new();
    if groups.is_empty() {
        return Ok(map);
    }
    let out = Command::new("squeue").args(["-h", "-r", "-o", "%i|%T|%r", "-j", &groups.join(",")]).output().context("cannot run squeue")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Every listed job has left the controller's memory: none queued.
        if err.contains("Invalid job id") {
            return Ok(map);
        }
        bail!("squeue failed: {}", err.trim());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('|');
        if let (Some(id), Some(state), reason) = (f.next(), f.next(), f.next()) {
            map.insert(id.trim().to_string(), (state.trim().to_string(), reason.unwrap_or("").trim().to_string()));
        }
    }
    Ok(map)
}

fn scancel(groups: &[String]) {
    if !groups.is_empty() {
        let _ = Command::new("scancel").args(groups).output();
    }
}

/// How a job that left no result ended: sacct where accounting exists,
/// else `scontrol show job` (finished jobs stay there for MinJobAge).
fn final_state(task: &str) -> Option<String> {
    if let Ok(out) = Command::new("sacct").args(["-n", "-P", "-X", "-o", "JobID,State", "-j", task]).output() {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(state) = text.lines().find_map(|l| l.split_once('|').filter(|(id, _)| *id == task).map(|(_, s)| s.to_string())) {
                return Some(state);
            }
        }
    }
    let out = Command::new("scontrol").args(["show", "job", "-o", task]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().find_map(|kv| kv.strip_prefix("JobState=").map(str::to_string))
}

/// Follow the run's submitted jobs until none is queued or running, keeping
/// run.json up to date. Used both after submitting and when attaching.
fn follow(rd: &mut RunDir, dag: &Dag, store: &Store, registry: &Registry, opts: &RunOptions) -> Result<()> {
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };
    let poll = poll_interval();
    let n = rd.info.stages.len();
    let mut misses = vec![0u32; n];
    let mut seen_running: Vec<Option<Instant>> = vec![None; n];
    let mut squeue_errors = 0u32;
    let mut last_summary = String::new();
    let open = |rd: &RunDir, i: usize| rd.info.stages[i].job.is_some() && matches!(rd.info.stages[i].status, StageStatus::Pending | StageStatus::Running);
    loop {
        if opts.interrupted.load(Ordering::SeqCst) {
            let groups: BTreeSet<String> = (0..n).filter(|&i| open(rd, i)).filter_map(|i| rd.info.stages[i].job.as_deref().map(|j| group_of(j).to_string())).collect();
            scancel(&groups.iter().cloned().collect::<Vec<_>>());
            if !groups.is_empty() {
                say(format!("  cancelled Slurm jobs {}", groups.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
            for i in (0..n).filter(|&i| open(rd, i)).collect::<Vec<_>>() {
                let sr = &mut rd.info.stages[i];
                sr.status = StageStatus::Failed;
                sr.error = Some("interrupted".into());
                sr.end = Some(now());
            }
            rd.info.status = "interrupted".into();
            break;
        }
        let live: Vec<usize> = (0..n).filter(|&i| open(rd, i)).collect();
        if live.is_empty() {
            let failed = rd.info.stages.iter().any(|s| matches!(s.status, StageStatus::Failed | StageStatus::Skipped));
            rd.info.status = if failed { "failed" } else { "ok" }.into();
            break;
        }
        let groups: BTreeSet<String> = live.iter().filter_map(|&i| rd.info.stages[i].job.as_deref().map(|j| group_of(j).to_string())).collect();
        // Ask the queue first, then look for results: a job absent from the
        // queue has ended, so its result (if any) is already on disk.
        let queue = match squeue(&groups.into_iter().collect::<Vec<_>>()) {
            Ok(q) => {
                squeue_errors = 0;
                Some(q)
            }
            Err(e) => {
                squeue_errors += 1;
                if squeue_errors == 3 {
                    say(format!("  warning: {e:#}; still trying (Ctrl-C cancels the jobs)"));
                }
                None
            }
        };
        let mut changed = false;
        for &i in &live {
            if !open(rd, i) {
                continue; // skipped by a cascade earlier in this pass
            }
            let dir = job_dir(rd, i);
            let task = rd.info.stages[i].job.clone().unwrap_or_default();
            if let Some(r) = read_result(&dir) {
                complete(rd, store, registry, dag, i, r, seen_running[i], &say)?;
                changed = true;
                continue;
            }
            let Some(queue) = &queue else { continue };
            match queue.get(&task) {
                Some((state, reason)) => {
                    misses[i] = 0;
                    if state == "PENDING" && reason.contains("DependencyNeverSatisfied") {
                        fail(rd, i, "an upstream stage failed".into(), StageStatus::Skipped, &say);
                        cascade(rd, dag, &say);
                        changed = true;
                    } else if matches!(state.as_str(), "RUNNING" | "COMPLETING" | "CONFIGURING") && rd.info.stages[i].status != StageStatus::Running {
                        let sr = &mut rd.info.stages[i];
                        sr.status = StageStatus::Running;
                        sr.start = Some(now());
                        seen_running[i] = Some(Instant::now());
                        say(format!("  running {}  (job {task})", sr.name));
                        changed = true;
                    }
                }
                None => {
                    misses[i] += 1;
                    // Twice absent with no result (allowing for NFS caches): it
                    // was killed, timed out, cancelled, or its node died.
                    if misses[i] >= 2 {
                        let state = final_state(&task).unwrap_or_else(|| "gone from the queue".into());
                        let why = format!("Slurm job {task} ended {state} without a result (see {}); its checkpoints are kept: run again to resume", rd.path.join("logs").display());
                        fail(rd, i, why, StageStatus::Failed, &say);
                        cascade(rd, dag, &say);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            rd.save()?;
        }
        let count = |s: StageStatus| rd.info.stages.iter().filter(|x| x.status == s).count();
        let summary = format!("  [slurm] {} done, {} running, {} queued", count(StageStatus::Ran) + count(StageStatus::Reused), count(StageStatus::Running), count(StageStatus::Pending));
        if changed && summary != last_summary {
            say(summary.clone());
            last_summary = summary;
        }
        sleep_unless_interrupted(poll, opts);
    }
    rd.info.ended = Some(now());
    rd.save()
}

fn sleep_unless_interrupted(d: Duration, opts: &RunOptions) {
    let t = Instant::now();
    while t.elapsed() < d && !opts.interrupted.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_result(dir: &Path) -> Option<JobResult> {
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).ok()?).ok()
}

#[allow(clippy::too_many_arguments)]
fn complete(rd: &mut RunDir, store: &Store, registry: &Registry, dag: &Dag, i: usize, r: JobResult, started: Option<Instant>, say: &dyn Fn(String)) -> Result<()> {
    let record = r.fingerprint.as_deref().filter(|_| r.status != "failed").and_then(|fp| store.record(fp));
    match record {
        Some(rec) => {
            let sr = &mut rd.info.stages[i];
            sr.status = if r.status == "reused" { StageStatus::Reused } else { StageStatus::Ran };
            sr.fingerprint = Some(rec.fingerprint.clone());
            sr.preimage = Some(rec.preimage.clone());
            sr.metrics = headline(store, &rec.outputs);
            sr.outputs = rec.outputs.clone();
            sr.start.get_or_insert(rec.started.clone());
            sr.end = Some(now());
            sr.seconds = started.map(|t| t.elapsed().as_secs_f64());
            say(format!("  {:<7} {}{}", sr.status.as_str(), sr.name, sr.seconds.map(|s| format!("  ({})", scheduler::human(s))).unwrap_or_default()));
            lay_out(store, rd, registry, i, &rec.outputs)?;
        }
        None => {
            let why = r.error.unwrap_or_else(|| "the stage finished but left no record".into());
            fail(rd, i, why, StageStatus::Failed, say);
            cascade(rd, dag, say);
        }
    }
    Ok(())
}

fn fail(rd: &mut RunDir, i: usize, why: String, status: StageStatus, say: &dyn Fn(String)) {
    let log = rd.path.join(&rd.info.stages[i].log);
    let sr = &mut rd.info.stages[i];
    if status == StageStatus::Skipped {
        say(format!("  skipped {}  (upstream failed)", sr.name));
    } else {
        say(format!("  failed  {}: {why}\n          log: {}", sr.name, log.display()));
    }
    sr.status = status;
    sr.error = Some(why);
    sr.end = Some(now());
}

/// Slurm leaves a job whose parent failed pending forever: cancel every job
/// that waits (directly or not) on a failed stage and mark its stages
/// skipped. A stage's job carries all of its cells, and they share their
/// dependencies, so the whole job goes.
fn cascade(rd: &mut RunDir, dag: &Dag, say: &dyn Fn(String)) {
    let n = rd.info.stages.len();
    let mut cancel: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut more = false;
        for i in 0..n {
            let s = &rd.info.stages[i];
            if !matches!(s.status, StageStatus::Pending | StageStatus::Running) {
                continue;
            }
            let group = s.job.as_deref().map(|j| group_of(j).to_string());
            let upstream_failed = dag.instances[i].deps.iter().any(|&d| matches!(rd.info.stages[d].status, StageStatus::Failed | StageStatus::Skipped));
            let job_cancelled = group.as_ref().is_some_and(|g| cancel.contains(g));
            if upstream_failed || job_cancelled {
                if let Some(g) = group {
                    cancel.insert(g);
                }
                fail(rd, i, "an upstream stage failed".into(), StageStatus::Skipped, say);
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    scancel(&cancel.into_iter().collect::<Vec<_>>());
}

/// The newest run of this pipeline (same file, same overrides) that the
/// Slurm executor left `running` and that still has jobs in the queue.
pub fn in_flight(runs_dir: &Path, p: &Pipeline, overrides: &[String]) -> Option<(PathBuf, RunInfo)> {
    let file = p.file.display().to_string();
    list_runs(runs_dir)
        .into_iter()
        .rev()
        .filter(|(_, i)| i.executor == "slurm" && i.status == "running" && i.pipeline == p.name && i.file == file && i.overrides == overrides)
        .find(|(_, i)| {
            let groups: BTreeSet<String> = i.stages.iter().filter(|s| matches!(s.status, StageStatus::Pending | StageStatus::Running)).filter_map(|s| s.job.as_deref().map(|j| group_of(j).to_string())).collect();
            !groups.is_empty() && squeue(&groups.into_iter().collect::<Vec<_>>()).is_ok_and(|q| !q.is_empty())
        })
}

/// Job ids of the newest running Slurm run of a pipeline, per stage instance
/// (for `nasflow status`); empty when none is running.
pub fn running_jobs(runs_dir: &Path, pipeline: &str) -> BTreeMap<String, String> {
    list_runs(runs_dir)
        .into_iter()
        .rev()
        .find(|(_, i)| i.executor == "slurm" && i.status == "running" && i.pipeline == pipeline)
        .map(|(_, i)| i.stages.into_iter().filter_map(|s| s.job.map(|j| (s.name, format!("{j} ({})", s.status.as_str())))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_sbatch_options() {
        let r = crate::pipeline::load::Resources { cpus: Some(4), gpus: Some(2), mem: Some("16G".into()), time: Some("24:00:00".into()) };
        assert_eq!(resource_args(&r, "cpu"), vec!["--cpus-per-task=4", "--gres=gpu:2", "--mem=16G", "--time=24:00:00"]);
        assert_eq!(resource_args(&r, "cuda"), vec!["--cpus-per-task=4", "--gres=gpu:2", "--mem=16G", "--time=24:00:00"]);
        let none = crate::pipeline::load::Resources { cpus: None, gpus: Some(0), mem: None, time: None };
        assert!(resource_args(&none, "cpu").is_empty(), "no GPU option for gpus: 0");
        assert_eq!(resource_args(&none, "cuda"), vec!["--gres=gpu:1"], "a stage forced onto CUDA asks for one GPU");
    }

    #[test]
    fn array_tasks_share_their_job_id() {
        assert_eq!(group_of("123_4"), "123");
        assert_eq!(group_of("123"), "123");
    }

    #[test]
    fn script_paths_are_quoted_for_sh() {
        assert_eq!(sh_quote(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
