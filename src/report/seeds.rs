//! Seed statistics. DARTS asks that a search be reported over several seeds,
//! never as one run: for each stage that ran more than once (matrix cells of
//! one run, or the same stage in several runs) this gives mean +- std of each
//! numeric metric and how often each op was chosen on each edge. Only
//! instances whose params differ in `seed` alone are pooled.

use super::genodiff::state_name;
use super::load::Run;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize, Clone, Debug)]
pub struct Stat {
    pub metric: String,
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub std: f64,
}

/// On one edge (input state -> node) of one cell, how many of `of` genotypes chose `op`.
#[derive(Serialize, Clone, Debug)]
pub struct OpCount {
    pub cell: String,
    pub node: String,
    pub from: String,
    pub op: String,
    pub count: usize,
    pub of: usize,
}

#[derive(Serialize, Clone, Debug)]
pub struct SeedGroup {
    pub stage: String,
    /// The instances pooled: `label/instance`.
    pub members: Vec<String>,
    pub stats: Vec<Stat>,
    pub ops: Vec<OpCount>,
}

pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// One group per stage name that has two or more instances across `runs`.
pub fn seed_groups(runs: &[Run]) -> Vec<SeedGroup> {
    // Instances are pooled when their params differ in the seed only; a seed
    // seen twice (a rerun, a reused stage) counts once.
    let mut by_stage: BTreeMap<(String, String), Vec<(&Run, &super::load::StageData)>> = BTreeMap::new();
    let mut seen: std::collections::BTreeSet<(String, String, String)> = Default::default();
    for r in runs {
        for s in &r.stages {
            let Some(seed) = s.params.get("seed") else { continue };
            let mut rest = s.params.clone();
            rest.remove("seed");
            let key = (s.stage.clone(), serde_json::to_string(&rest).unwrap_or_default());
            if seen.insert((key.0.clone(), key.1.clone(), seed.to_string())) {
                by_stage.entry(key).or_default().push((r, s));
            }
        }
    }
    let mut out = Vec::new();
    let mut per_stage: BTreeMap<String, usize> = BTreeMap::new();
    for ((stage, _), members) in by_stage.into_iter().filter(|(_, m)| m.len() > 1) {
        let k = per_stage.entry(stage.clone()).or_insert(0);
        *k += 1;
        let stage = if *k > 1 { format!("{stage} (params set {k})") } else { stage };
        // Metrics: every numeric key of metrics.json, plus the best validation
        // accuracy of the curve (the last epoch is not the best one).
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (_, s) in &members {
            if let Some(m) = s.metrics.as_ref().and_then(|m| m.as_object()) {
                for (k, v) in m {
                    if let Some(f) = v.as_f64().filter(|f| f.is_finite()) {
                        values.entry(k.clone()).or_default().push(f);
                    }
                }
            }
            let best = s.curve.iter().filter_map(|r| r.get("valid_acc").and_then(|v| v.as_f64())).fold(f64::NAN, f64::max);
            if best.is_finite() {
                values.entry("best_valid_acc".into()).or_default().push(best);
            }
        }
        let stats: Vec<Stat> = values
            .into_iter()
            .filter(|(k, v)| v.len() > 1 && k != "epoch" && k != "epochs")
            .map(|(metric, v)| {
                let (mean, std) = mean_std(&v);
                Stat { metric, n: v.len(), mean, std }
            })
            .collect();
        let genos: Vec<_> = members.iter().filter_map(|(_, s)| s.genotype.as_ref()).collect();
        let mut ops = Vec::new();
        if genos.len() > 1 {
            for cell in ["normal", "reduce"] {
                let mut counts: BTreeMap<(usize, usize, String), usize> = BTreeMap::new();
                for g in &genos {
                    let c = if cell == "normal" { &g.normal } else { &g.reduce };
                    for (i, node) in c.nodes.iter().enumerate() {
                        // An op chosen twice on one edge of one genotype counts once.
                        let mut seen = std::collections::BTreeSet::new();
                        for e in node.iter().filter(|e| e.op != nasflow_nas::genotype::NONE_OP) {
                            if seen.insert((e.input, e.op.clone())) {
                                *counts.entry((i, e.input, e.op.clone())).or_insert(0) += 1;
                            }
                        }
                    }
                }
                ops.extend(counts.into_iter().map(|((i, from, op), count)| OpCount { cell: cell.into(), node: state_name(i + 2), from: state_name(from), op, count, of: genos.len() }));
            }
        }
        if stats.is_empty() && ops.is_empty() {
            continue;
        }
        out.push(SeedGroup { stage, members: members.iter().map(|(r, s)| format!("{}/{}", r.label(), s.name)).collect(), stats, ops });
    }
    out
}

pub fn text(groups: &[SeedGroup]) -> String {
    let mut s = String::new();
    for g in groups {
        s += &format!("\nstage {} over {} instances ({}):\n", g.stage, g.members.len(), g.members.join(", "));
        for st in &g.stats {
            s += &format!("  {:<18} {:>12.4} +- {:<10.4} (n={})\n", st.metric, st.mean, st.std, st.n);
        }
        if !g.ops.is_empty() {
            s += "  ops chosen per edge:\n";
            for o in &g.ops {
                s += &format!("    {} {} <- {:<8} {:<16} {}/{}\n", o.cell, o.node, o.from, o.op, o.count, o.of);
            }
        }
    }
    s
}
