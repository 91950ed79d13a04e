//! Retraining a genotype and evaluating it, on tiny synthetic data (C=4, L=3,
//! 8×8 images, two steps per epoch).

mod common;

use nasflow_nas::data::{Augment, DataSplits};
use nasflow_nas::genotype::builtin;
use nasflow_nas::train::retrain::{evaluate, train, TrainConfig};
use nasflow_nas::train::Silent;

fn splits() -> DataSplits {
    common::splits(12, 6)
}

fn tiny(epochs: usize) -> TrainConfig {
    TrainConfig {
        init_channels: 4,
        layers: 3,
        epochs,
        batch_size: 4,
        auxiliary: true,
        augment: Augment {
            crop_padding: 1,
            flip: true,
            cutout: 2,
        },
        seed: 3,
        steps_per_epoch: Some(2),
        eval_batch_size: 4,
        ..TrainConfig::default()
    }
}

fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<_> = map
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn train_then_evaluate_agree_and_resume_is_exact() {
    let genotype = builtin("DARTS_V2").unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let first = train(&tiny(1), &genotype, &splits(), dir_a.path(), &mut Silent).unwrap();
    assert_eq!(first.resumed_from_epoch, 0);
    let resumed = train(&tiny(2), &genotype, &splits(), dir_a.path(), &mut Silent).unwrap();
    assert_eq!(resumed.resumed_from_epoch, 1);
    let straight = train(&tiny(2), &genotype, &splits(), dir_b.path(), &mut Silent).unwrap();
    assert_eq!(
        weights(&resumed.weights_path),
        weights(&straight.weights_path)
    );
    assert_eq!(
        resumed.metrics[1]["train_loss"],
        straight.metrics[1]["train_loss"]
    );

    let m = &straight.metrics;
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["lr"].as_f64().unwrap(), 0.025);
    assert_eq!(m[0]["drop_prob"].as_f64().unwrap(), 0.0);
    assert!((m[1]["drop_prob"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!(m[1]["train_loss"].as_f64().unwrap().is_finite());

    // Evaluating the saved weights reproduces the last epoch's test numbers.
    let eval = evaluate(&straight.weights_path, &genotype, &tiny(2), &splits().test).unwrap();
    assert!((eval.accuracy - m[1]["test_acc"].as_f64().unwrap()).abs() < 1e-9);
    assert!((eval.loss - m[1]["test_loss"].as_f64().unwrap()).abs() < 1e-5);
    assert!((eval.error - (100.0 - eval.accuracy)).abs() < 1e-12);
    assert_eq!(eval.params, straight.params);
    // The auxiliary head is excluded from the count, and is large at C=4.
    let without_aux = evaluate(
        &straight.weights_path,
        &genotype,
        &TrainConfig {
            auxiliary: false,
            ..tiny(2)
        },
        &splits().test,
    )
    .unwrap();
    assert_eq!(without_aux.params, eval.params);
    assert_eq!(without_aux.accuracy, eval.accuracy);

    // Weights for another network shape are refused, naming the file.
    let err = format!(
        "{:#}",
        evaluate(
            &straight.weights_path,
            &genotype,
            &TrainConfig {
                init_channels: 6,
                ..tiny(2)
            },
            &splits().test
        )
        .unwrap_err()
    );
    assert!(err.contains("weights.safetensors"), "{err}");
}

#[test]
fn diverging_training_fails_naming_epoch_and_step() {
    let genotype = builtin("DARTS_V2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        lr: 1e30,
        grad_clip: 1e30,
        steps_per_epoch: Some(3),
        ..tiny(1)
    };
    let err = format!(
        "{:#}",
        train(&cfg, &genotype, &splits(), dir.path(), &mut Silent).unwrap_err()
    );
    eprintln!("divergence error: {err}");
    assert!(
        err.contains("at epoch 0") && err.contains("loss is"),
        "{err}"
    );
    assert!(!dir.path().join("checkpoint.json").exists());
}
