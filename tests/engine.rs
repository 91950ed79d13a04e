//! The engine's promises, end to end through the binary: caching by
//! fingerprint, status explanations, matrix and aggregate, parallelism.

mod common;
use common::*;

const PIPE: &str = r#"
pipeline: chain
description: four stages in a chain plus a side branch
params: { n: 3 }
stages:
  a:
    op: shell
    params: { cmd: 'echo "$NASFLOW_PARAM_n" > "$NASFLOW_OUT/a.txt"', vars: { n: "${params.n}" }, outs: [a.txt] }
  b:
    op: shell
    inputs: { x: a.a.txt }
    params: { cmd: 'cat "$NASFLOW_IN_x" "$NASFLOW_IN_x" > "$NASFLOW_OUT/b.txt"', outs: [b.txt] }
  c:
    op: shell
    inputs: { x: b.b.txt }
    params: { cmd: 'wc -l < "$NASFLOW_IN_x" > "$NASFLOW_OUT/c.txt"; cat dep.txt >> "$NASFLOW_OUT/c.txt"', deps: [dep.txt], outs: [c.txt] }
  side:
    op: shell
    params: { cmd: 'echo side > "$NASFLOW_OUT/s.txt"', outs: [s.txt] }
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("p.yaml", PIPE);
    p.write("dep.txt", "v1\n");
    p
}

#[test]
fn first_run_runs_everything_and_second_nothing() {
    let p = project();
    let r1 = p.run("p.yaml", &[]);
    assert_eq!(r1["status"], "ok");
    assert_eq!(ran(&r1), ["a", "b", "c", "side"]);
    let r2 = p.run("p.yaml", &[]);
    assert!(ran(&r2).is_empty(), "{:?}", statuses(&r2));
    assert!(statuses(&r2).iter().all(|(_, s)| s == "reused"));
    // Outputs are laid out in the new run directory too.
    let out = std::path::Path::new(r2["path"].as_str().unwrap()).join("c/c.txt");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "2\nv1\n");
}

#[test]
fn changing_one_param_reruns_that_stage_and_its_descendants() {
    let p = project();
    p.run("p.yaml", &[]);
    let r = p.run("p.yaml", &["-p", "b.cmd=cat \"$NASFLOW_IN_x\" > \"$NASFLOW_OUT/b.txt\""]);
    assert_eq!(ran(&r), ["b", "c"]);
    let r = p.run("p.yaml", &["-p", "params.n=4"]);
    assert_eq!(ran(&r), ["a", "b", "c"]);
}

#[test]
fn early_cutoff_when_a_rerun_produces_the_same_bytes() {
    let p = project();
    p.run("p.yaml", &[]);
    // A different command that writes the same file: b reruns, c does not.
    let r = p.run("p.yaml", &["-p", "b.cmd=cat \"$NASFLOW_IN_x\" \"$NASFLOW_IN_x\" >> \"$NASFLOW_OUT/b.txt\""]);
    assert_eq!(ran(&r), ["b"]);
}

#[test]
fn comments_and_descriptions_do_not_rerun() {
    let p = project();
    p.run("p.yaml", &[]);
    let edited = PIPE.replace("four stages in a chain", "a different description").replace("stages:\n", "# a comment\nstages:\n");
    p.write("p.yaml", &edited);
    let r = p.run("p.yaml", &[]);
    assert!(ran(&r).is_empty(), "{:?}", statuses(&r));
}

#[test]
fn changing_a_dep_file_reruns_its_stage() {
    let p = project();
    p.run("p.yaml", &[]);
    p.write("dep.txt", "v2\n");
    let r = p.run("p.yaml", &[]);
    assert_eq!(ran(&r), ["c"]);
}

