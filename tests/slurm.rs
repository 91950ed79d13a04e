//! The Slurm executor against a real Slurm (one node on localhost): a
//! fan-out, a failure and its cancelled dependants, reuse, a job killed
//! under a running stage, a second `nasflow run` attaching, and Ctrl-C.
//!
//! When `sinfo` does not answer, the test starts Slurm with
//! .ci/slurm/start-slurm.sh (root only) and stops it again at the end. Not
//! root and no Slurm: the test says so and does nothing.

mod common;
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sinfo_answers() -> bool {
    Command::new("sinfo").arg("-h").output().is_ok_and(|o| o.status.success())
}

fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/slurm").join(name)
}

/// Stops the cluster on drop when this test started it.
struct Cluster {
    started: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new("bash").arg(script("stop-slurm.sh")).status();
        }
    }
}

fn cluster() -> Option<Cluster> {
    if sinfo_answers() {
        return Some(Cluster { started: false });
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping the Slurm test: no Slurm answers and starting one needs root");
        return None;
    }
    let st = Command::new("bash").arg(script("start-slurm.sh")).status().expect("run start-slurm.sh");
    assert!(st.success(), "start-slurm.sh failed");
    assert!(sinfo_answers(), "Slurm was started but sinfo does not answer");
    Some(Cluster { started: true })
}

fn slurm_cmd(p: &Project, file: &str) -> Command {
    let mut c = p.cmd(&["run", file, "--executor", "slurm", "--json"]);
    c.env("NASFLOW_SLURM_POLL", "0.3");
    c
}

/// The same, printing progress (no --json).
fn slurm_cmd_verbose(p: &Project, file: &str) -> Command {
    let mut c = p.cmd(&["run", file, "--executor", "slurm"]);
    c.env("NASFLOW_SLURM_POLL", "0.3");
    c
}

fn run_slurm(p: &Project, file: &str) -> (i32, Value, String) {
    let out = slurm_cmd(p, file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad --json output ({e}): {}\n{err}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), v, err)
}

fn stage<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no stage {name} in {run}"))
}

