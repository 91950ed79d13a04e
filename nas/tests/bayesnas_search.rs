//! BayesNAS search on a tiny synthetic data set (C=2, 3 cells, 8×8 images):
//! the phases and artifacts are there, a seed fixes the result, and a larger
//! lambda prunes more switches.

use nasflow_nas::bayesnas::artifacts;
use nasflow_nas::bayesnas::derive::derive;
use nasflow_nas::bayesnas::search::{search, BayesSearchConfig, BayesSearchOutcome, HessianMethod};
use nasflow_nas::data::{Augment, DataSplits, Dataset};
use nasflow_nas::genotype::BAYESNAS_OPS;
use nasflow_nas::train::Silent;

fn dataset(n: usize, seed: u8) -> Dataset {
    let (c, h, w, classes) = (3, 8, 8, 3);
    let mut images = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % classes) as u8;
        labels.push(label);
        for p in 0..c * h * w {
            images.push(label * 60 + ((i * 31 + p * 17 + seed as usize * 7) % 60) as u8);
        }
    }
    Dataset { images, labels, channels: c, height: h, width: w, num_classes: classes, mean: vec![0.5; c], std: vec![0.25; c] }
}

fn tiny(lambda: f64) -> BayesSearchConfig {
    BayesSearchConfig {
        layers: 3,
        init_channels: 2,
        batch_size: 4,
        lambda_origin: lambda,
        lambda_child: lambda,
        warmup_portion: 0.25,
        switch_portion: 0.75,
        switch_steps: Some(12),
        // no momentum and a small lr: the switches shrink toward 0 without overshooting
        switch_lr: 0.05,
        switch_momentum: 0.0,
        hessian: HessianMethod::Hutchinson,
        hessian_probes: 2,
        augment: Augment { crop_padding: 1, flip: false, cutout: 0 },
        seed: 4,
        eval_batch_size: 8,
        ..BayesSearchConfig::default()
    }
}

fn run(cfg: &BayesSearchConfig) -> BayesSearchOutcome {
    let data = DataSplits { train: dataset(64, 1), test: dataset(8, 2) };
    let dir = tempfile::tempdir().unwrap();
    search(cfg, &data, dir.path(), &mut Silent).unwrap()
}

fn gamma(st: &nasflow_nas::bayesnas::update::SwitchStats) -> Vec<Vec<f32>> {
    (0..8).map(|e| (0..8).map(|t| st.gamma_of(e, t)).collect()).collect()
}

#[test]
fn search_writes_phases_and_reference_shaped_artifacts() {
    let out = run(&tiny(0.01));
    let phases: Vec<&str> = out.metrics.iter().map(|m| m["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["warmup", "switch"]);
    assert!(out.metrics[1]["regulariser"].as_f64().unwrap() > 0.0);
    assert_eq!((out.normal.cells, out.reduce.cells), (1, 2));
    // γ and ω are shared by the cells of a type
    for e in 0..8 {
        for t in 0..8 {
            assert_eq!(out.reduce.gamma[e * 8 + t], out.reduce.gamma[64 + e * 8 + t]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    artifacts::write(dir.path(), &out.normal, &out.reduce).unwrap();
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("gamma_reduct.json")).unwrap()).unwrap();
    let v = j["reduct_cell_1"]["sel_0_2"]["switch_avg_pool"].as_f64().unwrap();
    assert!((v - out.reduce.gamma_of(6, 6) as f64).abs() < 1e-6);
    assert!(j["norm_cell_0"].is_null());
    let n: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("switch_norm.json")).unwrap()).unwrap();
    assert!(n["norm_cell_0"]["in1_3"]["switch_all"].is_number());
    assert_eq!(artifacts::read_gamma(dir.path(), false).unwrap(), gamma(&out.normal));
    // a seed fixes the result
    assert_eq!(run(&tiny(0.01)).normal, out.normal);
}

#[test]
fn larger_lambda_prunes_more_switches() {
    let pruned = |lambda: f64| {
        let out = run(&tiny(lambda));
        let (g, d) = derive(&gamma(&out.normal), &gamma(&out.reduce), 1e-3).unwrap();
        g.validate(&BAYESNAS_OPS).unwrap();
        d.pruned_ops
    };
    let (weak, strong) = (pruned(1e-4), pruned(2.0));
    assert!(strong > weak, "lambda 2 pruned {strong} ops, lambda 1e-4 pruned {weak}");
}

#[test]
fn resumed_search_equals_uninterrupted_one() {
    let data = DataSplits { train: dataset(64, 1), test: dataset(8, 2) };
    let two = BayesSearchConfig { t_max: 2, switch_steps: Some(4), ..tiny(0.05) };
    let whole = search(&two, &data, tempfile::tempdir().unwrap().path(), &mut Silent).unwrap();

    // A first attempt that stops after round 1 (as a killed run would, at a
    // phase boundary), then the full run in the same folder resumes from it.
    let dir = tempfile::tempdir().unwrap();
    let one = BayesSearchConfig { t_max: 1, ..two.clone() };
    search(&one, &data, dir.path(), &mut Silent).unwrap();
    assert!(dir.path().join("checkpoint.json").exists());
    let resumed = search(&two, &data, dir.path(), &mut Silent).unwrap();
    assert_eq!(resumed.metrics.len(), 4);
    assert_eq!(resumed.rounds.len(), 2);
    assert_eq!(resumed.normal, whole.normal);
    assert_eq!(resumed.reduce, whole.reduce);
    assert_eq!(resumed.metrics, whole.metrics.iter().map(|m| {
        // wall-clock seconds differ between runs; everything else must not
        let mut m = m.clone();
        m["seconds"] = resumed.metrics[m["round"].as_u64().unwrap() as usize * 2 + (m["phase"] == "switch") as usize]["seconds"].clone();
        m
    }).collect::<Vec<_>>());

    // Another setting in the same folder is refused with advice, not mixed in.
    let other = BayesSearchConfig { lambda_child: 0.5, ..two };
    let err = search(&other, &data, dir.path(), &mut Silent).err().unwrap().to_string();
    assert!(err.contains("lambda_child") && err.contains("delete it to restart"), "{err}");
}
