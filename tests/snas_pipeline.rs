//! SNAS end to end through the binary, on a tiny configuration of the
//! embedded digits: every stage's artifacts (log-alphas per epoch,
//! temperature and resource statistics in metrics.jsonl, edge_all
//! genotypes), the retrain on the edge_all child, and the shipped pipelines
//! validating.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn tiny() -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist10k");
    format!(
        r#"
pipeline: snas-tiny
data:
  mnist: {{ format: idx, path: "{}" }}
stages:
  search:
    op: snas.search
    data: mnist
    params: {{ layers: 3, init_channels: 2, epochs: 2, batch_size: 8, steps_per_epoch: 3, max_valid_samples: 16, eval_batch_size: 16, flip: false, crop_padding: 2, seed: 5, temp_horizon: 4, arch_lr: 0.05 }}
  derive:
    op: genotype.derive
    inputs: {{ alphas: search.alphas }}
    params: {{ rule: edge_all }}
  retrain:
    op: train
    data: mnist
    inputs: {{ genotype: derive.genotype }}
    params: {{ layers: 2, init_channels: 2, epochs: 1, batch_size: 8, steps_per_epoch: 3, auxiliary: false, drop_path: 0.1, cutout: 0, flip: false, eval_batch_size: 500 }}
  test:
    op: evaluate
    data: mnist
    inputs: {{ model: retrain.model }}
    params: {{ eval_batch_size: 500 }}
  visualize:
    op: visualize
    inputs: {{ genotype: derive.genotype }}
"#,
        data.display()
    )
}

#[test]
fn snas_pipeline_leaves_its_artifacts() {
    let p = Project::new();
    p.write("tiny.yaml", &tiny());
    let r = p.run("tiny.yaml", &[]);
    assert_eq!(r["status"], "ok", "{r:#}");
    assert_eq!(ran(&r), ["derive", "retrain", "search", "test", "visualize"]);
    let d = PathBuf::from(r["path"].as_str().unwrap());
    for e in ["000", "001"] {
        let a = candle_core::Tensor::read_npy(d.join(format!("search/alphas/epochs/{e}_normal.npy"))).unwrap();
        assert_eq!(a.dims(), [14, 8]);
        assert!(d.join(format!("search/genotypes/epoch_{e}.txt")).exists());
    }
    let curve = std::fs::read_to_string(d.join("search/metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = curve.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    // Horizon 4, stepped at the epoch start: 1 - (e+1)/4 · 0.97.
    for (e, m) in records.iter().enumerate() {
        let want = 1.0 - (e as f64 + 1.0) / 4.0 * 0.97;
        assert!((m["temperature"].as_f64().unwrap() - want).abs() < 1e-9, "{m}");
        for key in ["expected_size", "expected_flops", "expected_mac"] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {m}");
        }
    }
    // edge_all: 14 entries per cell; the derive stage agrees with the search.
    let g = std::fs::read_to_string(d.join("derive/genotype/genotype.txt")).unwrap();
    assert_eq!(g, std::fs::read_to_string(d.join("search/genotype/genotype.txt")).unwrap());
    let normal = g.split("normal_concat").next().unwrap();
    assert_eq!(normal.matches("', ").count(), 14, "{g}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("test/metrics.json")).unwrap()).unwrap();
    assert_eq!(m["test_samples"], 2000);
    assert!(d.join("visualize/cells/normal.svg").exists());
}

#[test]
fn shipped_snas_pipelines_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["pipelines/snas.yaml", "pipelines/quick/snas.yaml"] {
        let path = root.join(file);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nasflow"))
            .args(["dag", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
