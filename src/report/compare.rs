//! `nasflow compare`: what differs between runs. Params that differ, the
//! headline metrics side by side, per stage whether it ran or was reused (and
//! its wall time and core/GPU hours), and the genotype diffs. Runs of different
//! pipelines are compared on what they share: headline metrics are defined
//! for any NAS pipeline, stages and params by name.

use super::genodiff::{self, GenotypeDiff};
use super::load::{Run, StageData};
use crate::engine::rundir::StageStatus;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Serialize)]
pub struct RunRef {
    pub label: String,
    pub id: String,
    pub pipeline: String,
    pub status: String,
    pub path: String,
}

/// A param with its value in each run (`None`: the run has no such param).
#[derive(Serialize)]
pub struct ParamRow {
    pub key: String,
    pub values: Vec<Option<Json>>,
}

#[derive(Serialize)]
pub struct MetricRow {
    pub metric: String,
    pub values: Vec<Option<f64>>,
}

/// One stage instance across the runs; `None` where a run has no such stage.
#[derive(Serialize)]
pub struct StageRow {
    pub stage: String,
    pub runs: Vec<Option<StageCell>>,
}

#[derive(Serialize, Clone)]
pub struct StageCell {
    pub status: String,
    pub op: String,
    /// Wall time of the stage in this run (absent when reused: it did not run).
    pub seconds: Option<f64>,
    pub cpu_hours: Option<f64>,
    pub gpu_hours: Option<f64>,
}

#[derive(Serialize)]
pub struct GenotypePair {
    /// Stage instance the genotypes come from (or `final` for each run's last genotype).
    pub stage: String,
    pub a: usize,
    pub b: usize,
    pub diff: GenotypeDiff,
}

#[derive(Serialize)]
pub struct Comparison {
    pub runs: Vec<RunRef>,
    /// Params whose values differ between runs that have them.
    pub params_differ: Vec<ParamRow>,
    /// Stages (instances) that only some runs have: their params are not compared.
    pub stages_not_shared: Vec<String>,
    pub metrics: Vec<MetricRow>,
    pub stages: Vec<StageRow>,
    pub genotypes: Vec<GenotypePair>,
    /// What a reader must know to read the tables (different pipelines, unreadable artifacts).
    pub notes: Vec<String>,
}

/// The headline metrics, in table order, with how they are computed.
pub const HEADLINE: [(&str, &str); 7] = [
    ("search_seconds", "wall time of the search stages that ran"),
    ("best_valid_acc", "best validation accuracy over the search epochs"),
    ("test_error", "test error (%) of the evaluate stage, else 100 - the last test accuracy"),
    ("test_acc", "test accuracy (%)"),
    ("params", "parameter count of the evaluated model"),
    ("wall_seconds", "wall time of the run, start to end"),
    ("cpu_hours", "core hours of the stages that ran (resources.cpus, 1 when unset)"),
];

fn is_search(s: &StageData) -> bool {
    // Search ops are named `<method>.search` (darts.search, snas.search, ...).
    s.op.ends_with(".search") || s.curve.iter().any(|r| r.get("valid_acc").is_some())
}

fn num(v: Option<&Json>) -> Option<f64> {
    v.and_then(|v| v.as_f64()).filter(|f| f.is_finite())
}

fn ran(s: &StageData) -> bool {
    s.status == StageStatus::Ran
}

/// Core hours and GPU hours of a stage that ran.
pub fn hours(s: &StageData) -> (Option<f64>, Option<f64>) {
    let Some(sec) = s.seconds.filter(|_| ran(s)) else { return (None, None) };
    let cpus = num(s.resources.get("cpus")).unwrap_or(1.0);
    let gpu = s.device != "cpu";
    let gpus = num(s.resources.get("gpus")).unwrap_or(1.0);
    (Some(sec / 3600.0 * cpus), gpu.then_some(sec / 3600.0 * gpus))
}

