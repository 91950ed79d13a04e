//! `nasflow compare` and `nasflow runs` filters on hand-written run
//! directories (no search runs here): params that differ, headline metrics,
//! ran/reused, genotype diffs, seed statistics, and the error messages.

mod report_fixture;
use report_fixture::*;
use serde_json::{json, Value};

fn compare_json(root: &std::path::Path, args: &[&str]) -> Value {
    let mut a = vec!["compare", "--runs-dir", root.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    let out = nasflow(root, &a);
    assert!(out.status.success(), "compare failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(&out)))
}

fn metric(c: &Value, name: &str) -> Vec<Value> {
    c["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == name).unwrap_or_else(|| panic!("no metric {name} in {}", c["metrics"]))["values"].as_array().unwrap().clone()
}

#[test]
fn two_darts_runs_params_metrics_stages_and_reordered_genotype() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let g = darts_v2();
    darts_run(root, "20261120T100000Z-aaaaaa", "2026-11-20T10:00:00.000Z", 0.025, "ran", &g, 3.5);
    darts_run(root, "20261121T100000Z-bbbbbb", "2026-11-21T10:00:00.000Z", 0.05, "reused", &reordered(&g), 2.75);

    let c = compare_json(root, &["aaaaaa", "bbbbbb"]);
    let differ: Vec<&str> = c["params_differ"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(differ, vec!["search.lr"], "only the search lr differs: {}", c["params_differ"]);
    assert_eq!(c["params_differ"][0]["values"], json!([0.025, 0.05]));
    // Best validation accuracy is the best epoch (51 at epoch 1), not the last (46).
    assert_eq!(search_curve(1, 3).last().unwrap()["valid_acc"], json!(46.0));
    assert_eq!(metric(&c, "best_valid_acc"), vec![json!(51.0), json!(51.0)]);
    assert_eq!(metric(&c, "test_error"), vec![json!(3.5), json!(2.75)]);
    assert_eq!(metric(&c, "params"), vec![json!(1_234_567.0), json!(1_234_567.0)]);
    // Search time counts only where the search ran.
    assert_eq!(metric(&c, "search_seconds"), vec![json!(30.0), Value::Null]);
    assert_eq!(metric(&c, "wall_seconds"), vec![json!(125.0), json!(125.0)]);
    let search = c["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "search").unwrap();
    assert_eq!(search["runs"][0]["status"], "ran");
    assert_eq!(search["runs"][1]["status"], "reused");
    // Entries listed in another order are the same genotype.
    let pairs = c["genotypes"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "search and derive genotypes: {pairs:?}");
    assert!(pairs.iter().all(|p| p["diff"]["identical"] == true), "{pairs:?}");

    let out = nasflow(root, &["compare", "--runs-dir", root.to_str().unwrap(), "aaaaaa", "bbbbbb"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for want in ["search.lr", "0.025", "0.05", "best_valid_acc", "test_error", "reused", "identical"] {
        assert!(text.contains(want), "text output lacks `{want}`:\n{text}");
    }
}

#[test]
fn genotype_diff_names_the_node_edge_and_ops() {
    let a = darts_v2();
    let mut b = reordered(&a);
    // Node 1 of the reduce cell: change the op on its edge from state 1 (c_{k-1}).
    let e = b.reduce.nodes[1].iter_mut().find(|e| e.input == 1).expect("DARTS_V2 reduce node 1 reads c_{k-1}");
    let old = std::mem::replace(&mut e.op, "dil_conv_5x5".to_string());
    assert_ne!(old, "dil_conv_5x5");
    let d = nasflow::report::genodiff::diff(&a, &b);
    assert!(!d.identical);
    assert!(d.cells[0].identical, "normal cell only reordered");
    let changed: Vec<_> = d.cells[1].nodes.iter().filter(|n| !n.only_a.is_empty() || !n.only_b.is_empty()).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].node, "1");
    assert_eq!(changed[0].only_a[0].op, old);
    assert_eq!(changed[0].only_a[0].from, "c_{k-1}");
    assert_eq!(changed[0].only_b[0].op, "dil_conv_5x5");
    assert_eq!(changed[0].common.len(), 1);
    assert!(nasflow::report::genodiff::text(&d, "A", "B").contains("node 1: A: "));
}

#[test]
fn darts_vs_snas_shows_what_is_comparable() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let g = darts_v2();
    darts_run(root, "20261120T100000Z-aaaaaa", "2026-11-20T10:00:00.000Z", 0.025, "ran", &g, 3.0);
    let mut g2 = g.clone();
    g2.normal.nodes[0][0].op = "skip_connect".into();
    let stages = vec![
        stage("search", "snas.search", "ran", 40.0, json!({"lr": 0.025, "temperature": 1.0, "seed": 1}), None),
        stage("retrain", "train", "ran", 70.0, json!({"epochs": 2}), Some(json!({"test_acc": 97.0, "params": 2_000_000}))),
    ];
    let dir = write_run(root, "snas-quick", "20261122T100000Z-cccccc", "2026-11-22T10:00:00.000Z", "ok", json!({"seed": 1}), stages);
    write_search(&dir.join("search"), 2, 2, &g2);

    let c = compare_json(root, &["aaaaaa", "cccccc"]);
    assert!(c["notes"][0].as_str().unwrap().contains("different pipelines"), "{}", c["notes"]);
    assert_eq!(metric(&c, "test_error"), vec![json!(3.0), json!(3.0)]);
    assert_eq!(metric(&c, "search_seconds"), vec![json!(30.0), json!(40.0)]);
    let not_shared: Vec<&str> = c["stages_not_shared"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(not_shared, vec!["derive", "train", "test", "retrain"]);
    let keys: Vec<&str> = c["params_differ"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["search.epochs", "search.temperature"], "params of shared stages only");
    let finals: Vec<&Value> = c["genotypes"].as_array().unwrap().iter().filter(|p| p["stage"] == "final").collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0]["diff"]["identical"], false);
}

#[test]
fn seeds_mean_std_and_op_frequency() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let a = darts_v2();
    let mut b = a.clone();
    b.normal.nodes[0][0].op = "skip_connect".into();
    let gs = [a.clone(), a.clone(), b];
    let stages: Vec<Value> = (1..=3).map(|s| stage(&format!("search[seed={s}]"), "darts.search", "ran", 10.0, json!({"lr": 0.025, "seed": s}), Some(json!({"valid_acc": 50.0 + s as f64})))).collect();
    let dir = write_run(root, "darts-seeds", "20261120T100000Z-dddddd", "2026-11-20T10:00:00.000Z", "ok", json!({}), stages);
    for (i, g) in gs.iter().enumerate() {
        write_search(&dir.join(format!("search[seed={}]", i + 1)), i as u64 + 1, 2, g);
    }
    let other = darts_run(root, "20261121T100000Z-eeeeee", "2026-11-21T10:00:00.000Z", 0.025, "ran", &a, 3.0);
    assert!(other.exists());

    let c = compare_json(root, &["dddddd", "eeeeee"]);
    let groups = c["seeds"].as_array().unwrap();
    let g = groups.iter().find(|g| g["stage"] == "search").unwrap_or_else(|| panic!("no search group: {groups:?}"));
    // The other run's search has the seed 1 and lr 0.025 but epochs set: another params set, not pooled.
    assert_eq!(g["members"].as_array().unwrap().len(), 3, "{g}");
    let stat = |m: &str| g["stats"].as_array().unwrap().iter().find(|s| s["metric"] == m).unwrap().clone();
    let v = stat("valid_acc");
    assert_eq!(v["n"], 3);
    assert!((v["mean"].as_f64().unwrap() - 52.0).abs() < 1e-9);
    assert!((v["std"].as_f64().unwrap() - 1.0).abs() < 1e-9, "sample std of 51, 52, 53 is 1");
    // Best validation accuracy per seed over 2 epochs: 40 + seed, then a dip to 35 + seed.
    let b = stat("best_valid_acc");
    assert!((b["mean"].as_f64().unwrap() - 42.0).abs() < 1e-9, "{b}");
    let first = &a.normal.nodes[0][0];
    let from = if first.input == 0 { "c_{k-2}" } else { "c_{k-1}" };
    let count = |op: &str| g["ops"].as_array().unwrap().iter().find(|o| o["cell"] == "normal" && o["node"] == "0" && o["from"] == from && o["op"] == op).map(|o| (o["count"].as_u64().unwrap(), o["of"].as_u64().unwrap()));
    assert_eq!(count(&first.op), Some((2, 3)));
    assert_eq!(count("skip_connect"), Some((1, 3)));
}

#[test]
fn runs_filters_and_sort() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let g = darts_v2();
    darts_run(root, "20261120T100000Z-aaaaaa", "2026-11-20T10:00:00.000Z", 0.025, "ran", &g, 3.5);
    darts_run(root, "20261121T100000Z-bbbbbb", "2026-11-21T10:00:00.000Z", 0.05, "ran", &g, 2.5);
    darts_run(root, "20261122T100000Z-cccccc", "2026-11-22T10:00:00.000Z", 0.1, "ran", &g, 4.5);
    write_run(root, "snas-quick", "20261123T100000Z-ffffff", "2026-11-23T10:00:00.000Z", "failed", json!({}), vec![stage("search", "snas.search", "failed", 1.0, json!({}), None)]);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["runs", "--runs-dir", root.to_str().unwrap(), "--json"];
        a.extend_from_slice(args);
        let out = nasflow(root, &a);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()[17..].to_string()).collect()
    };
    assert_eq!(ids(&[]), vec!["aaaaaa", "bbbbbb", "cccccc", "ffffff"]);
    assert_eq!(ids(&["--pipeline", "snas-quick"]), vec!["ffffff"]);
    assert_eq!(ids(&["--status", "failed"]), vec!["ffffff"]);
    assert_eq!(ids(&["--since", "2026-11-21"]), vec!["bbbbbb", "cccccc", "ffffff"]);
    assert_eq!(ids(&["--since", "2026-11-21T10:00:01Z", "--status", "ok"]), vec!["cccccc"]);
    assert_eq!(ids(&["--sort", "test_error"]), vec!["bbbbbb", "aaaaaa", "cccccc", "ffffff"], "runs without the metric last");
    assert_eq!(ids(&["--sort", "test_error", "--reverse", "--pipeline", "darts-quick"]), vec!["cccccc", "aaaaaa", "bbbbbb"]);

    let bad = |args: &[&str], want: &str| {
        let mut a = vec!["runs", "--runs-dir", root.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = nasflow(root, &a);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    };
    bad(&["--since", "last tuesday"], "give a date (2026-11-20)");
    bad(&["--status", "done"], "one of running, ok, failed, interrupted");
    bad(&["--sort", "accuracy"], "try one of");
}

#[test]
fn compare_errors_say_what_to_give() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    darts_run(root, "20261120T100000Z-aaaaaa", "2026-11-20T10:00:00.000Z", 0.025, "ran", &darts_v2(), 3.5);
    let r = root.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["compare", "--runs-dir", r], "name the runs"),
        (&["compare", "--runs-dir", r, "aaaaaa"], "compare needs at least 2"),
        (&["compare", "--runs-dir", r, "aaaaaa", "zzzz"], "no run `zzzz`"),
        (&["compare", "--runs-dir", r, "--last", "2", "--pipeline", "nope"], "no runs of pipeline `nope`"),
    ];
    for (args, want) in cases {
        let out = nasflow(root, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // A damaged artifact is a note, not a failure.
    darts_run(root, "20261121T100000Z-bbbbbb", "2026-11-21T10:00:00.000Z", 0.025, "ran", &darts_v2(), 3.0);
    let bad = root.join("darts-quick/20261121T100000Z-bbbbbb/search/genotype/genotype.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let c = compare_json(root, &["--last", "2"]);
    assert!(c["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("genotype.json: not a genotype")), "{}", c["notes"]);
}
