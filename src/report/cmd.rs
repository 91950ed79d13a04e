//! The `compare`, `report` and `runs` filter arguments and their commands;
//! src/cli.rs only routes to them.

use super::{compare, html, load, plots, seeds, select};
use crate::engine::rundir::{list_runs, RunInfo};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Which runs: directories or ids, and/or the last N of a pipeline.
#[derive(clap::Args, Debug)]
pub struct RunSet {
    /// Run directories, run ids or id prefixes (see `nasflow runs`)
    pub runs: Vec<String>,
    /// Also take the last N runs (of --pipeline, if given)
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// With --last: only runs of this pipeline
    #[arg(long)]
    pub pipeline: Option<String>,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub set: RunSet,
    /// Print one JSON object (runs, params_differ, metrics, stages, genotypes, seeds)
    #[arg(long)]
    pub json: bool,
    /// Also write the plots (learning curves, alpha heatmaps) as SVG files into DIR
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub set: RunSet,
    /// The HTML file to write
    #[arg(short, long, default_value = "report.html")]
    pub output: PathBuf,
    /// Also write the plots as SVG files into DIR
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

/// The `nasflow runs` filters beyond --pipeline.
#[derive(clap::Args, Debug, Default)]
pub struct RunsFilter {
    /// Only runs with this status: running, ok, failed, interrupted
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs started since a date (2026-11-20), a UTC time (2026-11-20T14:00) or an age (30m, 12h, 3d)
    #[arg(long)]
    pub since: Option<String>,
    /// Order by a metric, smallest first (test_error, best_valid_acc, params, search_seconds, or a metrics.json key)
    #[arg(long, value_name = "METRIC")]
    pub sort: Option<String>,
    /// With --sort: largest first
    #[arg(long)]
    pub reverse: bool,
}

fn load_set(set: &RunSet, min: usize) -> Result<Vec<load::Run>> {
    if set.runs.is_empty() && set.last.is_none() {
        bail!("name the runs: run directories or ids (see `nasflow runs --runs-dir {}`), or --last N [--pipeline NAME]", set.runs_dir.display());
    }
    let runs = load::resolve(&set.runs_dir, &set.runs, set.last, set.pipeline.as_deref())?;
    if runs.len() < min {
        bail!("{} run(s) given; compare needs at least {min} (add run ids, or --last {min})", runs.len());
    }
    Ok(runs)
}

fn write_plots(dir: &Path, runs: &[load::Run]) -> Result<()> {
    let figs = html::figures(runs)?;
    let paths = plots::write_svgs(dir, &figs)?;
    eprintln!("wrote {} plot(s) to {}", paths.len(), dir.display());
    Ok(())
}

pub fn compare(a: CompareArgs) -> Result<i32> {
    let runs = load_set(&a.set, 2)?;
    let c = compare::compare(&runs);
    let groups = seeds::seed_groups(&runs);
    if a.json {
        let mut v = serde_json::to_value(&c)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("seeds".into(), serde_json::to_value(&groups)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", compare::text(&c));
        if !groups.is_empty() {
            print!("{}", seeds::text(&groups));
        }
    }
    if let Some(dir) = &a.plots {
        write_plots(dir, &runs)?;
    }
    Ok(0)
}

pub fn report(a: ReportArgs) -> Result<i32> {
    let runs = load_set(&a.set, 1)?;
    let page = html::page(&runs)?;
    if let Some(parent) = a.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    crate::engine::atomic::write(&a.output, page.as_bytes()).with_context(|| format!("cannot write {}", a.output.display()))?;
    if let Some(dir) = &a.plots {
        write_plots(dir, &runs)?;
    }
    eprintln!("wrote {} ({} run(s))", a.output.display(), runs.len());
    Ok(0)
}

/// `nasflow runs` with its filters and sort applied, oldest first unless sorted.
pub fn select_runs(runs_dir: &Path, pipeline: Option<String>, f: &RunsFilter) -> Result<Vec<(PathBuf, RunInfo)>> {
    let filter = select::Filter::new(pipeline, f.status.clone(), f.since.as_deref())?;
    let mut runs: Vec<(PathBuf, RunInfo)> = list_runs(runs_dir).into_iter().filter(|(_, i)| filter.keep(i)).collect();
    match &f.sort {
        Some(m) => select::sort_by_metric(&mut runs, m, f.reverse)?,
        None if f.reverse => bail!("--reverse goes with --sort METRIC"),
        None => {}
    }
    Ok(runs)
}
