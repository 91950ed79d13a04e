//! The command line: verbs of one tool, `--json` where a script reads it.

use crate::engine::device::DevicePolicy;
use crate::engine::op::{Ports, Registry};
use crate::engine::rundir::{find_run, list_runs, RunInfo};
use crate::engine::scheduler::{self, human, RunOptions};
use crate::engine::store::Store;
use crate::pipeline::{self, Dag};
use crate::stages::registry;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "nasflow", version, about = "Neural architecture search experiments from declarative YAML pipelines", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline file (e.g. pipelines/quick/darts.yaml)
    file: PathBuf,
    /// Override a param: STAGE.PARAM=VALUE or params.NAME=VALUE (repeatable)
    #[arg(short = 'p', long = "param", value_name = "STAGE.KEY=VALUE")]
    params: Vec<String>,
}

/// `--device`: where the stages that run models (search, train, evaluate) run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceArg {
    /// CUDA (GPU 0) for model stages with `resources: { gpus: 1 }` or more when this nasflow has CUDA, else the CPU
    Auto,
    /// Every stage on the CPU
    Cpu,
    /// Every model stage on CUDA (GPU 0), whatever its `resources` say; needs a build with `--features cuda`
    Cuda,
}

impl From<DeviceArg> for DevicePolicy {
    fn from(d: DeviceArg) -> DevicePolicy {
        match d {
            DeviceArg::Auto => DevicePolicy::Auto,
            DeviceArg::Cpu => DevicePolicy::Cpu,
            DeviceArg::Cuda => DevicePolicy::Cuda,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pipeline: stale stages run, fresh ones are reused from the cache
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Where run directories go (the cache is <runs-dir>/.cache unless NASFLOW_CACHE is set)
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Stages to run at once (default: the number of cores)
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Print one JSON object with the run and its stages
        #[arg(long)]
        json: bool,
        /// Where stages run: `local` (child processes) or `slurm` (one sbatch job per stale stage; see docs/slurm.md)
        #[arg(long, value_enum, default_value = "local")]
        executor: Executor,
        /// Slurm partition for the jobs (--executor slurm)
        #[arg(long)]
        partition: Option<String>,
        /// Slurm account to charge (--executor slurm)
        #[arg(long)]
        account: Option<String>,
        /// Where the model stages (search, train, evaluate) run. The device is part of each stage's fingerprint, so CPU
        /// and CUDA results are cached apart. CUDA needs a build with `--features cuda` (see docs/cuda.md)
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceArg,
    },
    /// Say per stage whether it is fresh, stale (and why) or never run
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// The `--device` of the `nasflow run` to compare with (it is part of each fingerprint)
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceArg,
    },
    /// Print the stages in execution order (or Graphviz with --dot)
    Dag {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        dot: bool,
    },
    /// List the built-in ops, or describe one
    Ops { name: Option<String> },
    /// List run directories
    Runs {
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Only runs of this pipeline
        #[arg(long)]
        pipeline: Option<String>,
        #[command(flatten)]
        filter: crate::report::cmd::RunsFilter,
        #[arg(long)]
        json: bool,
    },
    /// Compare runs: params that differ, metrics side by side, stages ran/reused, genotype diffs, seed statistics
    Compare {
        #[command(flatten)]
        args: crate::report::cmd::CompareArgs,
    },
    /// Write one self-contained HTML page: tables, genotype diff, plots and cell drawings of the runs
    Report {
        #[command(flatten)]
        args: crate::report::cmd::ReportArgs,
    },
    /// Show one run (a run directory or id)
    Show {
        run: String,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Remove store objects and records that no run directory references
    Gc {
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Published genotypes and genotype files: list, show, count parameters
    Genotype {
        #[command(subcommand)]
        cmd: GenotypeCmd,
    },
    /// Run one stage job (used by the executors)
    #[command(hide = true)]
    ExecStage { job: PathBuf },
}

#[derive(Subcommand)]
enum GenotypeCmd {
    /// Name the built-in (published) genotypes
    List,
    /// Print a genotype's cells, its DARTS text form and its parameter count
    Show {
        /// A built-in name (see `nasflow genotype list`) or a file (JSON or DARTS text form)
        genotype: String,
        /// Cells of the evaluation network the count is for
        #[arg(long, default_value_t = 20)]
        layers: usize,
        /// Channels of its first cell
        #[arg(long, default_value_t = 36)]
        init_channels: usize,
        /// Input channels (3 for CIFAR-10, 1 for MNIST)
        #[arg(long, default_value_t = 3)]
        in_channels: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 0 success, 1 a stage failed, 2 bad input, 130 interrupted.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn init_tracing(log: Option<&Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NASFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(if log.is_some() { "info" } else { "warn" }));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match log.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok()) {
        Some(f) => {
            let _ = builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
}

fn load(args: &PipelineArgs) -> Result<pipeline::Pipeline, i32> {
    pipeline::load(&args.file, &args.params, registry()).map_err(|d| {
        eprintln!("error: {d}");
        2
    })
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::ExecStage { job } => {
            let log = std::fs::read(&job).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|j| j.get("log").and_then(|l| l.as_str()).map(PathBuf::from));
            init_tracing(log.as_deref());
            match crate::engine::exec::exec_stage(&job, registry()) {
                Ok(()) => Ok(0),
                Err(_) => Ok(1),
            }
        }
        Cmd::Run { pipeline, runs_dir, jobs, json, executor, partition, account, device } => {
            init_tracing(None);
            // Refused at once: nothing is loaded, run or written.
            let device = DevicePolicy::from(device);
            if let Err(e) = device.check() {
                eprintln!("error: {e:#}");
                return Ok(2);
            }
            let p = match load(&pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            if let Err(e) = scheduler::check_data(&p) {
                eprintln!("error: {e}");
                return Ok(2);
            }
            let interrupted = Arc::new(AtomicBool::new(false));
            let flag = interrupted.clone();
            let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
            let opts = RunOptions { store_dir: scheduler::store_dir(&runs_dir), runs_dir, jobs, overrides: pipeline.params.clone(), quiet: json, interrupted, device };
            let rd = match executor {
                Executor::Local => scheduler::run(&p, registry(), &opts)?,
                Executor::Slurm => crate::engine::slurm::run(&p, registry(), &opts, &crate::engine::slurm::SlurmOptions { partition, account })?,
            };
            let (ran, reused, failed) = rd.info.counts();
            if json {
                println!("{}", serde_json::to_string_pretty(&run_json(&rd.path, &rd.info))?);
            } else {
                let verb = match rd.info.status.as_str() {
                    "ok" => "finished",
                    "interrupted" => "interrupted",
                    _ => "failed",
                };
                eprintln!("{verb}: {ran} ran, {reused} reused, {failed} failed -> {}", rd.path.display());
                if rd.info.status == "interrupted" {
                    let done: Vec<&str> = rd.info.stages.iter().filter(|s| matches!(s.status, crate::engine::rundir::StageStatus::Ran | crate::engine::rundir::StageStatus::Reused)).map(|s| s.name.as_str()).collect();
                    eprintln!("finished before the interrupt: {}", if done.is_empty() { "nothing".into() } else { done.join(", ") });
                    eprintln!("run the same command again to go on from there");
                }
            }
            Ok(match rd.info.status.as_str() {
                "ok" => 0,
                "interrupted" => 130,
                _ => 1,
            })
        }
        Cmd::Status { pipeline, runs_dir, json, device } => {
            init_tracing(None);
            let p = match load(&pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let states = crate::engine::status::status_on(&p, registry(), &runs_dir, &scheduler::store_dir(&runs_dir), device.into())?;
            // Slurm job ids of a run of this pipeline still in flight.
            let jobs = crate::engine::slurm::running_jobs(&runs_dir, &p.name);
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"pipeline": p.name, "stages": states, "slurm_jobs": jobs}))?);
            } else {
                for s in &states {
                    let job = jobs.get(&s.name).map(|j| format!("  [slurm job {j}]")).unwrap_or_default();
                    if s.reasons.is_empty() {
                        println!("{}: {}{job}", s.name, s.state);
                    } else {
                        println!("{}: {}: {}{job}", s.name, s.state, s.reasons.join("; "));
                    }
                }
            }
            Ok(0)
        }
        Cmd::Dag { pipeline, dot } => {
            let p = match load(&pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let dag = Dag::build(&p, registry()).map_err(|_| anyhow::anyhow!("cycle"))?;
            if dot {
                print!("{}", dag.dot(&p));
            } else {
                for inst in &dag.instances {
                    let st = &p.stages[inst.stage];
                    let ins: Vec<String> = st.inputs.iter().map(|(k, r)| format!("{k}={}.{}", r.stage, r.output)).collect();
                    println!("{}  ({}){}", inst.id, st.op, if ins.is_empty() { String::new() } else { format!("  <- {}", ins.join(", ")) });
                }
            }
            Ok(0)
        }
        Cmd::Ops { name } => {
            ops(registry(), name.as_deref())
        }
        Cmd::Compare { args } => crate::report::cmd::compare(args),
        Cmd::Report { args } => crate::report::cmd::report(args),
        Cmd::Runs { runs_dir, pipeline, filter, json } => {
            let runs: Vec<(PathBuf, RunInfo)> = crate::report::cmd::select_runs(&runs_dir, pipeline, &filter)?;
            if json {
                let v: Vec<_> = runs.iter().map(|(p, i)| run_json(p, i)).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if runs.is_empty() {
                println!("no runs under {}", runs_dir.display());
            } else {
                println!("{:<32} {:<14} {:<20} {:>4} {:>6} {:<11} metrics", "run", "pipeline", "started (UTC)", "ran", "reused", "status");
                for (_, i) in &runs {
                    let (ran, reused, _) = i.counts();
                    println!("{:<32} {:<14} {:<20} {:>4} {:>6} {:<11} {}", i.id, i.pipeline, &i.started.get(..19).unwrap_or(&i.started).replace('T', " "), ran, reused, i.status, headline_text(i));
                    if i.status == "running" {
                        let jobs: Vec<String> = i.stages.iter().filter(|s| matches!(s.status, crate::engine::rundir::StageStatus::Pending | crate::engine::rundir::StageStatus::Running)).filter_map(|s| s.job.as_ref().map(|j| format!("{}={j}", s.name))).collect();
                        if !jobs.is_empty() {
                            println!("  slurm jobs: {}", jobs.join(" "));
                        }
                    }
                }
            }
            Ok(0)
        }
        Cmd::Show { run, runs_dir, json } => {
            let (path, info) = find_run(&runs_dir, &run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&run_json(&path, &info))?);
                return Ok(0);
            }
            println!("run       {}\npipeline  {} ({})\nstarted   {}\nended     {}\nstatus    {}\nhost      {}\nfolder    {}", info.id, info.pipeline, info.file, info.started, info.ended.clone().unwrap_or("-".into()), info.status, info.host, path.display());
            if !info.overrides.is_empty() {
                println!("overrides {}", info.overrides.join(" "));
            }
            println!();
            for s in &info.stages {
                let t = s.seconds.map(human).unwrap_or_default();
                println!("  {:<8} {:<24} {:<16} {:>9}  {}", s.status.as_str(), s.name, s.op, t, s.fingerprint.as_deref().map(|f| &f[..12.min(f.len())]).unwrap_or(""));
                if let Some(e) = &s.error {
                    println!("           error: {e}");
                }
                if let Some(m) = &s.metrics {
                    println!("           metrics: {}", compact(m));
                }
            }
            Ok(0)
        }
        Cmd::Gc { runs_dir, dry_run } => gc(&runs_dir, dry_run),
        Cmd::Genotype { cmd } => crate::genotype_cli::run(cmd_args(cmd)),
    }
}

