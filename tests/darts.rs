//! DARTS end to end through the binary, on a tiny configuration of the
//! embedded digits: every stage's artifacts, reproducibility across caches,
//! resume after a kill, and a missing data set.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tiny(epochs: usize) -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist10k");
    format!(
        r#"
pipeline: darts-tiny
data:
  mnist: {{ format: idx, path: "{}" }}
stages:
  search:
    op: darts.search
    data: mnist
    params: {{ layers: 3, init_channels: 2, epochs: {epochs}, batch_size: 8, steps_per_epoch: 3, max_valid_samples: 16, eval_batch_size: 16, flip: false, crop_padding: 2, seed: 5 }}
  derive:
    op: genotype.derive
    inputs: {{ alphas: search.alphas }}
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

fn run_dir(r: &serde_json::Value) -> PathBuf {
    PathBuf::from(r["path"].as_str().unwrap())
}

#[test]
fn every_stage_leaves_its_artifacts_and_a_rerun_runs_nothing() {
    let p = Project::new();
    p.write("tiny.yaml", &tiny(2));
    let r = p.run("tiny.yaml", &[]);
    assert_eq!(r["status"], "ok", "{r:#}");
    assert_eq!(ran(&r), ["derive", "retrain", "search", "test", "visualize"]);
    let d = run_dir(&r);
    let normal = candle_core::Tensor::read_npy(d.join("search/alphas/normal.npy")).unwrap();
    assert_eq!(normal.dims(), [14, 8]);
    assert!(d.join("search/alphas/epochs/001_reduce.npy").exists());
    assert!(d.join("search/supernet.safetensors").exists());
    let curve = std::fs::read_to_string(d.join("search/metrics.jsonl")).unwrap();
    assert_eq!(curve.lines().count(), 2);
    let g = std::fs::read_to_string(d.join("derive/genotype/genotype.txt")).unwrap();
    assert!(g.starts_with("Genotype(normal=[("), "{g}");
    // The search's own final genotype and the derive stage agree (same rule).
    assert_eq!(g, std::fs::read_to_string(d.join("search/genotype/genotype.txt")).unwrap());
    let svg = std::fs::read_to_string(d.join("visualize/cells/normal.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("k\u{2212}1") && svg.contains("</svg>"), "{svg}");
    assert!(d.join("visualize/cells/reduce.dot").exists());
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("test/metrics.json")).unwrap()).unwrap();
    assert_eq!(m["test_samples"], 2000);
    let acc = m["test_acc"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&acc) && (m["test_error"].as_f64().unwrap() - (100.0 - acc)).abs() < 1e-9);
    assert!(m["params"].as_u64().unwrap() > 0);
    let again = p.run("tiny.yaml", &[]);
    assert!(ran(&again).is_empty(), "{:?}", statuses(&again));
}

#[test]
fn same_seed_same_genotype_across_caches() {
    let a = Project::new();
    let b = Project::new();
    for p in [&a, &b] {
        p.write("tiny.yaml", &tiny(1));
    }
    let (ra, rb) = (a.run("tiny.yaml", &["-p", "retrain.epochs=1"]), b.run("tiny.yaml", &[]));
    let read = |r: &serde_json::Value, f: &str| std::fs::read(run_dir(r).join(f)).unwrap();
    assert_eq!(read(&ra, "search/alphas/normal.npy"), read(&rb, "search/alphas/normal.npy"));
    assert_eq!(read(&ra, "derive/genotype/genotype.json"), read(&rb, "derive/genotype/genotype.json"));
    // And another seed searches differently.
    let c = b.run("tiny.yaml", &["-p", "search.seed=6"]);
    assert_ne!(read(&rb, "search/alphas/normal.npy"), read(&c, "search/alphas/normal.npy"));
}

#[test]
fn a_killed_search_resumes_from_its_last_epoch() {
    let straight = Project::new();
    straight.write("tiny.yaml", &tiny(3));
    let reference = straight.run("tiny.yaml", &[]);

    let p = Project::new();
    p.write("tiny.yaml", &tiny(3));
    let mut child = p.cmd(&["run", "tiny.yaml"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait for the first epoch's checkpoint, then kill -9 the whole run.
    let work = p.path().join("runs/.cache/work");
    let t = Instant::now();
    loop {
        let found = std::fs::read_dir(&work).ok().into_iter().flatten().flatten().any(|e| e.path().join("checkpoint.json").exists());
        if found {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let r = p.run("tiny.yaml", &[]);
    assert_eq!(r["status"], "ok");
    let log = std::fs::read_to_string(run_dir(&r).join("logs/search.log")).unwrap();
    assert!(log.contains("resuming from checkpoint"), "{log}");
    let read = |r: &serde_json::Value, f: &str| std::fs::read(run_dir(r).join(f)).unwrap();
    assert_eq!(read(&r, "search/alphas/normal.npy"), read(&reference, "search/alphas/normal.npy"), "the resumed search differs from an uninterrupted one");
}

#[test]
fn a_missing_data_set_is_a_clear_error() {
    let p = Project::new();
    p.write("c.yaml", "pipeline: c\ndata:\n  cifar10: { format: cifar10-bin, path: datasets/cifar-10-batches-bin }\nstages:\n  search: { op: darts.search, data: cifar10 }\n");
    let out = p.nasflow(&["run", "c.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data set `cifar10` (format cifar10-bin) not found at datasets/cifar-10-batches-bin") && err.contains("datasets/README.md"), "{err}");
    assert!(!p.path().join("runs").exists(), "a run directory was created for a pipeline that cannot run");
}
