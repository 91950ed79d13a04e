//! Nothing lost: a killed run, two runs at once on one store, a corrupted
//! store object, Ctrl-C.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Every object in the store hashes to its name (no partial objects).
fn store_is_intact(p: &Project) {
    let objects = p.path().join("runs/.cache/objects");
    for shard in std::fs::read_dir(&objects).unwrap().flatten() {
        for obj in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let name = obj.file_name().to_string_lossy().to_string();
            assert!(!name.starts_with('.'), "a temp file was left in the store: {name}");
            let bytes = std::fs::read(obj.path()).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().to_string(), name, "object {name} does not match its digest");
        }
    }
}

const SLOW: &str = r#"
pipeline: slow
stages:
  first: { op: shell, params: { cmd: 'echo 1 > "$NASFLOW_OUT/f.txt"', outs: [f.txt] } }
  long:
    op: shell
    inputs: { f: first.f.txt }
    params: { cmd: 'echo partial > "$NASFLOW_OUT/l.txt"; touch started; sleep 30; echo done >> "$NASFLOW_OUT/l.txt"', outs: [l.txt] }
"#;

fn wait_for(path: &std::path::Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_mid_stage_loses_nothing() {
    let p = Project::new();
    p.write("s.yaml", SLOW);
    let mut child = p.cmd(&["run", "s.yaml"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_for(&p.path().join("started"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    store_is_intact(&p);
    // The next run reuses `first` and reruns `long` (made quick).
    std::fs::remove_file(p.path().join("started")).unwrap();
    let r = p.run("s.yaml", &["-p", "long.cmd=echo whole > \"$NASFLOW_OUT/l.txt\""]);
    assert_eq!(statuses(&r), [("first".to_string(), "reused".to_string()), ("long".to_string(), "ran".to_string())]);
    store_is_intact(&p);
}

#[test]
fn two_runs_at_once_on_one_store() {
    let p = Project::new();
    p.write(
        "c.yaml",
        r#"
pipeline: conc
stages:
  a: { op: shell, params: { cmd: 'sleep 0.3; echo a > "$NASFLOW_OUT/a"', outs: [a] } }
  b: { op: shell, inputs: { x: a.a }, params: { cmd: 'sleep 0.3; cat "$NASFLOW_IN_x" > "$NASFLOW_OUT/b"; echo ran >> ../count', outs: [b] } }
"#,
    );
    std::fs::create_dir_all(p.path().join("sub")).unwrap();
    std::fs::rename(p.path().join("c.yaml"), p.path().join("sub/c.yaml")).unwrap();
    let spawn = || p.cmd(&["run", "sub/c.yaml", "--json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (c1.wait_with_output().unwrap(), c2.wait_with_output().unwrap());
    for o in [&o1, &o2] {
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["status"], "ok");
    }
    // The stage ran once; the other run waited for it and reused it.
    assert_eq!(std::fs::read_to_string(p.path().join("count")).unwrap(), "ran\n");
    store_is_intact(&p);
}

#[test]
fn a_corrupted_object_is_detected_and_recomputed() {
    let p = Project::new();
    p.write("k.yaml", "pipeline: k\nstages:\n  a: { op: shell, params: { cmd: 'echo good > \"$NASFLOW_OUT/a.txt\"', outs: [a.txt] } }\n");
    let r = p.run("k.yaml", &[]);
    let digest = r["stages"][0]["outputs"]["a.txt"]["digest"].as_str().unwrap().to_string();
    let obj = p.path().join("runs/.cache/objects").join(&digest[..2]).join(&digest);
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&obj, perm).unwrap();
    std::fs::write(&obj, "evil\n").unwrap();
    let out = p.nasflow(&["run", "k.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is corrupt") && err.contains("recomputing"), "{err}");
    assert!(err.contains("ran     a"), "{err}");
    store_is_intact(&p);
}

#[test]
fn ctrl_c_stops_cleanly_and_says_what_finished() {
    let p = Project::new();
    p.write("s.yaml", SLOW);
    let child = p.cmd(&["run", "s.yaml"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for(&p.path().join("started"));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("finished before the interrupt: first"), "{err}");
    let runs = p.nasflow(&["runs", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(v[0]["status"], "interrupted");
    store_is_intact(&p);
}
