//! SNAS search on a tiny synthetic data set (C=4, L=3, 8×8 images, a few
//! steps): it runs single-level and writes what the spec lists, a seed fixes
//! the result, a resumed run equals an uninterrupted one, and a stronger
//! resource_lambda gives a cheaper expected child network.

mod common;

use std::path::Path;

use nasflow_nas::darts::search::{SearchOutcome, SearchState};
use nasflow_nas::data::{Augment, DataSplits};
use nasflow_nas::snas::{search, ArchOptimizer, Estimator, Penalty, SnasConfig, Temperature};
use nasflow_nas::train::Silent;

fn splits() -> DataSplits {
    common::splits(16, 8)
}

fn tiny(epochs: usize) -> SnasConfig {
    let mut cfg = SnasConfig::default();
    let s = &mut cfg.search;
    s.layers = 3;
    s.init_channels = 4;
    s.epochs = epochs;
    s.batch_size = 4;
    s.seed = 5;
    s.steps_per_epoch = Some(2);
    s.augment = Augment { crop_padding: 1, flip: true, cutout: 0 };
    s.eval_batch_size = 8;
    s.max_valid_samples = Some(6);
    // Large enough that log α visibly moves in a few steps.
    s.arch_lr = 0.05;
    cfg.snas.temperature = Temperature { horizon: 4, ..Temperature::default() };
    cfg
}

fn run(cfg: &SnasConfig, dir: &Path) -> (SearchOutcome, SearchState) {
    search(cfg, &splits(), dir, &mut Silent).unwrap()
}

#[test]
fn search_records_temperature_resources_and_edge_all_genotypes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(2);
    let (out, state) = run(&cfg, dir.path());
    assert_eq!(state.metrics.len(), 2);
    assert_eq!(state.alphas_per_epoch.len(), 2);
    assert_eq!(out.genotypes_per_epoch.len(), 2);
    for (e, m) in state.metrics.iter().enumerate() {
        let t = m["temperature"].as_f64().unwrap();
        assert!((t - cfg.snas.temperature.for_epoch(e)).abs() < 1e-12, "epoch {e}: {m}");
        for key in ["expected_size", "expected_flops", "expected_mac", "arch_loss", "train_loss", "valid_acc"] {
            assert!(m[key].as_f64().is_some_and(f64::is_finite), "epoch {e} lacks {key}: {m}");
        }
        assert!(m["expected_size"].as_f64().unwrap() > 0.0);
    }
    // edge_all: every node lists every predecessor, `none` included.
    for cell in [&out.genotype.normal, &out.genotype.reduce] {
        assert!(cell.is_edge_all(), "{}", out.genotype.to_darts_text());
    }
    // log α start near N(1, 0.01²) and are what the genotype was derived from.
    let a = &state.alphas_per_epoch[0].normal;
    assert_eq!((a.len(), a[0].len()), (14, 8));
    assert!(a.iter().flatten().all(|v| (v - 1.0).abs() < 0.5), "{a:?}");
    assert_eq!(out.alphas_normal, state.alphas_per_epoch[1].normal);
    // The single-level step moved the logits.
    assert_ne!(state.alphas_per_epoch[0].normal, state.alphas_per_epoch[1].normal);
}

#[test]
fn seeded_and_resumable() {
    // lr(e), not lr(e+1): a 1-epoch run then trains epoch 0 at the same lr as a 2-epoch run.
    let lr_at_epoch = |epochs| {
        let mut c = tiny(epochs);
        c.search.scheduler_step_at_start = false;
        c
    };
    let cfg = lr_at_epoch(2);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out_a, state_a) = run(&cfg, a.path());
    // One epoch, then the same stage asked for two: resumes from the checkpoint.
    run(&lr_at_epoch(1), b.path());
    let (out_b, state_b) = run(&cfg, b.path());
    assert_eq!(state_b.resumed_from_epoch, 1);
    assert_eq!(out_a.alphas_normal, out_b.alphas_normal);
    assert_eq!(out_a.alphas_reduce, out_b.alphas_reduce);
    assert_eq!(out_a.genotype, out_b.genotype);
    let strip = |m: &serde_json::Value| {
        let mut m = m.clone();
        m.as_object_mut().unwrap().remove("seconds");
        m
    };
    assert_eq!(strip(&state_a.metrics[1]), strip(&state_b.metrics[1]));
    // Another seed gives other logits.
    let mut other = lr_at_epoch(2);
    other.search.seed = 6;
    let (out_c, _) = run(&other, tempfile::tempdir().unwrap().path());
    assert_ne!(out_a.alphas_normal, out_c.alphas_normal);
}

#[test]
fn resuming_under_another_resource_lambda_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(&tiny(1), dir.path());
    let mut changed = tiny(2);
    changed.snas.resource.lambda = 0.5;
    let err = search(&changed, &splits(), dir.path(), &mut Silent).unwrap_err();
    assert!(format!("{err:#}").contains("another configuration"), "{err:#}");
}

#[test]
fn adam_and_other_estimators_run() {
    for (opt, est, pen) in [
        (ArchOptimizer::Adam, Estimator::PolicyGradient, Penalty::Linear),
        (ArchOptimizer::Sgd, Estimator::Discrete, Penalty::Log),
    ] {
        let mut cfg = tiny(1);
        cfg.search.steps_per_epoch = Some(1);
        cfg.snas.arch_optimizer = opt;
        cfg.snas.resource.estimator = est;
        cfg.snas.resource.penalty = pen;
        let (_, state) = run(&cfg, tempfile::tempdir().unwrap().path());
        assert!(state.metrics[0]["arch_loss"].as_f64().unwrap().is_finite());
    }
}

#[test]
fn stronger_resource_lambda_gives_a_smaller_expected_child() {
    let sizes: Vec<f64> = [0.0, 0.3, 3.0]
        .iter()
        .map(|&lambda| {
            let mut cfg = tiny(1);
            cfg.search.steps_per_epoch = Some(3);
            cfg.search.arch_lr = 0.1;
            cfg.snas.drop_path_prob = 0.0;
            cfg.snas.resource.lambda = lambda;
            let (_, state) = run(&cfg, tempfile::tempdir().unwrap().path());
            state.metrics[0]["expected_size"].as_f64().unwrap()
        })
        .collect();
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "expected sizes by lambda 0, 0.3, 3: {sizes:?}");
}

#[test]
fn bad_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(1);
    cfg.snas.drop_path_prob = 1.0;
    assert!(search(&cfg, &splits(), dir.path(), &mut Silent).is_err());
    let mut cfg = tiny(1);
    cfg.search.train_portion = 1.5;
    let err = search(&cfg, &splits(), dir.path(), &mut Silent).unwrap_err();
    assert!(format!("{err:#}").contains("(0, 1]"), "{err:#}");
}