/// The headline metrics of one run (see [`HEADLINE`]).
pub fn headline(r: &Run) -> BTreeMap<&'static str, f64> {
    let mut m = BTreeMap::new();
    let search: Vec<&StageData> = r.stages.iter().filter(|s| is_search(s)).collect();
    let secs: Vec<f64> = search.iter().filter(|s| ran(s)).filter_map(|s| s.seconds).collect();
    if !secs.is_empty() {
        m.insert("search_seconds", secs.iter().sum());
    }
    let best = search.iter().flat_map(|s| s.curve.iter().filter_map(|r| num(r.get("valid_acc"))).chain(num(s.metrics.as_ref().and_then(|m| m.get("valid_acc"))))).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    if let Some(b) = best {
        m.insert("best_valid_acc", b);
    }
    // The last stage with a test metric speaks for the run.
    let tested = r.stages.iter().rev().find(|s| s.metrics.as_ref().is_some_and(|m| m.get("test_error").is_some() || m.get("test_acc").is_some()));
    if let Some(mt) = tested.and_then(|s| s.metrics.as_ref()) {
        let acc = num(mt.get("test_acc"));
        if let Some(e) = num(mt.get("test_error")).or(acc.map(|a| 100.0 - a)) {
            m.insert("test_error", e);
        }
        if let Some(a) = acc {
            m.insert("test_acc", a);
        }
        if let Some(p) = num(mt.get("params")) {
            m.insert("params", p);
        }
    }
    if let (Ok(a), Some(Ok(b))) = (chrono::DateTime::parse_from_rfc3339(&r.info.started), r.info.ended.as_deref().map(chrono::DateTime::parse_from_rfc3339)) {
        m.insert("wall_seconds", (b - a).num_milliseconds() as f64 / 1000.0);
    }
    let cpu: Vec<f64> = r.stages.iter().filter_map(|s| hours(s).0).collect();
    if !cpu.is_empty() {
        m.insert("cpu_hours", cpu.iter().sum());
    }
    let gpu: Vec<f64> = r.stages.iter().filter_map(|s| hours(s).1).collect();
    if !gpu.is_empty() {
        m.insert("gpu_hours", gpu.iter().sum());
    }
    m
}

/// Every param of a run as `KEY = value`: `params.NAME`, `data.NAME.path`,
/// `STAGE.PARAM` (nested objects flattened with dots).
pub fn flat_params(r: &Run) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for (k, v) in &r.pipeline_params {
        flatten(&format!("params.{k}"), v, &mut out);
    }
    for (k, v) in &r.data {
        flatten(&format!("data.{k}"), v, &mut out);
    }
    for s in &r.stages {
        for (k, v) in &s.params {
            flatten(&format!("{}.{k}", s.name), v, &mut out);
        }
    }
    out
}

fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => m.iter().for_each(|(k, v)| flatten(&format!("{prefix}.{k}"), v, out)),
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

pub fn compare(runs: &[Run]) -> Comparison {
    let mut notes = Vec::new();
    let pipelines: BTreeSet<&str> = runs.iter().map(|r| r.info.pipeline.as_str()).collect();
    if pipelines.len() > 1 {
        notes.push(format!("runs of different pipelines ({}): stages and params are matched by name; the headline metrics are comparable", pipelines.into_iter().collect::<Vec<_>>().join(", ")));
    }
    for r in runs {
        notes.extend(r.notes.iter().map(|n| format!("{}: {n}", r.label())));
    }

    // Stage instances in first-seen order across the runs.
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        for s in &r.stages {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    let stage_of = |r: &Run, name: &str| r.stages.iter().find(|s| s.name == name).cloned();
    let stages: Vec<StageRow> = names
        .iter()
        .map(|n| StageRow {
            stage: n.clone(),
            runs: runs
                .iter()
                .map(|r| {
                    stage_of(r, n).map(|s| {
                        let (cpu_hours, gpu_hours) = hours(&s);
                        StageCell { status: s.status.as_str().to_string(), op: s.op.clone(), seconds: s.seconds.filter(|_| ran(&s)), cpu_hours, gpu_hours }
                    })
                })
                .collect(),
        })
        .collect();
    let stages_not_shared: Vec<String> = stages.iter().filter(|r| r.runs.iter().any(|c| c.is_none())).map(|r| r.stage.clone()).collect();

    let flats: Vec<BTreeMap<String, Json>> = runs.iter().map(flat_params).collect();
    let keys: BTreeSet<&String> = flats.iter().flat_map(|f| f.keys()).collect();
    let not_shared = |k: &str| stages_not_shared.iter().any(|s| k.starts_with(&format!("{s}.")));
    let params_differ = keys
        .into_iter()
        .filter(|k| !not_shared(k))
        .filter_map(|k| {
            let values: Vec<Option<Json>> = flats.iter().map(|f| f.get(k).cloned()).collect();
            let first = &values[0];
            values.iter().any(|v| v != first).then(|| ParamRow { key: k.clone(), values })
        })
        .collect();

    let heads: Vec<BTreeMap<&str, f64>> = runs.iter().map(headline).collect();
    let metrics = HEADLINE
        .iter()
        .map(|(k, _)| *k)
        .chain(["gpu_hours"])
        .filter(|k| heads.iter().any(|h| h.contains_key(k)))
        .map(|k| MetricRow { metric: k.to_string(), values: heads.iter().map(|h| h.get(k).copied()).collect() })
        .collect();

    Comparison {
        runs: runs.iter().map(|r| RunRef { label: r.label(), id: r.info.id.clone(), pipeline: r.info.pipeline.clone(), status: r.info.status.clone(), path: r.path.display().to_string() }).collect(),
        params_differ,
        stages_not_shared,
        metrics,
        stages,
        genotypes: genotype_pairs(runs, &names, pipelines_differ(runs)),
        notes,
    }
}

fn pipelines_differ(runs: &[Run]) -> bool {
    runs.iter().any(|r| r.info.pipeline != runs[0].info.pipeline)
}

/// For each stage instance with a genotype: the first run that has it against
/// every other run that has it. Runs of different pipelines also get their
/// final genotypes (the last stage that wrote one) compared.
fn genotype_pairs(runs: &[Run], names: &[String], cross: bool) -> Vec<GenotypePair> {
    let mut out = Vec::new();
    for n in names {
        let have: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].stages.iter().any(|s| &s.name == n && s.genotype.is_some())).collect();
        let get = |i: usize| runs[i].stages.iter().find(|s| &s.name == n).and_then(|s| s.genotype.as_ref());
        if let Some((&a, rest)) = have.split_first() {
            for &b in rest {
                if let (Some(ga), Some(gb)) = (get(a), get(b)) {
                    out.push(GenotypePair { stage: n.clone(), a, b, diff: genodiff::diff(ga, gb) });
                }
            }
        }
    }
    if cross {
        let last = |r: &Run| r.stages.iter().rev().find_map(|s| s.genotype.as_ref()).cloned();
        if let Some(g0) = last(&runs[0]) {
            for (b, r) in runs.iter().enumerate().skip(1) {
                if let Some(gb) = last(r) {
                    out.push(GenotypePair { stage: "final".into(), a: 0, b, diff: genodiff::diff(&g0, &gb) });
                }
            }
        }
    }
    out
}

