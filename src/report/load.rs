//! Reading a run directory back for reports: run.json plus the artifacts each
//! stage left in its folder. Artifacts are found by what is there (a
//! metrics.jsonl, a genotype/genotype.json, alphas/epochs/*.npy, cells/*.svg),
//! so a new search method is reported as soon as it writes the same files.
//! A damaged artifact becomes a note on the run, not a failed report.

use crate::engine::rundir::{find_run, list_runs, read_run, RunInfo, StageStatus};
use anyhow::{Context, Result};
use nasflow_nas::genotype::Genotype;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One search stage's architecture weights, epoch by epoch:
/// `normal[epoch][edge][op]` (and the same for `reduce`).
#[derive(Clone, Debug, Default)]
pub struct AlphaHistory {
    pub normal: Vec<Vec<Vec<f32>>>,
    pub reduce: Vec<Vec<Vec<f32>>>,
    /// BayesNAS: γ per round (`switches/rounds/NN/gamma_*.npy`), `[edge][switch]`
    /// of the first cell of each type (γ is shared by the cells of a type).
    pub bayes_gamma: bool,
}

#[derive(Clone, Debug)]
pub struct StageData {
    /// Instance name, e.g. `search[seed=2]`.
    pub name: String,
    /// Stage name without matrix coordinates, e.g. `search`.
    pub stage: String,
    pub op: String,
    pub status: StageStatus,
    pub coords: BTreeMap<String, Json>,
    pub seconds: Option<f64>,
    /// Device class the stage ran on (from its fingerprint preimage): `cpu`, `cuda`, ...
    pub device: String,
    /// Resolved params of this instance (from the fingerprint preimage).
    pub params: BTreeMap<String, Json>,
    /// `resources:` the pipeline asked for (cpus, gpus, ...), for core/GPU hours.
    pub resources: BTreeMap<String, Json>,
    pub metrics: Option<Json>,
    /// metrics.jsonl: one record per epoch.
    pub curve: Vec<Json>,
    pub genotype: Option<Genotype>,
    pub alphas: Option<AlphaHistory>,
    /// Cell drawings the stage wrote: (file stem, SVG text).
    pub drawings: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Run {
    pub path: PathBuf,
    pub info: RunInfo,
    /// Pipeline-level params (`params:` of the resolved pipeline.json).
    pub pipeline_params: BTreeMap<String, Json>,
    /// Data sets of the resolved pipeline: name -> {format, path}.
    pub data: BTreeMap<String, Json>,
    pub stages: Vec<StageData>,
    /// Artifacts that could not be read, each naming the file and why.
    pub notes: Vec<String>,
}

impl Run {
    /// A short label for tables and legends: the run id's random suffix and pipeline.
    pub fn label(&self) -> String {
        let short = self.info.id.rsplit('-').next().unwrap_or(&self.info.id);
        format!("{}:{}", self.info.pipeline, short)
    }
}

/// Resolves what the user typed (run directories, ids or id prefixes; or the
/// last `last` runs of `pipeline`) to run directories, then reads them.
pub fn resolve(runs_dir: &Path, given: &[String], last: Option<usize>, pipeline: Option<&str>) -> Result<Vec<Run>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for g in given {
        paths.push(find_run(runs_dir, g)?.0);
    }
    if let Some(n) = last {
        let mut all: Vec<(PathBuf, RunInfo)> = list_runs(runs_dir).into_iter().filter(|(_, i)| pipeline.is_none_or(|p| i.pipeline == p)).collect();
        if all.is_empty() {
            anyhow::bail!("no runs{} under {} for --last {n}", pipeline.map(|p| format!(" of pipeline `{p}`")).unwrap_or_default(), runs_dir.display());
        }
        let skip = all.len().saturating_sub(n);
        paths.extend(all.drain(skip..).map(|(p, _)| p));
    }
    paths.iter().map(|p| read(p)).collect()
}

/// Reads one run directory.
pub fn read(dir: &Path) -> Result<Run> {
    let info = read_run(dir).with_context(|| format!("{} is not a run directory (no readable run.json); give a folder from `nasflow runs` or a run id", dir.display()))?;
    let mut notes = Vec::new();
    let pipeline = match std::fs::read(dir.join("pipeline.json")).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice::<Json>(&b)?)) {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!("{}: {e}", dir.join("pipeline.json").display()));
            Json::Null
        }
    };
    let (pipeline_params, data) = (object(pipeline.get("params")), object(pipeline.get("data")));
    let resources = |stage: &str| {
        let st = pipeline.get("stages").and_then(|v| v.as_array()).and_then(|v| v.iter().find(|s| s.get("name").and_then(|n| n.as_str()) == Some(stage)));
        object(st.and_then(|s| s.get("resources")))
    };
    let stages = info.stages.iter().map(|s| read_stage(&dir.join(&s.name), s, resources(&s.stage), &mut notes)).collect();
    Ok(Run { path: dir.to_path_buf(), info, pipeline_params, data, stages, notes })
}

