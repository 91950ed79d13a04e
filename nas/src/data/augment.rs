//! Seeded batches with the DARTS training augmentation (spec §2.8):
//! random crop with zero padding, horizontal flip (p = 0.5), scale to [0, 1]
//! and normalise, then cutout on the normalised tensor.
//!
//! Reproducibility: the caller's generator shuffles and draws one seed per
//! iterator; image k of the epoch then gets its own generator (that seed,
//! stream k). Images are decoded in parallel (rayon), yet the result depends
//! only on the seed, never on the thread count or scheduling.

use super::Dataset;
use crate::rng::{rng_for, Rng};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rayon::prelude::*;

/// Training augmentation; the default is none (evaluation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augment {
    /// Zero padding on each side before a random crop back to H x W; 0 = off.
    pub crop_padding: usize,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
    /// Side of the cutout square (zeroed after normalisation); 0 = off.
    pub cutout: usize,
}

impl Augment {
    /// DARTS's CIFAR-10 retrain augmentation: crop 32 pad 4, flip, cutout 16.
    pub fn darts_train(cutout: usize) -> Augment {
        Augment {
            crop_padding: 4,
            flip: true,
            cutout,
        }
    }
}

/// Decodes image `src` (CHW bytes) into `out` (CHW f32), augmented and normalised.
fn decode(ds: &Dataset, src: &[u8], aug: &Augment, rng: &mut Rng, out: &mut [f32]) {
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    let pad = aug.crop_padding;
    // Draw order is fixed (crop, flip, cutout) so a seed always means the same image.
    let (dy, dx) = if pad > 0 {
        (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad))
    } else {
        (0, 0)
    };
    // Shift of the crop window relative to the unpadded image.
    let (dy, dx, p) = (dy as isize, dx as isize, pad as isize);
    let flip = aug.flip && rng.random_bool(0.5);
    let cut = (aug.cutout > 0).then(|| (rng.random_range(0..h), rng.random_range(0..w)));

    for ch in 0..c {
        // A padded pixel is 0 before normalisation, as torchvision pads.
        let (mean, std) = (
            ds.mean.get(ch).copied().unwrap_or(0.0),
            ds.std.get(ch).copied().unwrap_or(1.0),
        );
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + dy - p;
            for x in 0..w {
                // Crop first, then flip the cropped image (torchvision order).
                let xc = if flip { w - 1 - x } else { x };
                let sx = xc as isize + dx - p;
                let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                let v = if inside {
                    plane[sy as usize * w + sx as usize] as f32 / 255.0
                } else {
                    0.0
                };
                out[(ch * h + y) * w + x] = (v - mean) / std;
            }
        }
    }
    if let Some((cy, cx)) = cut {
        // DARTS Cutout: box [cy - L/2, cy + L/2) x [cx - L/2, cx + L/2), clipped.
        let half = aug.cutout / 2;
        let (y0, y1) = (cy.saturating_sub(half), (cy + half).min(h));
        let (x0, x1) = (cx.saturating_sub(half), (cx + half).min(w));
        for ch in 0..c {
            for y in y0..y1 {
                out[(ch * h + y) * w + x0..(ch * h + y) * w + x1].fill(0.0);
            }
        }
    }
}

/// Builds one batch: images `idx` of `ds`, image k with generator (seed, first + k).
fn make_batch(
    ds: &Dataset,
    idx: &[usize],
    aug: &Augment,
    seed: u64,
    first: u64,
) -> Result<(Tensor, Tensor)> {
    if ds.mean.len() != ds.channels || ds.std.len() != ds.channels || ds.std.contains(&0.0) {
        bail!(
            "data set normalisation is malformed: {} channels but mean {:?} and std {:?} (one non-zero std per channel needed)",
            ds.channels,
            ds.mean,
            ds.std
        );
    }
    let len = ds.image_len();
    if ds.images.len() != ds.len() * len {
        bail!(
            "data set is malformed: {} labels of {}x{}x{} images need {} bytes, it holds {}",
            ds.len(),
            ds.channels,
            ds.height,
            ds.width,
            ds.len() * len,
            ds.images.len()
        );
    }
    let mut data = vec![0f32; idx.len() * len];
    data.par_chunks_mut(len.max(1))
        .zip(idx.par_iter())
        .enumerate()
        .for_each(|(k, (out, &i))| {
            let mut rng = rng_for(seed, first + k as u64);
            decode(ds, ds.image(i), aug, &mut rng, out);
        });
    let images = Tensor::from_vec(
        data,
        (idx.len(), ds.channels, ds.height, ds.width),
        &Device::Cpu,
    )?;
    let labels: Vec<u32> = idx.iter().map(|&i| u32::from(ds.labels[i])).collect();
    let labels = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
    Ok((images, labels))
}

/// One pass over a data set in batches (an epoch). Tensors are on the CPU:
/// move them with `to_device`.
pub struct Batches<'a> {
    ds: &'a Dataset,
    order: Vec<usize>,
    pos: usize,
    batch_size: usize,
    augment: Augment,
    seed: u64,
    drop_last: bool,
    done: bool,
}

impl Batches<'_> {
    /// How many batches this pass yields in all.
    pub fn num_batches(&self) -> usize {
        match (self.batch_size, self.drop_last) {
            (0, _) => 1, // the error
            (b, true) => self.order.len() / b,
            (b, false) => self.order.len().div_ceil(b),
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.batch_size == 0 {
            self.done = true;
            return Some(Err(anyhow::anyhow!(
                "batch size is 0; it must be at least 1"
            )));
        }
        let left = self.order.len() - self.pos;
        if left == 0 || (self.drop_last && left < self.batch_size) {
            self.done = true;
            return None;
        }
        let take = left.min(self.batch_size);
        let idx = &self.order[self.pos..self.pos + take];
        let batch = make_batch(self.ds, idx, &self.augment, self.seed, self.pos as u64);
        self.pos += take;
        if batch.is_err() {
            self.done = true;
        }
        Some(batch)
    }
}

