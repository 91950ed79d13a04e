//! Every pipeline file shipped under pipelines/ is valid (parses, names
//! known ops and params, forms a DAG), so a param rename cannot silently
//! break a paper's pipeline.

use std::path::{Path, PathBuf};
use std::process::Command;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_pipeline_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("pipelines"), &mut files);
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let out = Command::new(env!("CARGO_BIN_EXE_nasflow")).arg("dag").arg(f).output().unwrap();
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_quick_darts_pipeline_runs_all_five_stages_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_nasflow")).arg("dag").arg(root.join("pipelines/quick/darts.yaml")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stages: Vec<&str> = text.lines().map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    assert_eq!(stages, ["search", "derive", "retrain", "test", "visualize"], "{text}");
}
