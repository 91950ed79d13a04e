//! Loading data sets from folders: tiny CIFAR-10 and IDX sets written here,
//! the embedded mnist10k, and the errors for missing or damaged files.

use flate2::write::GzEncoder;
use flate2::Compression;
use nasflow_nas::data::{self, Dataset};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Record r of batch file b: label (b + r) % 10, pixel k = (b * 7 + r + k) % 256.
fn cifar_record(b: usize, r: usize) -> Vec<u8> {
    let mut rec = vec![((b + r) % 10) as u8];
    rec.extend((0..3072).map(|k| ((b * 7 + r + k) % 256) as u8));
    rec
}

/// Writes the six batch files with 5 records each into `dir`.
fn write_cifar(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for (b, name) in names.iter().enumerate() {
        let bytes: Vec<u8> = (0..5).flat_map(|r| cifar_record(b, r)).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn idx_images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend((d as u32).to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|k| (k % 256) as u8));
    v
}

fn idx_labels(n: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((n as u32).to_be_bytes());
    v.extend((0..n).map(|k| (k % 10) as u8));
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn err(format: &str, path: &Path) -> String {
    format!("{:#}", data::load(format, path).unwrap_err())
}

#[test]
fn tiny_cifar_loads_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(tmp.path());
    let s = data::load("cifar10-bin", tmp.path()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (25, 5));
    assert_eq!(
        (
            s.train.channels,
            s.train.height,
            s.train.width,
            s.train.num_classes
        ),
        (3, 32, 32, 10)
    );
    // Image 7 of train is record 2 of data_batch_2 (b = 1).
    assert_eq!(s.train.labels[7], 3);
    assert_eq!(s.train.image(7), &cifar_record(1, 2)[1..]);
    // Red plane first, then green: pixel (c=1, y=0, x=0) is byte 1024 of the record's pixels.
    assert_eq!(s.test.image(4)[1024], ((5 * 7 + 4 + 1024) % 256) as u8);
    assert_eq!(s.test.labels, vec![5, 6, 7, 8, 9]);
    assert_eq!(s.train.mean, data::CIFAR10_MEAN.to_vec());
    assert_eq!(s.train.std, data::CIFAR10_STD.to_vec());
}

#[test]
fn cifar_folder_may_be_the_parent_of_the_untarred_archive() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(&tmp.path().join("cifar-10-batches-bin"));
    assert_eq!(
        data::load("cifar10-bin", tmp.path()).unwrap().train.len(),
        25
    );
}

#[test]
fn cifar_missing_folder_or_file_says_what_and_how() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nope");
    let e = err("cifar10-bin", &nowhere);
    assert!(e.contains(&nowhere.display().to_string()), "{e}");
    assert!(
        e.contains("data_batch_1.bin") && e.contains("test_batch.bin"),
        "{e}"
    );
    assert!(
        e.contains("www.cs.toronto.edu/~kriz/cifar.html") && e.contains("cifar-10-binary.tar.gz"),
        "{e}"
    );

    write_cifar(tmp.path());
    std::fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();
    let e = err("cifar10-bin", tmp.path());
    assert!(e.contains("missing data_batch_4.bin"), "{e}");
}

#[test]
fn cifar_truncated_or_foreign_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar(tmp.path());
    let f = tmp.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = err("cifar10-bin", tmp.path());
    assert!(
        e.contains("data_batch_3.bin") && e.contains("truncated"),
        "{e}"
    );

    let mut bad = bytes.clone();
    bad[3073] = 42; // label of record 1
    std::fs::write(&f, &bad).unwrap();
    let e = err("cifar10-bin", tmp.path());
    assert!(e.contains("record 1 has label 42"), "{e}");

    std::fs::write(&f, b"").unwrap();
    assert!(err("cifar10-bin", tmp.path()).contains("not a CIFAR-10 binary batch"));
}

#[test]
fn tiny_idx_pair_plain_or_gz_splits_four_to_one() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (imgs, labs) = (idx_images(10, 3, 2), idx_labels(10));
        let (imgs, labs, ext) = if compress {
            (gz(&imgs), gz(&labs), ".gz")
        } else {
            (imgs, labs, "")
        };
        std::fs::write(
            tmp.path().join(format!("mnist10k-images-idx3-ubyte{ext}")),
            imgs,
        )
        .unwrap();
        std::fs::write(
            tmp.path().join(format!("mnist10k-labels-idx1-ubyte{ext}")),
            labs,
        )
        .unwrap();
        let s = data::load("idx", tmp.path()).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (8, 2));
        assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 3, 2));
        assert_eq!(s.test.labels, vec![8, 9]);
        assert_eq!(s.test.image(1), &[54, 55, 56, 57, 58, 59]);
        assert_eq!(s.train.mean, vec![0.1307]);
    }
}