/// Seeded batches over `ds`: shuffled with `rng` if `shuffle` (else in data
/// set order), decoded to f32 `[B, C, H, W]` images and u32 `[B]` labels,
/// augmented per `augment`. With `drop_last` a short final batch is skipped.
pub fn batches<'a>(
    ds: &'a Dataset,
    batch_size: usize,
    shuffle: bool,
    augment: &Augment,
    rng: &mut Rng,
    drop_last: bool,
) -> Batches<'a> {
    let mut order: Vec<usize> = (0..ds.len()).collect();
    if shuffle {
        order.shuffle(rng);
    }
    let seed = rng.random::<u64>();
    Batches {
        ds,
        order,
        pos: 0,
        batch_size,
        augment: augment.clone(),
        seed,
        drop_last,
        done: false,
    }
}

/// A random batch of distinct images (all of them if `batch_size` exceeds the
/// set): what DARTS gets as "the first batch of a freshly created iterator"
/// over the architecture split, so across calls images repeat as if drawn
/// with replacement.
pub fn random_batch(
    ds: &Dataset,
    batch_size: usize,
    augment: &Augment,
    rng: &mut Rng,
) -> Result<(Tensor, Tensor)> {
    if ds.is_empty() {
        bail!("cannot draw a batch from an empty data set (is the search split portion 1.0?)");
    }
    if batch_size == 0 {
        bail!("batch size is 0; it must be at least 1");
    }
    let idx = rand::seq::index::sample(rng, ds.len(), batch_size.min(ds.len())).into_vec();
    let seed = rng.random::<u64>();
    make_batch(ds, &idx, augment, seed, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ds(n: usize, c: usize, side: usize) -> Dataset {
        Dataset {
            images: (0..n * c * side * side).map(|v| (v % 251) as u8).collect(),
            labels: (0..n).map(|v| (v % 10) as u8).collect(),
            channels: c,
            height: side,
            width: side,
            num_classes: 10,
            mean: vec![0.0; c],
            std: vec![1.0; c],
        }
    }

    fn decode_one(d: &Dataset, aug: &Augment, seed: u64) -> Vec<f32> {
        let mut out = vec![0.0; d.image_len()];
        decode(d, d.image(0), aug, &mut Rng::seed_from_u64(seed), &mut out);
        out
    }

    #[test]
    fn plain_decode_scales_and_normalises() {
        let mut d = ds(1, 2, 3);
        d.mean = vec![0.5, 0.0];
        d.std = vec![0.5, 2.0];
        let out = decode_one(&d, &Augment::default(), 0);
        for (k, v) in out.iter().enumerate() {
            let raw = d.images[k] as f32 / 255.0;
            let want = if k < 9 { (raw - 0.5) / 0.5 } else { raw / 2.0 };
            assert!((v - want).abs() < 1e-6);
        }
    }

    #[test]
    fn crop_shifts_with_zero_fill_and_flip_mirrors() {
        let d = ds(1, 1, 4);
        let src: Vec<f32> = d.images.iter().map(|&b| b as f32 / 255.0).collect();
        let aug = Augment {
            crop_padding: 2,
            flip: false,
            cutout: 0,
        };
        let mut saw_shift = false;
        for seed in 0..20 {
            let out = decode_one(&d, &aug, seed);
            // Every output pixel is either a source pixel or padding (0).
            let mut rng = Rng::seed_from_u64(seed);
            let (dy, dx) = (
                rng.random_range(0..=4usize) as isize - 2,
                rng.random_range(0..=4usize) as isize - 2,
            );
            for y in 0..4isize {
                for x in 0..4isize {
                    let (sy, sx) = (y + dy, x + dx);
                    let want = if (0..4).contains(&sy) && (0..4).contains(&sx) {
                        src[(sy * 4 + sx) as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(out[(y * 4 + x) as usize], want, "seed {seed}");
                }
            }
            saw_shift |= (dy, dx) != (0, 0);
        }
        assert!(saw_shift);
        let flip = Augment {
            crop_padding: 0,
            flip: true,
            cutout: 0,
        };
        let outs: Vec<Vec<f32>> = (0..20).map(|s| decode_one(&d, &flip, s)).collect();
        let mirrored: Vec<f32> = (0..16).map(|k| src[(k / 4) * 4 + 3 - k % 4]).collect();
        assert!(outs.contains(&src) && outs.contains(&mirrored));
        assert!(outs.iter().all(|o| *o == src || *o == mirrored));
    }

    #[test]
    fn cutout_box_is_clipped_at_borders() {
        let mut d = ds(1, 1, 8);
        d.images = vec![200; 64];
        let aug = Augment {
            crop_padding: 0,
            flip: false,
            cutout: 4,
        };
        for seed in 0..30 {
            let out = decode_one(&d, &aug, seed);
            let mut rng = Rng::seed_from_u64(seed);
            let (cy, cx): (usize, usize) = (rng.random_range(0..8), rng.random_range(0..8));
            let zeros = out.iter().filter(|v| **v == 0.0).count();
            let rows = (cy + 2).min(8) - cy.saturating_sub(2);
            let cols = (cx + 2).min(8) - cx.saturating_sub(2);
            assert_eq!(zeros, rows * cols, "seed {seed}");
            assert_eq!(out[cy * 8 + cx], 0.0);
        }
    }
}
