//! Data sets: IDX (MNIST) and CIFAR-10 binary readers, splits, augmentation, batching.
//!
//! Images stay as bytes (NCHW) until a batch is made; a batch decodes them to
//! f32, augments and normalises them (see [`augment`]).

pub mod augment;
pub mod cifar;
pub mod idx;

pub use augment::{batches, random_batch, Augment, Batches};

use anyhow::{bail, Result};
use std::path::Path;

/// CIFAR-10 normalisation as DARTS uses it (spec §2.8).
pub const CIFAR10_MEAN: [f32; 3] = [0.491_399_68, 0.482_158_27, 0.446_531_24];
pub const CIFAR10_STD: [f32; 3] = [0.247_032_33, 0.243_485_05, 0.261_587_68];
/// The usual MNIST normalisation.
pub const MNIST_MEAN: [f32; 1] = [0.1307];
pub const MNIST_STD: [f32; 1] = [0.3081];

/// Labelled images as bytes, NCHW, plus what is needed to normalise them.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// N*C*H*W bytes, NCHW.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    /// Per channel, on the [0, 1] scale, for normalisation.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image (C*H*W).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The bytes of image `i` (CHW).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `idx`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If an index is out of range (indices come from code, not from users).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(idx.len() * self.image_len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            ..self.empty_like()
        }
    }

    /// Images `start..end`, a cheap contiguous copy.
    pub(crate) fn range(&self, start: usize, end: usize) -> Dataset {
        let n = self.image_len();
        Dataset {
            images: self.images[start * n..end * n].to_vec(),
            labels: self.labels[start..end].to_vec(),
            ..self.empty_like()
        }
    }

    fn empty_like(&self) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DataSplits {
    pub train: Dataset,
    pub test: Dataset,
}

const FORMATS: [&str; 2] = ["idx", "cifar10-bin"];

pub fn known_formats() -> &'static [&'static str] {
    &FORMATS
}

/// Loads a data set folder. `format`: "idx" (MNIST-style folder; mnist10k:
/// the first 8000 images are train, the last 2000 the held-out test set;
/// full MNIST: its own train/t10k files) or "cifar10-bin".
pub fn load(format: &str, path: &Path) -> Result<DataSplits> {
    match format {
        "idx" => idx::load_dir(path),
        "cifar10-bin" => cifar::load_dir(path),
        other => {
            let hint = crate::genotype::did_you_mean(other, &FORMATS)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            bail!(
                "unknown data set format \"{other}\"{hint}; known formats: {}",
                FORMATS.join(", ")
            )
        }
    }
}

/// The DARTS search split: the first `portion` of train (rounded down) for
/// the weights, the rest for the architecture (dataset order, no shuffle).
pub fn search_split(train: &Dataset, portion: f64) -> (Dataset, Dataset) {
    let n = train.len();
    let split = ((portion.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n);
    (train.range(0, split), train.range(split, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        Dataset {
            images: (0..n * 4).map(|v| v as u8).collect(),
            labels: (0..n).map(|v| v as u8).collect(),
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 10,
            mean: vec![0.5],
            std: vec![0.5],
        }
    }

    #[test]
    fn subset_keeps_order_and_metadata() {
        let d = tiny(5);
        let s = d.subset(&[3, 0, 3]);
        assert_eq!(s.labels, vec![3, 0, 3]);
        assert_eq!(s.images, vec![12, 13, 14, 15, 0, 1, 2, 3, 12, 13, 14, 15]);
        assert_eq!(
            (s.channels, s.height, s.width, s.num_classes),
            (1, 2, 2, 10)
        );
    }

    #[test]
    fn search_split_is_a_prefix_and_the_rest() {
        let d = tiny(10);
        let (a, b) = search_split(&d, 0.5);
        assert_eq!(a.labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(b.labels, vec![5, 6, 7, 8, 9]);
        let (a, b) = search_split(&d, 0.77);
        assert_eq!((a.len(), b.len()), (7, 3));
        let (a, b) = search_split(&d, 2.0);
        assert_eq!((a.len(), b.len()), (10, 0));
    }

    #[test]
    fn unknown_format_suggests_a_known_one() {
        let e = load("cifar10_bin", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean \"cifar10-bin\""), "{e}");
    }
}
