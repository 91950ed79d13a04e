//! Tiny synthetic data for the training and search tests, and helpers to compare tensors.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use nasflow_nas::data::{DataSplits, Dataset};
use rand::Rng as _;

/// 3x8x8 images of 4 classes whose class shows in their brightness, so there
/// is something to learn; `seed` varies the noise.
pub fn dataset(n: usize, seed: usize) -> Dataset {
    let (c, h, w, classes) = (3, 8, 8, 4);
    let mut images = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % classes) as u8;
        labels.push(label);
        for p in 0..c * h * w {
            images.push(label * 50 + ((i * 31 + p * 17 + seed * 7) % 50) as u8);
        }
    }
    Dataset { images, labels, channels: c, height: h, width: w, num_classes: classes, mean: vec![0.5; c], std: vec![0.25; c] }
}

pub fn splits(train: usize, test: usize) -> DataSplits {
    DataSplits { train: dataset(train, 1), test: dataset(test, 2) }
}

/// Uniform(-1, 1) values of the given shape from `rng`.
pub fn uniform(shape: &[usize], rng: &mut nasflow_nas::rng::Rng) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The largest |a - b| over the largest |a| (at least 1e-6).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / scale).fold(0f32, f32::max)
}