fn run_json(path: &Path, i: &RunInfo) -> serde_json::Value {
    let (ran, reused, failed) = i.counts();
    let mut v = serde_json::to_value(i).unwrap_or(json!({}));
    if let Some(o) = v.as_object_mut() {
        let abs = std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
        o.insert("path".into(), json!(abs.display().to_string()));
        o.insert("counts".into(), json!({"ran": ran, "reused": reused, "failed": failed}));
    }
    v
}

fn compact(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) => m.iter().filter(|(_, x)| !x.is_object() && !x.is_array()).map(|(k, x)| match x.as_f64() {
            Some(f) if !x.is_i64() => format!("{k}={f:.4}"),
            _ => format!("{k}={x}"),
        }).collect::<Vec<_>>().join(" "),
        None => v.to_string(),
    }
}

fn headline_text(i: &RunInfo) -> String {
    // The last stage with metrics speaks for the run.
    i.stages.iter().rev().find_map(|s| s.metrics.as_ref()).map(compact).unwrap_or_default()
}

fn ops(reg: &Registry, name: Option<&str>) -> Result<i32> {
    let Some(name) = name else {
        for op in reg.all() {
            println!("{:<18} {}", op.name, op.doc.split(". ").next().unwrap_or(op.doc));
        }
        println!("\n`nasflow ops NAME` describes one op.");
        return Ok(0);
    };
    let Some(op) = reg.get(name) else {
        let hint = crate::pipeline::error::did_you_mean(name, reg.names()).map(|h| format!(" ({h})")).unwrap_or_default();
        eprintln!("error: no op `{name}`{hint}; known ops: {}", reg.names().collect::<Vec<_>>().join(", "));
        return Ok(2);
    };
    println!("{} (version {})\n\n{}\n", op.name, op.version, op.doc);
    println!("Params:");
    if op.params.is_empty() {
        println!("  (none)");
    }
    for p in &op.params {
        let d = p.default.as_ref().map(|d| format!(" [default: {d}]")).unwrap_or(" [required]".into());
        println!("  {:<22} {:<12} {}{}", p.name, p.ty.describe(), p.doc, d);
    }
    let ports = |label: &str, ports: &Ports| {
        println!("\n{label}:");
        match ports {
            Ports::Fixed(v) if v.is_empty() => println!("  (none)"),
            Ports::Fixed(v) => v.iter().for_each(|p| println!("  {:<22} {}{}", p.name, p.doc, if p.path.is_empty() { String::new() } else { format!(" ({})", p.path) })),
            Ports::Any => println!("  any names"),
            Ports::FromParam(k) => println!("  one per entry of `{k}`"),
        }
    };
    ports("Inputs", &op.inputs);
    ports("Outputs", &op.outputs);
    println!("\nData set: {}", match op.data {
        crate::engine::op::DataUse::None => "none",
        crate::engine::op::DataUse::Optional => "optional (`data:`)",
        crate::engine::op::DataUse::Required => "required (`data:`)",
    });
    if op.uses_device {
        println!("Device: runs models; on CUDA or the CPU as `nasflow run --device` and `resources: {{ gpus: N }}` decide");
    }
    Ok(0)
}

