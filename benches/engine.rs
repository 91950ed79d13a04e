//! Engine overhead: a no-op rerun of a 5-stage shell pipeline, and `status`
//! of a generated 100-stage pipeline (medians of repeated runs, through the
//! library as the CLI calls it). Writes bench/ENGINE.md.
//! Run: cargo bench --bench engine

use nasflow::engine::scheduler::{self, RunOptions};
use nasflow::stages::registry;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn opts(dir: &std::path::Path) -> RunOptions {
    let runs = dir.join("runs");
    RunOptions { store_dir: runs.join(".cache"), runs_dir: runs, jobs: 2, overrides: vec![], quiet: true, interrupted: Arc::new(AtomicBool::new(false)), device: Default::default() }
}

fn main() {
    // The bench needs the nasflow binary for the first (real) run of each stage.
    let exe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/nasflow");
    assert!(exe.exists(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let mut five = String::from("pipeline: five\nstages:\n");
    for i in 0..5 {
        let input = if i > 0 { format!("    inputs: {{ x: s{}.o }}\n", i - 1) } else { String::new() };
        five.push_str(&format!("  s{i}:\n    op: shell\n{input}    params: {{ cmd: 'echo {i} > \"$NASFLOW_OUT/o\"', outs: [o] }}\n"));
    }
    let five_path = dir.path().join("five.yaml");
    std::fs::write(&five_path, five).unwrap();
    let out = std::process::Command::new(&exe).args(["run", five_path.to_str().unwrap(), "--runs-dir"]).arg(dir.path().join("runs")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut noop = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let p = nasflow::pipeline::load(&five_path, &[], registry()).unwrap();
        let rd = scheduler::run(&p, registry(), &opts(dir.path())).unwrap();
        noop.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(rd.info.counts().0, 0, "a no-op rerun ran something");
    }

    let mut hundred = String::from("pipeline: hundred\nstages:\n");
    for i in 0..100 {
        let input = if i > 0 { format!("    inputs: {{ x: s{}.o }}\n", (i - 1) / 2) } else { String::new() };
        hundred.push_str(&format!("  s{i}:\n    op: shell\n{input}    params: {{ cmd: 'echo {i} > \"$NASFLOW_OUT/o\"', outs: [o] }}\n"));
    }
    let h_path = dir.path().join("hundred.yaml");
    std::fs::write(&h_path, hundred).unwrap();
    let out = std::process::Command::new(&exe).args(["run", h_path.to_str().unwrap(), "--runs-dir"]).arg(dir.path().join("runs")).output().unwrap();
    assert!(out.status.success());
    let mut status = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let p = nasflow::pipeline::load(&h_path, &[], registry()).unwrap();
        let s = nasflow::engine::status::status(&p, registry(), &dir.path().join("runs"), &dir.path().join("runs/.cache")).unwrap();
        status.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(s.iter().all(|x| x.state == "fresh"));
    }
    let (a, b) = (median(noop), median(status));
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let report = format!(
        "# Engine benchmark\n\n`cargo bench --bench engine` (after `cargo build --release`), {} UTC, {} ({} cores).\nMedians of 30, in-process as the CLI calls it (process start-up, about 5 ms, not included). Load average at the end: {}.\n\n| case | median | target |\n| --- | --- | --- |\n| no-op rerun, 5-stage shell pipeline (load, fingerprint, verify, lay out a run directory) | {a:.1} ms | < 50 ms |\n| `status`, generated 100-stage pipeline, all fresh | {b:.1} ms | < 100 ms |\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        cpu,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    std::fs::create_dir_all("bench").unwrap();
    std::fs::write("bench/ENGINE.md", &report).unwrap();
    print!("{report}");
}
