//! Tiny synthetic data for the training and search tests.
#![allow(dead_code)]

use nasflow_nas::data::{DataSplits, Dataset};

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
