//! The device a stage runs on (`nasflow run --device auto|cpu|cuda`): CUDA is
//! refused at once by a build without it, CPU fingerprints are those of
//! before the device became a per-stage setting, and a stage's job file
//! carries its device to `nasflow exec-stage`.

mod common;
use common::*;
use std::collections::BTreeMap;

/// A model stage and a shell stage that both ask for a GPU.
fn pipe() -> String {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist10k");
    format!(
        r#"
pipeline: device-golden
data:
  mnist: {{ format: idx, path: {} }}
stages:
  search:
    op: darts.search
    data: mnist
    params: {{ layers: 2, init_channels: 4, epochs: 1, seed: 3 }}
    resources: {{ gpus: 1 }}
  derive:
    op: genotype.derive
    inputs: {{ alphas: search.alphas }}
  touch:
    op: shell
    params: {{ cmd: "echo hi > $NASFLOW_OUT/x", outs: [x] }}
    resources: {{ gpus: 1 }}
"#,
        data.display()
    )
}

const SHELL_ONLY: &str = r#"
pipeline: device-golden-shell
stages:
  touch:
    op: shell
    params: { cmd: "echo hi > $NASFLOW_OUT/x", outs: [x] }
    resources: { gpus: 1 }
"#;

// What nasflow computed for these stages before the device was a per-stage
// setting (commit 9356130, CPU build, `nasflow status --json`): a CPU stage's
// fingerprint must not change, or every cached CPU result would be lost.
const SEARCH_FP: &str = "6ff5bb217c1b6d7dd411a670e3b3f5010c79f17f50877f891195de03bb43ca6e";
const SHELL_FP: &str = "ab74c750081990428573ca37db8223a836591662bfb2ae068072d7078f70e588";

fn fingerprints(p: &Project, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["status", "p.yaml", "--json"];
    args.extend_from_slice(extra);
    let out = p.nasflow(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["stages"].as_array().unwrap().iter().filter_map(|s| Some((s["name"].as_str()?.to_string(), s["fingerprint"].as_str()?.to_string()))).collect()
}

#[test]
fn cuda_without_the_feature_is_refused_before_anything_runs() {
    if cfg!(feature = "cuda") {
        return; // this build can run it
    }
    let p = Project::new();
    p.write("p.yaml", &pipe());
    // The default cache (runs/.cache) and one named by NASFLOW_CACHE.
    let cache = p.path().join("cache");
    for (env, json) in [(false, false), (true, false), (false, true)] {
        let mut cmd = p.cmd(&["run", "p.yaml", "--device", "cuda"]);
        if json {
            cmd.arg("--json");
        }
        if env {
            cmd.env("NASFLOW_CACHE", &cache);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for want in ["--device cuda", "without CUDA", "cargo build --release --features cuda", "docs/cuda.md", "--device cpu"] {
            assert!(err.contains(want), "`{want}` missing from: {err}");
        }
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(!p.path().join("runs").exists(), "a refused run left runs/");
        assert!(!cache.exists(), "a refused run created the cache");
    }
}

#[test]
fn cpu_and_auto_keep_the_fingerprints_of_before() {
    let p = Project::new();
    p.write("p.yaml", &pipe());
    let golden: BTreeMap<String, String> = [("search".to_string(), SEARCH_FP.to_string()), ("touch".to_string(), SHELL_FP.to_string())].into();
    assert_eq!(fingerprints(&p, &["--device", "cpu"]), golden);
    let auto = fingerprints(&p, &["--device", "auto"]);
    assert_eq!(fingerprints(&p, &[]), auto, "auto is the default");
    if cfg!(feature = "cuda") {
        // The model stage asks for a GPU and gets it; the shell op runs no model.
        assert_ne!(auto["search"], SEARCH_FP);
        assert_eq!(auto["touch"], SHELL_FP);
    } else {
        assert_eq!(auto, golden);
    }
    if !cfg!(feature = "cuda") {
        return;
    }
    // (A CUDA build can also say what --device cuda would do.)
    let cuda = fingerprints(&p, &["--device", "cuda"]);
    assert_eq!(cuda["search"], auto["search"]);
}

#[test]
fn auto_and_cpu_runs_share_the_cpu_record() {
    let p = Project::new();
    p.write("p.yaml", SHELL_ONLY);
    let out = p.nasflow(&["run", "p.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if !cfg!(feature = "cuda") {
        // The scheduler still says why a GPU request is not honoured.
        assert!(String::from_utf8_lossy(&out.stderr).contains("asks for 1 GPU(s); this nasflow has no CUDA"));
    }
    // A shell op runs no model: "cpu" under any --device, on any build.
    let r = p.run("p.yaml", &["--device", "cpu"]);
    assert_eq!(statuses(&r), [("touch".to_string(), "reused".to_string())]);
    let s = &r["stages"][0];
    assert_eq!(s["fingerprint"], SHELL_FP);
    assert_eq!(s["preimage"]["device"], "cpu");
}

/// The job file carries the device into the stage process: a model stage
/// told to run on CUDA by a build without it fails with the clear message
/// (stage name, how to fix), not a panic, and stores nothing.
#[test]
fn exec_stage_reads_the_device_from_its_job() {
    if cfg!(feature = "cuda") {
        return; // the stage would try the GPU
    }
    use nasflow::engine::exec::Job;
    let p = Project::new();
    let store = p.path().join("store");
    let dir = p.path().join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let params = nasflow::stages::registry()
        .get("darts.search")
        .unwrap()
        .params
        .iter()
        .map(|s| (s.name.to_string(), s.default.clone().unwrap()))
        .collect::<BTreeMap<_, _>>();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/mnist10k");
    let job = Job {
        stage: "search".into(),
        op: "darts.search".into(),
        op_version: 1,
        fingerprint: "0".repeat(64),
        preimage: serde_json::json!({"device": "cuda"}),
        params,
        inputs: BTreeMap::new(),
        data: Some(nasflow::engine::op::DataRef { name: "mnist".into(), format: "idx".into(), path: data }),
        base_dir: p.path().to_path_buf(),
        store: store.clone(),
        dir: dir.clone(),
        log: p.path().join("search.log"),
        show_progress: false,
        device: "cuda".into(),
        deferred: None,
    };
    let path = dir.join("job.json");
    std::fs::write(&path, serde_json::to_string(&job).unwrap()).unwrap();
    let back: Job = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back.device, "cuda");

    let out = p.nasflow(&["exec-stage", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "failed");
    let err = result["error"].as_str().unwrap();
    for want in ["stage `search`", "CUDA", "--features cuda", "--device cpu"] {
        assert!(err.contains(want), "`{want}` missing from: {err}");
    }
    let records = std::fs::read_dir(store.join("records")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(records, 0, "a failed stage left a record");
    assert!(std::fs::read_to_string(p.path().join("search.log")).unwrap().contains("(cuda)"), "the log names the device");
}
