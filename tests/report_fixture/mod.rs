//! Fake run directories for the report and compare tests: run.json,
//! pipeline.json and the artifacts NAS stages write (metrics.jsonl, per-epoch
//! alphas as .npy, genotype.json), written by hand so that no search runs.
#![allow(dead_code)]

use nasflow_nas::genotype::Genotype;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn nasflow(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nasflow")).args(args).current_dir(cwd).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "nasflow panicked: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// One stage record of run.json.
pub fn stage(name: &str, op: &str, status: &str, seconds: f64, params: Value, metrics: Option<Value>) -> Value {
    let (base, coords) = match name.split_once('[') {
        Some((b, rest)) => {
            let (k, v) = rest.trim_end_matches(']').split_once('=').unwrap();
            (b.to_string(), json!({ k: v.parse::<i64>().unwrap() }))
        }
        None => (name.to_string(), json!({})),
    };
    let mut s = json!({
        "name": name, "stage": base, "op": op, "op_version": 1, "coords": coords, "status": status,
        "fingerprint": format!("{:064x}", name.len() as u64 * 7919 + seconds as u64),
        "preimage": { "op": op, "device": "cpu", "params": params },
        "outputs": {}, "log": format!("logs/{name}.log"),
    });
    if status == "ran" {
        s["seconds"] = json!(seconds);
        s["start"] = json!("2026-11-20T10:00:00.000Z");
        s["end"] = json!("2026-11-20T10:00:10.000Z");
    }
    if let Some(m) = metrics {
        s["metrics"] = m;
    }
    s
}

/// Writes `<root>/<pipeline>/<id>/` with run.json and pipeline.json; returns the folder.
pub fn write_run(root: &Path, pipeline: &str, id: &str, started: &str, status: &str, params: Value, stages: Vec<Value>) -> PathBuf {
    let dir = root.join(pipeline).join(id);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(started).unwrap() + chrono::Duration::seconds(125);
    let run = json!({
        "id": id, "pipeline": pipeline, "file": format!("pipelines/{pipeline}.yaml"), "started": started,
        "ended": ended.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "status": status, "host": "test",
        "nasflow_version": "0.1.0", "executor": "local", "overrides": [], "stages": stages,
    });
    std::fs::write(dir.join("run.json"), serde_json::to_vec_pretty(&run).unwrap()).unwrap();
    let pst: Vec<Value> = run["stages"].as_array().unwrap().iter().map(|s| json!({"name": s["stage"], "op": s["op"], "resources": {"cpus": null, "gpus": null}})).collect();
    let pj = json!({ "name": pipeline, "params": params, "data": { "mnist": { "format": "idx", "path": "datasets/mnist10k" } }, "stages": pst });
    std::fs::write(dir.join("pipeline.json"), serde_json::to_vec_pretty(&pj).unwrap()).unwrap();
    dir
}

/// The per-epoch records a search writes; valid_acc rises then dips so that
/// the best epoch is not the last one.
pub fn search_curve(seed: u64, epochs: usize) -> Vec<Value> {
    (0..epochs)
        .map(|e| {
            let s = seed as f64;
            let valid = if e + 1 == epochs && e > 0 { 25.0 + 10.0 * e as f64 + s } else { 40.0 + 10.0 * e as f64 + s };
            json!({"epoch": e, "lr": 0.025, "train_loss": 2.0 / (e as f64 + 1.0) + 0.01 * s, "train_acc": 30.0 + 12.0 * e as f64, "valid_loss": 2.2 / (e as f64 + 1.0), "valid_acc": valid, "arch_loss": 1.0, "genotype": "", "seconds": 3.0})
        })
        .collect()
}

pub fn write_jsonl(path: &Path, recs: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = recs.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A search stage's artifacts: curve, alphas per epoch (14 edges x 8 ops), genotype.
pub fn write_search(stage_dir: &Path, seed: u64, epochs: usize, genotype: &Genotype) {
    write_jsonl(&stage_dir.join("metrics.jsonl"), &search_curve(seed, epochs));
    let ep = stage_dir.join("alphas").join("epochs");
    std::fs::create_dir_all(&ep).unwrap();
    for e in 0..epochs {
        for cell in ["normal", "reduce"] {
            // Weight drifts towards op (edge % 8) as epochs go on.
            let v: Vec<f32> = (0..14 * 8).map(|i| if i % 8 == (i / 8) % 8 { 0.3 * e as f32 } else { 0.01 * (i % 5) as f32 }).collect();
            let t = candle_core::Tensor::from_vec(v, (14, 8), &candle_core::Device::Cpu).unwrap();
            t.write_npy(ep.join(format!("{e:03}_{cell}.npy"))).unwrap();
        }
    }
    write_genotype(stage_dir, genotype);
}

pub fn write_genotype(stage_dir: &Path, g: &Genotype) {
    let d = stage_dir.join("genotype");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("genotype.json"), g.to_json()).unwrap();
}

pub fn darts_v2() -> Genotype {
    nasflow_nas::genotype::builtin("DARTS_V2").unwrap()
}

/// The same architecture with each node's two entries listed the other way round.
pub fn reordered(g: &Genotype) -> Genotype {
    let mut g = g.clone();
    for n in g.normal.nodes.iter_mut().chain(g.reduce.nodes.iter_mut()) {
        n.reverse();
    }
    g.normal.concat.reverse();
    g
}

/// A DARTS-style run: search (with artifacts), derive, train (curve), test.
pub fn darts_run(root: &Path, id: &str, started: &str, lr: f64, search_status: &str, genotype: &Genotype, test_error: f64) -> PathBuf {
    let curve = search_curve(1, 3);
    let last = curve.last().unwrap().clone();
    let stages = vec![
        stage("search", "darts.search", search_status, 30.0, json!({"lr": lr, "epochs": 3, "seed": 1}), Some(last)),
        stage("derive", "genotype.derive", "ran", 0.5, json!({}), None),
        stage("train", "train", "ran", 60.0, json!({"epochs": 2, "seed": 1}), Some(json!({"test_acc": 100.0 - test_error, "params": 1_234_567}))),
        stage("test", "evaluate", "ran", 2.0, json!({}), Some(json!({"test_acc": 100.0 - test_error, "test_error": test_error, "params": 1_234_567}))),
    ];
    let dir = write_run(root, "darts-quick", id, started, "ok", json!({"seed": 1}), stages);
    write_search(&dir.join("search"), 1, 3, genotype);
    write_genotype(&dir.join("derive"), genotype);
    write_jsonl(&dir.join("train").join("metrics.jsonl"), &[json!({"epoch": 0, "train_loss": 1.5, "train_acc": 60.0, "test_loss": 1.2, "test_acc": 70.0}), json!({"epoch": 1, "train_loss": 0.9, "train_acc": 75.0, "test_loss": 0.8, "test_acc": 100.0 - test_error})]);
    dir
}
