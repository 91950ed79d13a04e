//! Seeded batches: determinism, order, shapes, augmentation effects.

use nasflow_nas::data::{self, batches, random_batch, Augment, Dataset};
use nasflow_nas::rng::rng_for;

/// n images of 3 x 8 x 8; image i is filled with bytes (i * 16 + k) % 256 and labelled i % 10.
fn toy(n: usize) -> Dataset {
    Dataset {
        images: (0..n)
            .flat_map(|i| (0..192).map(move |k| ((i * 16 + k) % 256) as u8))
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        channels: 3,
        height: 8,
        width: 8,
        num_classes: 10,
        mean: data::CIFAR10_MEAN.to_vec(),
        std: data::CIFAR10_STD.to_vec(),
    }
}

fn collect(
    ds: &Dataset,
    bs: usize,
    shuffle: bool,
    aug: &Augment,
    seed: u64,
    drop_last: bool,
) -> Vec<(Vec<f32>, Vec<u32>)> {
    let mut rng = rng_for(seed, 0);
    batches(ds, bs, shuffle, aug, &mut rng, drop_last)
        .map(|b| {
            let (x, y) = b.unwrap();
            (
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                y.to_vec1::<u32>().unwrap(),
            )
        })
        .collect()
}

fn full_aug() -> Augment {
    Augment {
        crop_padding: 2,
        flip: true,
        cutout: 4,
    }
}

#[test]
fn unshuffled_plain_batches_are_the_normalised_images_in_order() {
    let ds = toy(5);
    let out = collect(&ds, 2, false, &Augment::default(), 0, false);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].1, vec![0, 1]);
    assert_eq!(out[2].1, vec![4]);
    // Image 1, channel 2, pixel (3, 5): byte (16 + 128 + 29) % 256.
    let v = out[0].0[192 + 128 + 3 * 8 + 5];
    let want = ((16 + 128 + 29) as f32 / 255.0 - data::CIFAR10_MEAN[2]) / data::CIFAR10_STD[2];
    assert!((v - want).abs() < 1e-6, "{v} vs {want}");
}

#[test]
fn shapes_and_drop_last() {
    let ds = toy(7);
    let mut rng = rng_for(1, 0);
    let it = batches(&ds, 3, true, &full_aug(), &mut rng, true);
    assert_eq!(it.num_batches(), 2);
    let all: Vec<_> = it.map(|b| b.unwrap()).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0.dims(), &[3, 3, 8, 8]);
    assert_eq!(all[0].1.dims(), &[3]);
    let out = collect(&ds, 3, true, &full_aug(), 1, false);
    assert_eq!(
        out.iter().map(|b| b.1.len()).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
}

#[test]
fn same_seed_same_batches_other_seed_differs() {
    let ds = toy(20);
    let a = collect(&ds, 8, true, &full_aug(), 42, false);
    let b = collect(&ds, 8, true, &full_aug(), 42, false);
    let c = collect(&ds, 8, true, &full_aug(), 43, false);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // A shuffle is a permutation of every label.
    let mut labels: Vec<u32> = a.iter().flat_map(|b| b.1.clone()).collect();
    labels.sort();
    let mut want: Vec<u32> = (0..20).map(|i| i % 10).collect();
    want.sort();
    assert_eq!(labels, want);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let ds = toy(16);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let a = one.install(|| collect(&ds, 16, true, &full_aug(), 7, false));
    let b = collect(&ds, 16, true, &full_aug(), 7, false);
    assert_eq!(a, b);
}