fn object(v: Option<&Json>) -> BTreeMap<String, Json> {
    v.and_then(|v| v.as_object()).map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

fn read_stage(dir: &Path, s: &crate::engine::rundir::StageRun, resources: BTreeMap<String, Json>, notes: &mut Vec<String>) -> StageData {
    let pre = s.preimage.as_ref();
    let device = pre.and_then(|p| p.get("device")).and_then(|d| d.as_str()).unwrap_or("cpu").to_string();
    let params = object(pre.and_then(|p| p.get("params")));
    let curve = read_curve(&dir.join("metrics.jsonl"), notes);
    let genotype = read_genotype(&dir.join("genotype").join("genotype.json"), notes);
    let alphas = read_alphas(&dir.join("alphas").join("epochs"), notes).or_else(|| read_gamma_rounds(&dir.join("switches").join("rounds"), notes));
    let drawings = read_drawings(&dir.join("cells"));
    StageData { name: s.name.clone(), stage: s.stage.clone(), op: s.op.clone(), status: s.status.clone(), coords: s.coords.clone(), seconds: s.seconds, device, params, resources, metrics: s.metrics.clone(), curve, genotype, alphas, drawings }
}

fn read_curve(path: &Path, notes: &mut Vec<String>) -> Vec<Json> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<Json>(line) {
            Ok(v) => out.push(v),
            Err(e) => notes.push(format!("{}:{}: not a JSON record ({e}); the curve stops there", path.display(), i + 1)),
        }
    }
    out
}

fn read_genotype(path: &Path, notes: &mut Vec<String>) -> Option<Genotype> {
    let text = std::fs::read_to_string(path).ok()?;
    match Genotype::parse(&text) {
        Ok(g) => Some(g),
        Err(e) => {
            notes.push(format!("{}: not a genotype: {e:#}", path.display()));
            None
        }
    }
}

/// `epochs/NNN_normal.npy` and `NNN_reduce.npy`, in epoch order.
fn read_alphas(dir: &Path, notes: &mut Vec<String>) -> Option<AlphaHistory> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut files: BTreeMap<(usize, String), PathBuf> = BTreeMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".npy") else { continue };
        let Some((num, cell)) = stem.split_once('_') else { continue };
        if let Ok(n) = num.parse::<usize>() {
            files.insert((n, cell.to_string()), e.path());
        }
    }
    let mut h = AlphaHistory::default();
    for ((_, cell), path) in files {
        let m = match read_matrix(&path) {
            Ok(m) => m,
            Err(e) => {
                notes.push(format!("{}: {e:#}", path.display()));
                continue;
            }
        };
        match cell.as_str() {
            "normal" => h.normal.push(m),
            "reduce" => h.reduce.push(m),
            _ => {}
        }
    }
    (!h.normal.is_empty() || !h.reduce.is_empty()).then_some(h)
}

/// BayesNAS's `rounds/NN/gamma_norm.npy` and `gamma_reduct.npy` (`[cells, 8, 8]`), in round order.
fn read_gamma_rounds(dir: &Path, notes: &mut Vec<String>) -> Option<AlphaHistory> {
    let mut rounds: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    rounds.sort();
    let mut h = AlphaHistory { bayes_gamma: true, ..Default::default() };
    for (_, round) in rounds {
        for (file, into) in [("gamma_norm.npy", &mut h.normal), ("gamma_reduct.npy", &mut h.reduce)] {
            let path = round.join(file);
            let first_cell = candle_core::Tensor::read_npy(&path)
                .with_context(|| format!("cannot read {} as .npy", path.display()))
                .and_then(|t| {
                    if t.rank() != 3 {
                        anyhow::bail!("{} has shape {:?}; expected [cells, edges, switches]", path.display(), t.dims());
                    }
                    Ok(t.get(0)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
                });
            match first_cell {
                Ok(m) => into.push(m),
                Err(e) => notes.push(format!("{e:#}")),
            }
        }
    }
    (!h.normal.is_empty() || !h.reduce.is_empty()).then_some(h)
}

/// A 2-D .npy array (edges x ops) as rows of f32.
pub fn read_matrix(path: &Path) -> Result<Vec<Vec<f32>>> {
    let t = candle_core::Tensor::read_npy(path).with_context(|| format!("cannot read {} as .npy", path.display()))?;
    if t.rank() != 2 {
        anyhow::bail!("{} has shape {:?}; expected a 2-D array (edges x ops)", path.display(), t.dims());
    }
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

fn read_drawings(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix(".svg")?.to_string();
            Some((stem, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bayesnas_gamma_rounds_are_read_in_round_order_from_the_first_cell() {
        let dir = tempfile::tempdir().unwrap();
        let dev = candle_core::Device::Cpu;
        // rounds written out of order; cell 1 differs from cell 0 to show which is read
        for r in [1usize, 0] {
            let d = dir.path().join(format!("{r:02}"));
            std::fs::create_dir_all(&d).unwrap();
            for (file, base) in [("gamma_norm.npy", 10.0f32), ("gamma_reduct.npy", 20.0)] {
                let v: Vec<f32> = (0..2 * 64).map(|i| if i < 64 { base + r as f32 } else { -1.0 }).collect();
                candle_core::Tensor::from_vec(v, (2, 8, 8), &dev).unwrap().write_npy(d.join(file)).unwrap();
            }
        }
        std::fs::write(dir.path().join("notes.txt"), "not a round").unwrap();
        let mut notes = Vec::new();
        let h = read_gamma_rounds(dir.path(), &mut notes).unwrap();
        assert!(h.bayes_gamma && notes.is_empty(), "{notes:?}");
        assert_eq!((h.normal.len(), h.reduce.len()), (2, 2));
        assert_eq!((h.normal[0][3][5], h.normal[1][0][0], h.reduce[1][7][7]), (10.0, 11.0, 21.0));

        let svg = crate::report::plots::heatmap_svg("g", &h.normal, crate::report::plots::Scale::Log10, None).unwrap();
        assert!(svg.contains("log10"), "the colour scale says it is log10");

        // a damaged round is a note, not a failed report
        std::fs::write(dir.path().join("01").join("gamma_norm.npy"), b"junk").unwrap();
        let h = read_gamma_rounds(dir.path(), &mut notes).unwrap();
        assert_eq!(h.normal.len(), 1);
        assert!(notes.iter().any(|n| n.contains("gamma_norm.npy")), "{notes:?}");
    }
}