/// A metric value for tables: seconds as durations, counts without decimals.
pub fn fmt_metric(metric: &str, v: f64) -> String {
    match metric {
        "search_seconds" | "wall_seconds" => crate::engine::scheduler::human(v),
        "params" => format!("{:.3} M", v / 1e6),
        "cpu_hours" | "gpu_hours" => format!("{v:.3}"),
        _ => format!("{v:.2}"),
    }
}

pub fn fmt_json(v: &Option<Json>) -> String {
    match v {
        None => "-".into(),
        Some(Json::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The comparison as text tables for a terminal.
pub fn text(c: &Comparison) -> String {
    let mut s = String::new();
    let labels: Vec<&str> = c.runs.iter().map(|r| r.label.as_str()).collect();
    for (i, r) in c.runs.iter().enumerate() {
        s += &format!("[{i}] {}  {}  ({}, {})\n", r.label, r.path, r.pipeline, r.status);
    }
    for n in &c.notes {
        s += &format!("note: {n}\n");
    }
    let table = |title: &str, rows: Vec<(String, Vec<String>)>| -> String {
        let w0 = rows.iter().map(|r| r.0.len()).chain([title.len()]).max().unwrap_or(0);
        let mut widths: Vec<usize> = labels.iter().map(|l| l.len()).collect();
        for (_, vals) in &rows {
            for (w, v) in widths.iter_mut().zip(vals) {
                *w = (*w).max(v.chars().count());
            }
        }
        let mut t = format!("\n{title:<w0$}");
        for (l, w) in labels.iter().zip(&widths) {
            t += &format!("  {l:>w$}");
        }
        t += "\n";
        for (k, vals) in rows {
            t += &format!("{k:<w0$}");
            for (v, w) in vals.iter().zip(&widths) {
                t += &format!("  {v:>w$}");
            }
            t += "\n";
        }
        t
    };
    if c.params_differ.is_empty() {
        s += "\nparams: the same in every run\n";
    } else {
        s += &table("params that differ", c.params_differ.iter().map(|p| (p.key.clone(), p.values.iter().map(fmt_json).collect())).collect());
    }
    if !c.stages_not_shared.is_empty() {
        s += &format!("stages not in every run (params not compared): {}\n", c.stages_not_shared.join(", "));
    }
    s += &table("metrics", c.metrics.iter().map(|m| (m.metric.clone(), m.values.iter().map(|v| v.map(|v| fmt_metric(&m.metric, v)).unwrap_or("-".into())).collect())).collect());
    s += &table(
        "stages",
        c.stages
            .iter()
            .map(|r| {
                let cells = r.runs.iter().map(|c| match c {
                    None => "-".to_string(),
                    Some(c) => match c.seconds {
                        Some(t) => format!("{} {}{}", c.status, crate::engine::scheduler::human(t), c.gpu_hours.map(|g| format!(" {g:.3} GPU-h")).unwrap_or_default()),
                        None => c.status.clone(),
                    },
                });
                (r.stage.clone(), cells.collect())
            })
            .collect(),
    );
    for g in &c.genotypes {
        s += &format!("\ngenotype {} [{}] vs [{}]: ", g.stage, g.a, g.b);
        let t = genodiff::text(&g.diff, &format!("[{}]", g.a), &format!("[{}]", g.b));
        if g.diff.identical {
            s += &t;
        } else {
            s += "differs\n";
            s += &t;
        }
    }
    s
}
