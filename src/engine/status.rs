//! `nasflow status`: per stage fresh, stale (and why, field by field) or
//! never run, without running anything.

use super::device::DevicePolicy;
use super::fingerprint::DigestCache;
use super::op::Registry;
use super::rundir::list_runs;
use super::scheduler::plan;
use super::store::{Artifact, Store};
use crate::pipeline::{Dag, Pipeline};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct StageState {
    pub name: String,
    /// fresh | stale | never-run | cannot-run (e.g. its data set is missing)
    pub state: String,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Each stage's state as `nasflow run` (default `--device auto`) would find it.
pub fn status(p: &Pipeline, registry: &Registry, runs_dir: &Path, store_dir: &Path) -> Result<Vec<StageState>> {
    status_on(p, registry, runs_dir, store_dir, DevicePolicy::Auto)
}

/// Each stage's state as `nasflow run --device ...` would find it (the
/// device is part of every fingerprint).
pub fn status_on(p: &Pipeline, registry: &Registry, runs_dir: &Path, store_dir: &Path, policy: DevicePolicy) -> Result<Vec<StageState>> {
    let dag = Dag::build(p, registry).map_err(|_| anyhow::anyhow!("the stages form a cycle"))?;
    let store = Store::open(store_dir)?;
    let digests = DigestCache::open(store_dir);
    // The last preimage recorded for each stage instance, newest run first.
    let mut previous: BTreeMap<String, Json> = BTreeMap::new();
    for (_, info) in list_runs(runs_dir).into_iter().rev().filter(|(_, i)| i.pipeline == p.name) {
        for s in info.stages {
            if let Some(pre) = s.preimage {
                if matches!(s.status, super::rundir::StageStatus::Ran | super::rundir::StageStatus::Reused) {
                    previous.entry(s.name).or_insert(pre);
                }
            }
        }
    }
    let mut outputs: Vec<Option<BTreeMap<String, Artifact>>> = vec![None; dag.instances.len()];
    let mut out = Vec::new();
    for (i, inst) in dag.instances.iter().enumerate() {
        let stale_ups: Vec<String> = inst.deps.iter().filter(|&&d| outputs[d].is_none()).map(|&d| dag.instances[d].id.clone()).collect();
        if !stale_ups.is_empty() {
            let state = if previous.contains_key(&inst.id) { "stale" } else { "never-run" };
            let reasons = stale_ups.iter().map(|u| format!("upstream `{u}` will run first")).collect();
            out.push(StageState { name: inst.id.clone(), state: state.into(), reasons, fingerprint: None });
            continue;
        }
        let planned = match plan(p, &dag, i, &outputs, registry, &digests, policy) {
            Ok(pl) => pl,
            Err(e) => {
                out.push(StageState { name: inst.id.clone(), state: "cannot-run".into(), reasons: vec![format!("{e:#}")], fingerprint: None });
                continue;
            }
        };
        if let Some(rec) = store.record(&planned.fingerprint) {
            outputs[i] = Some(rec.outputs);
            out.push(StageState { name: inst.id.clone(), state: "fresh".into(), reasons: vec![], fingerprint: Some(planned.fingerprint) });
            continue;
        }
        let (state, reasons) = match previous.get(&inst.id) {
            Some(old) => {
                let labels = p.stages[inst.stage].inputs.iter().map(|(k, r)| (k.clone(), format!("{}.{}", r.stage, r.output))).collect();
                ("stale", explain(old, &planned.preimage, &labels))
            }
            None => ("never-run", vec![]),
        };
        out.push(StageState { name: inst.id.clone(), state: state.into(), reasons, fingerprint: Some(planned.fingerprint) });
    }
    digests.save();
    Ok(out)
}

fn short(v: &Json) -> String {
    let s = match v {
        Json::String(s) => s.clone(),
        Json::Null => "(none)".into(),
        other => other.to_string(),
    };
    if s.len() > 40 {
        format!("{}…", &s[..s.char_indices().nth(39).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

/// What differs between two preimages, as a user would read it.
pub fn explain(old: &Json, new: &Json, input_labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut reasons = Vec::new();
    let field = |v: &Json, k: &str| v.get(k).cloned().unwrap_or(Json::Null);
    if field(old, "op") != field(new, "op") {
        reasons.push(format!("op {} -> {}", short(&field(old, "op")), short(&field(new, "op"))));
    } else if field(old, "op_version") != field(new, "op_version") {
        reasons.push(format!("op version {} -> {}", field(old, "op_version"), field(new, "op_version")));
    }
    for (section, label) in [("params", "params"), ("deps", "dep")] {
        let empty = serde_json::Map::new();
        let o = old.get(section).and_then(Json::as_object).unwrap_or(&empty);
        let n = new.get(section).and_then(Json::as_object).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for k in keys {
            let (a, b) = (o.get(k), n.get(k));
            if a != b {
                if section == "deps" {
                    reasons.push(format!("{label} {k} changed"));
                } else {
                    reasons.push(format!("{label}.{k} {} -> {}", a.map(short).unwrap_or("(unset)".into()), b.map(short).unwrap_or("(unset)".into())));
                }
            }
        }
    }
    let empty = serde_json::Map::new();
    let o = old.get("inputs").and_then(Json::as_object).unwrap_or(&empty);
    let n = new.get("inputs").and_then(Json::as_object).unwrap_or(&empty);
    for k in o.keys().chain(n.keys()).collect::<std::collections::BTreeSet<_>>() {
        if o.get(k) != n.get(k) {
            reasons.push(format!("input {} changed", input_labels.get(k.as_str()).unwrap_or(k)));
        }
    }
    if field(old, "data") != field(new, "data") {
        reasons.push("data set changed".into());
    }
    if field(old, "device") != field(new, "device") {
        reasons.push(format!("device {} -> {}", short(&field(old, "device")), short(&field(new, "device"))));
    }
    if reasons.is_empty() {
        reasons.push("no complete record in the store (it was removed, or the stage was interrupted)".into());
    }
    reasons
}