#[test]
fn full_mnist_names_use_their_own_train_and_test_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    std::fs::write(
        p.join("train-images-idx3-ubyte.gz"),
        gz(&idx_images(6, 4, 4)),
    )
    .unwrap();
    std::fs::write(p.join("train-labels-idx1-ubyte.gz"), gz(&idx_labels(6))).unwrap();
    std::fs::write(p.join("t10k-images-idx3-ubyte"), idx_images(3, 4, 4)).unwrap();
    let e = err("idx", p);
    assert!(e.contains("missing t10k-labels-idx1-ubyte"), "{e}");
    std::fs::write(p.join("t10k-labels-idx1-ubyte"), idx_labels(3)).unwrap();
    let s = data::load("idx", p).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (6, 3));
    assert_eq!(s.test.labels, vec![0, 1, 2]);
}

#[test]
fn idx_errors_wrong_magic_truncation_and_count_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let write = |imgs: Vec<u8>, labs: Vec<u8>| {
        std::fs::write(p.join("mnist10k-images-idx3-ubyte.gz"), imgs).unwrap();
        std::fs::write(p.join("mnist10k-labels-idx1-ubyte.gz"), labs).unwrap();
    };
    // Labels where images belong: wrong magic.
    write(gz(&idx_labels(10)), gz(&idx_labels(10)));
    let e = err("idx", p);
    assert!(
        e.contains("is not an IDX image file") && e.contains("0x00000801"),
        "{e}"
    );
    // Data shorter than the header says.
    let imgs = idx_images(10, 3, 2);
    write(gz(&imgs[..imgs.len() - 5]), gz(&idx_labels(10)));
    assert!(err("idx", p).contains("truncated"));
    // A cut gzip stream.
    let z = gz(&imgs);
    write(z[..z.len() / 2].to_vec(), gz(&idx_labels(10)));
    let e = err("idx", p);
    assert!(e.contains("damaged or truncated gzip"), "{e}");
    // 10 images, 9 labels.
    write(gz(&imgs), gz(&idx_labels(9)));
    assert!(err("idx", p).contains("holds 10 images but"));
    // Header only half there.
    write(vec![0, 0, 8, 3, 0, 0], gz(&idx_labels(9)));
    assert!(err("idx", p).contains("truncated: its header needs 16 bytes"));
}

#[test]
fn idx_missing_folder_names_the_files_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err("idx", &tmp.path().join("absent"));
    assert!(
        e.contains("absent")
            && e.contains("mnist10k-images-idx3-ubyte.gz")
            && e.contains("t10k-labels-idx1-ubyte"),
        "{e}"
    );
    let e = err("idx", tmp.path());
    assert!(e.contains("no IDX files in"), "{e}");
}

fn mnist10k() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/mnist10k")
}

fn class_counts(d: &Dataset) -> Vec<usize> {
    let mut c = vec![0; 10];
    for &l in &d.labels {
        c[l as usize] += 1;
    }
    c
}

#[test]
fn embedded_mnist10k_loads_balanced() {
    let s = data::load("idx", &mnist10k()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (8000, 2000));
    assert_eq!(
        (
            s.train.channels,
            s.train.height,
            s.train.width,
            s.train.num_classes
        ),
        (1, 28, 28, 10)
    );
    assert_eq!(s.train.images.len(), 8000 * 784);
    let (tr, te) = (class_counts(&s.train), class_counts(&s.test));
    assert!(tr.iter().all(|&c| (650..=950).contains(&c)), "{tr:?}");
    assert!(te.iter().all(|&c| (100..=350).contains(&c)), "{te:?}");
    // Digits are dark backgrounds with bright strokes.
    let mean =
        s.train.images.iter().map(|&b| b as f64).sum::<f64>() / s.train.images.len() as f64 / 255.0;
    assert!((0.08..0.2).contains(&mean), "mean intensity {mean}");
}