#[test]
fn cutout_zeroes_a_box_in_every_channel() {
    // Bright constant images: a normalised value is never 0 except in the cutout box.
    let mut ds = toy(6);
    ds.images.fill(250);
    let aug = Augment {
        crop_padding: 0,
        flip: false,
        cutout: 4,
    };
    let out = collect(&ds, 6, false, &aug, 3, false);
    let x = &out[0].0;
    for img in x.chunks(192) {
        let zeros: Vec<Vec<usize>> = img
            .chunks(64)
            .map(|p| (0..64).filter(|&k| p[k] == 0.0).collect())
            .collect();
        assert!(
            !zeros[0].is_empty() && zeros[0].len() <= 16,
            "{:?}",
            zeros[0]
        );
        assert!(
            zeros.iter().all(|z| *z == zeros[0]),
            "the same box in all channels"
        );
        // The zeros form a rectangle.
        let ys: Vec<usize> = zeros[0].iter().map(|k| k / 8).collect();
        let xs: Vec<usize> = zeros[0].iter().map(|k| k % 8).collect();
        let h = ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1;
        let w = xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1;
        assert_eq!(h * w, zeros[0].len());
    }
    // Without cutout nothing is zero.
    let plain = collect(&ds, 6, false, &Augment::default(), 3, false);
    assert!(plain[0].0.iter().all(|v| *v != 0.0));
}

#[test]
fn crop_padding_brings_in_padded_pixels() {
    let mut ds = toy(32);
    ds.images.fill(250);
    let aug = Augment {
        crop_padding: 2,
        flip: false,
        cutout: 0,
    };
    let out = collect(&ds, 32, false, &aug, 5, false);
    let x = &out[0].0;
    // Zero padding in pixel space is (0 - mean) / std after normalisation.
    let pad = -data::CIFAR10_MEAN[0] / data::CIFAR10_STD[0];
    let padded_images = x
        .chunks(192)
        .filter(|img| img[..64].iter().any(|v| (v - pad).abs() < 1e-6))
        .count();
    assert!(
        padded_images > 20,
        "{padded_images} of 32 images were shifted"
    );
}

#[test]
fn random_batch_draws_distinct_images_and_is_seeded() {
    let mut ds = toy(30);
    for i in 0..30 {
        ds.images[i * 192] = i as u8; // first byte names the image
    }
    let draw = |seed| {
        let mut rng = rng_for(seed, 1);
        let (x, y) = random_batch(&ds, 10, &Augment::default(), &mut rng).unwrap();
        (
            x.dims().to_vec(),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.to_vec1::<u32>().unwrap(),
        )
    };
    let (dims, a, labels) = draw(9);
    assert_eq!(dims, vec![10, 3, 8, 8]);
    assert_eq!(a, draw(9).1);
    assert_ne!(a, draw(10).1);
    let ids: Vec<i64> = a
        .chunks(192)
        .map(|img| ((img[0] * data::CIFAR10_STD[0] + data::CIFAR10_MEAN[0]) * 255.0).round() as i64)
        .collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{ids:?}");
    assert!(ids.iter().all(|i| (0..30).contains(i)));
    // Each label belongs to its image.
    assert!(ids.iter().zip(&labels).all(|(i, l)| *l as i64 == i % 10));
    // Bigger than the set: all of it.
    let mut rng = rng_for(0, 0);
    assert_eq!(
        random_batch(&ds, 100, &Augment::default(), &mut rng)
            .unwrap()
            .1
            .dims(),
        &[30]
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let ds = toy(4);
    let mut rng = rng_for(0, 0);
    let mut it = batches(&ds, 0, false, &Augment::default(), &mut rng, false);
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
    let empty = ds.subset(&[]);
    assert!(random_batch(&empty, 4, &Augment::default(), &mut rng).is_err());
    assert!(
        batches(&empty, 4, true, &Augment::default(), &mut rng, false)
            .next()
            .is_none()
    );
    let mut broken = toy(2);
    broken.std = vec![1.0];
    let e = batches(&broken, 2, false, &Augment::default(), &mut rng, false)
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("normalisation"), "{e}");
    let mut short = toy(3);
    short.images.truncate(100);
    let e = random_batch(&short, 2, &Augment::default(), &mut rng).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
}
