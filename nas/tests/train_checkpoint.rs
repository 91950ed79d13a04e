//! Checkpoints: round trip, absence, and clear errors for damaged files.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use nasflow_nas::train::checkpoint::{Checkpoint, META_FILE, TENSORS_FILE};

fn sample() -> Checkpoint {
    let dev = Device::Cpu;
    let mut model = HashMap::new();
    model.insert(
        "cells.0.w".to_string(),
        Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev).unwrap(),
    );
    model.insert(
        "bn.running_mean".to_string(),
        Tensor::new(&[0.5f32], &dev).unwrap(),
    );
    let mut ck = Checkpoint {
        model,
        meta: serde_json::json!({ "epochs_done": 3 }),
        ..Default::default()
    };
    ck.optimizers.insert(
        "weights".into(),
        vec![(
            "momentum_buffer.cells.0.w".into(),
            Tensor::new(&[[0.1f32, 0.2], [0.3, 0.4]], &dev).unwrap(),
        )],
    );
    ck.optimizers.insert(
        "arch".into(),
        vec![("adam.step.alphas".into(), Tensor::new(7f64, &dev).unwrap())],
    );
    ck.extra
        .insert("alphas".into(), Tensor::new(&[9f32, 8.0], &dev).unwrap());
    ck
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn missing_checkpoint_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Checkpoint::load(dir.path(), &Device::Cpu)
        .unwrap()
        .is_none());
    // A tensor file without its JSON is a save that never finished: none either.
    std::fs::write(dir.path().join(TENSORS_FILE), b"partial").unwrap();
    assert!(Checkpoint::load(dir.path(), &Device::Cpu)
        .unwrap()
        .is_none());
}

#[test]
fn round_trip_keeps_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let ck = sample();
    ck.save(dir.path()).unwrap();
    let back = Checkpoint::load(dir.path(), &Device::Cpu).unwrap().unwrap();
    assert_eq!(back.meta, ck.meta);
    assert_eq!(back.model.len(), 2);
    for (name, t) in &ck.model {
        assert_eq!(flat(&back.model[name]), flat(t), "{name}");
    }
    assert_eq!(back.optimizer("weights")[0].0, "momentum_buffer.cells.0.w");
    assert_eq!(
        flat(&back.optimizer("weights")[0].1),
        flat(&ck.optimizers["weights"][0].1)
    );
    assert_eq!(flat(&back.optimizer("arch")[0].1), vec![7.0]);
    assert!(back.optimizer("absent").is_empty());
    assert_eq!(flat(back.extra("alphas").unwrap()), vec![9.0, 8.0]);
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn damaged_checkpoints_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    sample().save(dir.path()).unwrap();
    let tensors = dir.path().join(TENSORS_FILE);
    let mut bytes = std::fs::read(&tensors).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&tensors, &bytes).unwrap();
    let err = format!(
        "{:#}",
        Checkpoint::load(dir.path(), &Device::Cpu).unwrap_err()
    );
    assert!(
        err.contains(TENSORS_FILE) && err.contains("delete"),
        "{err}"
    );

    sample().save(dir.path()).unwrap();
    std::fs::write(dir.path().join(META_FILE), b"{ not json").unwrap();
    let err = format!(
        "{:#}",
        Checkpoint::load(dir.path(), &Device::Cpu).unwrap_err()
    );
    assert!(
        err.contains(META_FILE) && err.contains("corrupt") && err.contains("delete"),
        "{err}"
    );

    sample().save(dir.path()).unwrap();
    std::fs::remove_file(&tensors).unwrap();
    let err = format!(
        "{:#}",
        Checkpoint::load(dir.path(), &Device::Cpu).unwrap_err()
    );
    assert!(
        err.contains(TENSORS_FILE) && err.contains("delete"),
        "{err}"
    );
}