#[test]
fn status_explains_what_changed() {
    let p = project();
    let out = p.nasflow(&["status", "p.yaml"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("a: never-run"));
    p.run("p.yaml", &[]);
    let out = p.nasflow(&["status", "p.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.lines().all(|l| l.ends_with(": fresh")), "{text}");
    p.write("dep.txt", "v2\n");
    let out = p.nasflow(&["status", "p.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("c: stale: dep dep.txt changed"), "{text}");
    p.write("dep.txt", "v1\n");
    let out = p.nasflow(&["status", "p.yaml", "-p", "params.n=7"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(r#"a: stale: params.vars {"n":3} -> {"n":7}"#), "{text}");
    assert!(text.contains("b: stale: upstream `a` will run first"), "{text}");
    assert!(text.contains("side: fresh"), "{text}");
    // With a fresh upstream, the input digest is what changed: another
    // pipeline on the same cache runs only a and a changed b.
    let only_ab = PIPE.split("  c:\n").next().unwrap().replace("pipeline: chain", "pipeline: ab");
    p.write("ab.yaml", &only_ab);
    let other_b = "b.cmd=echo other > \"$NASFLOW_OUT/b.txt\"";
    p.run("ab.yaml", &["-p", other_b]);
    let out = p.nasflow(&["status", "p.yaml", "--json", "-p", other_b]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |n: &str| v["stages"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(get("b")["state"], "fresh");
    assert_eq!(get("c")["state"], "stale");
    assert_eq!(get("c")["reasons"], serde_json::json!(["input b.b.txt changed"]));
}

#[test]
fn matrix_fans_out_and_aggregate_folds() {
    let p = Project::new();
    p.write(
        "m.yaml",
        r#"
pipeline: fan
stages:
  train:
    op: shell
    matrix: { seed: [1, 2, 3, 4] }
    params: { cmd: 'echo "{\"acc\": $((NASFLOW_PARAM_seed * 10)), \"seed\": $NASFLOW_PARAM_seed}" > "$NASFLOW_OUT/m.json"', outs: [m.json] }
  test:
    op: shell
    inputs: { m: train.m.json }
    params: { cmd: 'cp "$NASFLOW_IN_m" "$NASFLOW_OUT/t.json"', outs: [t.json] }
  best:
    op: aggregate
    inputs: { metrics: test.t.json }
    params: { by: acc, mode: max }
"#,
    );
    let r = p.run("m.yaml", &["--jobs", "2"]);
    assert_eq!(r["status"], "ok");
    let names: Vec<String> = statuses(&r).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"train[seed=3]".to_string()) && names.contains(&"test[seed=4]".to_string()), "{names:?}");
    assert_eq!(names.len(), 9);
    let run_dir = std::path::Path::new(r["path"].as_str().unwrap());
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("best/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["n"], 4);
    assert_eq!(summary["metrics"]["acc"]["mean"], 25.0);
    assert!((summary["metrics"]["acc"]["std"].as_f64().unwrap() - 12.909944).abs() < 1e-5);
    assert_eq!(summary["metrics"]["acc"]["max"], 40.0);
    assert_eq!(summary["best"]["value"], 40);
    let best: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("best/best")).unwrap()).unwrap();
    assert_eq!(best["seed"], 4);
}

#[test]
fn independent_stages_run_at_once() {
    let p = Project::new();
    p.write(
        "par.yaml",
        r#"
pipeline: par
stages:
  x: { op: shell, params: { cmd: 'sleep 0.5; touch "$NASFLOW_OUT/xo"', outs: [xo] } }
  y: { op: shell, params: { cmd: 'sleep 0.5; touch "$NASFLOW_OUT/yo"', outs: [yo] } }
"#,
    );
    let r = p.run("par.yaml", &["--jobs", "2"]);
    let st = r["stages"].as_array().unwrap();
    let t = |s: &serde_json::Value, k: &str| chrono::DateTime::parse_from_rfc3339(s[k].as_str().unwrap()).unwrap();
    // The intervals overlap: y started before x ended.
    assert!(t(&st[1], "start") < t(&st[0], "end"), "{st:?}");
    // With one job they do not.
    let r = p.run("par.yaml", &["--jobs", "1", "-p", "x.seed=1", "-p", "y.seed=1"]);
    let st = r["stages"].as_array().unwrap();
    assert!(t(&st[1], "start") >= t(&st[0], "end"), "{st:?}");
}

#[test]
fn a_failing_stage_fails_the_run_and_skips_its_descendants() {
    let p = Project::new();
    p.write(
        "f.yaml",
        r#"
pipeline: fail
stages:
  bad: { op: shell, params: { cmd: 'echo oops >&2; exit 3', outs: [o] } }
  after: { op: shell, inputs: { i: bad.o }, params: { cmd: 'true', outs: [] } }
  fine: { op: shell, params: { cmd: 'touch "$NASFLOW_OUT/f"', outs: [f] } }
"#,
    );
    let out = p.nasflow(&["run", "f.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed  bad") && err.contains("exited with exit status: 3"), "{err}");
    let r = p.run("f.yaml", &[]);
    let s = statuses(&r);
    assert!(s.contains(&("bad".into(), "failed".into())) && s.contains(&("after".into(), "skipped".into())) && s.contains(&("fine".into(), "reused".into())), "{s:?}");
    // The stage log has the command's stderr.
    let log = std::path::Path::new(r["path"].as_str().unwrap()).join("logs/bad.log");
    assert!(std::fs::read_to_string(log).unwrap().contains("oops"));
}

#[test]
fn runs_and_show_list_runs() {
    let p = project();
    let r = p.run("p.yaml", &[]);
    let out = p.nasflow(&["runs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chain") && text.contains(r["id"].as_str().unwrap()), "{text}");
    let out = p.nasflow(&["runs", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["counts"]["ran"], 4);
    let out = p.nasflow(&["show", r["id"].as_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pipeline"], "chain");
    let out = p.nasflow(&["show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn extends_with_overrides() {
    let p = project();
    p.write("variant.yaml", "extends: p.yaml\npipeline: chain-variant\nparams: { n: 5 }\nstages:\n  side:\n    params: { seed: 9 }\n");
    let r = p.run("variant.yaml", &[]);
    assert_eq!(r["pipeline"], "chain-variant");
    let a = std::path::Path::new(r["path"].as_str().unwrap()).join("a/a.txt");
    assert_eq!(std::fs::read_to_string(a).unwrap(), "5\n");
}