fn gc(runs_dir: &Path, dry_run: bool) -> Result<i32> {
    let store_dir = scheduler::store_dir(runs_dir);
    let store = Store::open(&store_dir)?;
    let _lock = crate::engine::lock::Lock::acquire(&store_dir.join("gc.lock"))?;
    let mut keep_fp = std::collections::BTreeSet::new();
    let mut keep = std::collections::BTreeSet::new();
    for (_, info) in list_runs(runs_dir) {
        for s in &info.stages {
            if let Some(f) = &s.fingerprint {
                keep_fp.insert(f.clone());
            }
            for a in s.outputs.values() {
                keep.extend(store.referenced(a));
            }
        }
    }
    let mut removed_records = 0;
    for r in store.records() {
        if !keep_fp.contains(&r.fingerprint) {
            removed_records += 1;
            if !dry_run {
                store.drop_record(&r.fingerprint);
            }
        } else {
            for a in r.outputs.values() {
                keep.extend(store.referenced(a));
            }
        }
    }
    let (mut n, mut bytes) = (0u64, 0u64);
    for shard in std::fs::read_dir(store_dir.join("objects")).context("cannot read the store")?.flatten() {
        for obj in std::fs::read_dir(shard.path())?.flatten() {
            let name = obj.file_name().to_string_lossy().to_string();
            if !keep.contains(&name) {
                n += 1;
                bytes += obj.metadata().map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    let _ = std::fs::remove_file(obj.path());
                }
            }
        }
    }
    // Leftovers of killed attempts.
    if !dry_run {
        for e in std::fs::read_dir(store.tmp_dir())?.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    println!("{} {n} objects ({:.1} MB) and {removed_records} records", if dry_run { "would remove" } else { "removed" }, bytes as f64 / 1e6);
    Ok(0)
}

fn cmd_args(cmd: GenotypeCmd) -> crate::genotype_cli::Args {
    match cmd {
        GenotypeCmd::List => crate::genotype_cli::Args::List,
        GenotypeCmd::Show { genotype, layers, init_channels, in_channels, classes, json } => {
            crate::genotype_cli::Args::Show { genotype, layers, init_channels, in_channels, classes, json }
        }
    }
}
