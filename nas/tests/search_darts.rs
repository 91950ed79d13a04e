//! DARTS search on a tiny synthetic data set (C=4, L=3, 8×8 images, a few
//! steps): first and second order run and give a genotype, a seed fixes the
//! result, a resumed run equals an uninterrupted one, divergence is named.

mod common;

use std::path::Path;

use nasflow_nas::darts::search::{search, Order, SearchConfig, SearchOutcome, SearchState};
use nasflow_nas::data::{Augment, DataSplits};
use nasflow_nas::train::Silent;

fn splits() -> DataSplits {
    common::splits(16, 8)
}

fn tiny(order: Order, epochs: usize) -> SearchConfig {
    SearchConfig {
        layers: 3,
        init_channels: 4,
        epochs,
        batch_size: 4,
        order,
        seed: 5,
        steps_per_epoch: Some(2),
        augment: Augment {
            crop_padding: 1,
            flip: true,
            cutout: 0,
        },
        eval_batch_size: 8,
        max_valid_samples: Some(6),
        // Large enough that α visibly moves in two steps.
        arch_lr: 0.05,
        ..SearchConfig::default()
    }
}

fn run(cfg: &SearchConfig, dir: &Path) -> (SearchOutcome, SearchState) {
    search(cfg, &splits(), dir, &mut Silent).unwrap()
}

fn check_genotype(out: &SearchOutcome) {
    for cell in [&out.genotype.normal, &out.genotype.reduce] {
        assert_eq!(cell.nodes.len(), 4);
        for (i, node) in cell.nodes.iter().enumerate() {
            assert_eq!(node.len(), 2, "DARTS keeps two inputs per node");
            for e in node {
                assert!(e.input < i + 2);
                assert_ne!(e.op, "none");
            }
        }
    }
    assert_eq!(out.alphas_normal.len(), 14);
    assert_eq!(out.alphas_normal[0].len(), 8);
}

#[test]
fn first_order_search_is_seeded_and_writes_checkpoints() {
    let cfg = tiny(Order::First, 1);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_state) = run(&cfg, a_dir.path());
    let (b, _) = run(&cfg, b_dir.path());
    check_genotype(&a);
    assert_eq!(a.alphas_normal, b.alphas_normal);
    assert_eq!(a.alphas_reduce, b.alphas_reduce);
    assert_eq!(a.genotype, b.genotype);
    // α moved away from its 1e-3·N(0,1) init.
    let max = a
        .alphas_normal
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.01, "alphas did not move: max |α| = {max}");

    assert_eq!(a_state.metrics.len(), 1);
    assert_eq!(a_state.alphas_per_epoch.len(), 1);
    assert_eq!(a_state.alphas_per_epoch[0].normal, a.alphas_normal);
    let m = &a_state.metrics[0];
    for key in [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "valid_loss",
        "valid_acc",
        "genotype",
        "seconds",
    ] {
        assert!(m.get(key).is_some(), "metrics lack {key}: {m}");
    }
    assert_eq!(m["lr"].as_f64().unwrap(), 0.025);
    assert!(a_dir.path().join("checkpoint.safetensors").exists());
    assert!(a_dir.path().join("checkpoint.json").exists());
    assert!(a_state.supernet_weights.exists());

    let mut other = cfg.clone();
    other.seed = 6;
    let (c, _) = run(&other, tempfile::tempdir().unwrap().path());
    assert_ne!(a.alphas_normal, c.alphas_normal);
}

#[test]
fn second_order_search_runs_and_differs_from_first_order() {
    let dir = tempfile::tempdir().unwrap();
    let (second, state) = run(&tiny(Order::Second, 1), dir.path());
    check_genotype(&second);
    assert!(state.metrics[0]["train_loss"].as_f64().unwrap().is_finite());
    let (first, _) = run(&tiny(Order::First, 1), tempfile::tempdir().unwrap().path());
    assert_ne!(first.alphas_normal, second.alphas_normal);
}

#[test]
fn resumed_search_equals_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_, one) = run(&tiny(Order::Second, 1), dir.path());
    assert_eq!(one.resumed_from_epoch, 0);
    let (resumed, resumed_state) = run(&tiny(Order::Second, 2), dir.path());
    assert_eq!(resumed_state.resumed_from_epoch, 1);

    let straight_dir = tempfile::tempdir().unwrap();
    let (straight, straight_state) = run(&tiny(Order::Second, 2), straight_dir.path());
    assert_eq!(resumed.alphas_normal, straight.alphas_normal);
    assert_eq!(resumed.alphas_reduce, straight.alphas_reduce);
    assert_eq!(
        resumed_state.alphas_per_epoch,
        straight_state.alphas_per_epoch
    );
    assert_eq!(resumed.genotypes_per_epoch, straight.genotypes_per_epoch);
    for key in ["train_loss", "valid_loss", "arch_loss"] {
        assert_eq!(
            resumed_state.metrics[1][key], straight_state.metrics[1][key],
            "{key}"
        );
    }
    let w1 =
        candle_core::safetensors::load(&resumed_state.supernet_weights, &candle_core::Device::Cpu)
            .unwrap();
    let w2 =
        candle_core::safetensors::load(&straight_state.supernet_weights, &candle_core::Device::Cpu)
            .unwrap();
    for (name, t) in &w1 {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = w2[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }

    // A finished run reruns as a no-op with the same outcome.
    let (again, again_state) = run(&tiny(Order::Second, 2), dir.path());
    assert_eq!(again_state.resumed_from_epoch, 2);
    assert_eq!(again.alphas_normal, straight.alphas_normal);

    // Another configuration refuses to resume.
    let mut changed = tiny(Order::Second, 3);
    changed.lr = 0.05;
    let err = search(&changed, &splits(), dir.path(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another configuration") && err.contains("lr"),
        "{err}"
    );
}

#[test]
fn diverging_search_fails_naming_epoch_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(Order::First, 1);
    cfg.lr = 1e30;
    cfg.grad_clip = 1e30;
    cfg.steps_per_epoch = Some(4);
    let err = format!(
        "{:#}",
        search(&cfg, &splits(), dir.path(), &mut Silent).unwrap_err()
    );
    eprintln!("divergence error: {err}");
    assert!(err.contains("at epoch 0, step"), "{err}");
    assert!(
        err.contains("loss is NaN") || err.contains("loss is inf"),
        "{err}"
    );
    assert!(
        !dir.path().join("checkpoint.json").exists(),
        "no checkpoint from a diverged epoch"
    );
}