/// The queue entries of a job (empty once it has left the queue).
fn queued(job: &str) -> String {
    let out = Command::new("squeue").args(["-h", "-r", "-j", job, "-o", "%i %T"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn scontrol(job: &str) -> String {
    String::from_utf8_lossy(&Command::new("scontrol").args(["show", "job", "-o", job]).output().unwrap().stdout).to_string()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The only run directory of pipeline `name` (panics if there are several).
fn run_json(p: &Project, name: &str) -> Value {
    let dirs: Vec<_> = std::fs::read_dir(p.path().join("runs").join(name)).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(dirs.len() <= 1, "expected one run directory, found {dirs:?}");
    dirs.first().and_then(|d| std::fs::read(d.join("run.json")).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
}

const FAN: &str = r#"
pipeline: slurm-fan
stages:
  prep:
    op: shell
    params: { cmd: 'echo 7 > "$NASFLOW_OUT/n.txt"', outs: [n.txt] }
  cell:
    op: shell
    inputs: { n: prep.n.txt }
    matrix: { seed: [1, 2, 3] }
    resources: { cpus: 1, mem: 100M, time: "00:05:00" }
    params: { cmd: 'echo "{\"score\": $(( $(cat "$NASFLOW_IN_n") * NASFLOW_PARAM_seed ))}" > "$NASFLOW_OUT/m.json"', outs: [m.json] }
  best:
    op: aggregate
    inputs: { metrics: cell.m.json }
    params: { by: score, mode: max }
  bad:
    op: shell
    inputs: { n: prep.n.txt }
    params: { cmd: 'echo going wrong; exit 3', outs: [x.txt] }
  after_bad:
    op: shell
    inputs: { x: bad.x.txt }
    params: { cmd: 'cp "$NASFLOW_IN_x" "$NASFLOW_OUT/y.txt"', outs: [y.txt] }
"#;

const SLOW: &str = r#"
pipeline: slurm-slow
stages:
  slow:
    op: shell
    params: { cmd: 'sleep 30; echo done > "$NASFLOW_OUT/s.txt"', outs: [s.txt] }
  next:
    op: shell
    inputs: { s: slow.s.txt }
    params: { cmd: 'cp "$NASFLOW_IN_s" "$NASFLOW_OUT/t.txt"', outs: [t.txt] }
"#;

#[test]
fn pipelines_run_through_a_real_slurm() {
    let Some(_cluster) = cluster() else { return };
    fan_out_failure_and_reuse();
    killed_job_and_attach();
    ctrl_c_cancels_the_jobs();
}

fn fan_out_failure_and_reuse() {
    let p = Project::new();
    p.write("fan.yaml", FAN);
    let (code, r, err) = run_slurm(&p, "fan.yaml");
    assert_eq!(code, 1, "a failed stage fails the run\n{err}");
    let status = |n: &str| stage(&r, n)["status"].as_str().unwrap().to_string();
    for n in ["prep", "cell[seed=1]", "cell[seed=2]", "cell[seed=3]", "best"] {
        assert_eq!(status(n), "ran", "{n}\n{err}");
    }
    assert_eq!(status("bad"), "failed");
    assert!(stage(&r, "bad")["error"].as_str().unwrap().contains("exit"), "{}", stage(&r, "bad"));
    assert_eq!(status("after_bad"), "skipped");
    // The fan-out is one job array; every stage had its own job.
    let job = |n: &str| stage(&r, n)["job"].as_str().unwrap_or_else(|| panic!("{n} has no job id")).to_string();
    let array = job("cell[seed=1]").split('_').next().unwrap().to_string();
    assert_eq!([job("cell[seed=1]"), job("cell[seed=2]"), job("cell[seed=3]")], [format!("{array}_0"), format!("{array}_1"), format!("{array}_2")]);
    // resources became sbatch options
    let info = scontrol(&job("cell[seed=2]"));
    assert!(info.contains("TimeLimit=00:05:00"), "{info}");
    assert!(info.contains("MinMemoryNode=100M") || info.contains("mem=100M"), "{info}");
    // The dependant of the failed stage was cancelled, not left pending forever.
    let ab = job("after_bad");
    assert_eq!(queued(&ab), "", "after_bad's job is still queued");
    assert!(scontrol(&ab).contains("JobState=CANCELLED"), "{}", scontrol(&ab));
    // The aggregate saw all three cells: max of 7*1, 7*2, 7*3.
    let best = &stage(&r, "best")["metrics"];
    assert_eq!((best["best"]["value"].as_f64(), best["n"].as_u64()), (Some(21.0), Some(3)), "{best}");

    // Again: everything that ran is reused and submits nothing; only the
    // failed stage (and its dependant) is submitted again.
    let (code, r2, err) = run_slurm(&p, "fan.yaml");
    assert_eq!(code, 1, "{err}");
    for n in ["prep", "cell[seed=1]", "cell[seed=2]", "cell[seed=3]", "best"] {
        assert_eq!(stage(&r2, n)["status"], "reused", "{n}");
        assert!(stage(&r2, n)["job"].is_null(), "a reused stage was submitted: {}", stage(&r2, n));
    }
    assert!(stage(&r2, "bad")["job"].is_string());
    assert_ne!(stage(&r2, "bad")["job"], stage(&r, "bad")["job"], "the failed stage was submitted again");
}

fn killed_job_and_attach() {
    let p = Project::new();
    p.write("slow.yaml", SLOW);
    let first = slurm_cmd(&p, "slow.yaml").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut slow_job = String::new();
    wait_for("slow to run", 60, || {
        let r = run_json(&p, "slurm-slow");
        slow_job = r["stages"][0]["job"].as_str().unwrap_or("").to_string();
        r["stages"][0]["status"] == "running"
    });
    // A second run while the jobs are in flight follows them: no new run, no new jobs.
    let second = slurm_cmd_verbose(&p, "slow.yaml").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = run_json(&p, "slurm-slow"); // still one run directory
    // Status shows the job ids of the running pipeline.
    let st = p.nasflow(&["status", "slow.yaml"]);
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains(&format!("slurm job {slow_job} (running)")), "{st}");
    // The job is killed under the stage (as a timeout or a preemption would).
    assert!(Command::new("scancel").arg(&slow_job).status().unwrap().success());
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    let (ea, eb) = (String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    assert_eq!(a.status.code(), Some(1), "{ea}");
    assert_eq!(b.status.code(), Some(1), "{eb}");
    assert!(eb.contains("following them") && !eb.contains("submitted"), "the second run submitted again:\n{eb}");
    let r = run_json(&p, "slurm-slow");
    assert_eq!(r["stages"][0]["status"], "failed");
    assert!(r["stages"][0]["error"].as_str().unwrap().contains("CANCELLED"), "{}", r["stages"][0]);
    assert_eq!(r["stages"][1]["status"], "skipped");
    assert_eq!(queued(r["stages"][1]["job"].as_str().unwrap()), "", "the dependant stayed queued");
}

fn ctrl_c_cancels_the_jobs() {
    let p = Project::new();
    p.write("slow.yaml", SLOW);
    let child = slurm_cmd(&p, "slow.yaml").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut jobs = Vec::new();
    wait_for("slow to run", 60, || {
        let r = run_json(&p, "slurm-slow");
        jobs = r["stages"].as_array().map(|s| s.iter().filter_map(|x| x["job"].as_str().map(str::to_string)).collect()).unwrap_or_default();
        r["stages"][0]["status"] == "running"
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    for j in &jobs {
        wait_for("the cancelled jobs to leave the queue", 20, || queued(j).is_empty());
    }
    assert_eq!(run_json(&p, "slurm-slow")["status"], "interrupted");
}
