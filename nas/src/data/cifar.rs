//! CIFAR-10 binary version: `data_batch_1.bin` ... `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of 3073-byte records: one label byte
//! (0..9), then 1024 red, 1024 green and 1024 blue bytes of a 32x32 image,
//! row-major. That is already the CHW layout a [`Dataset`] keeps.

use super::{DataSplits, Dataset, CIFAR10_MEAN, CIFAR10_STD};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";

const HOW_TO_GET: &str =
    "download cifar-10-binary.tar.gz from the CIFAR-10 page of Alex Krizhevsky \
     (https://www.cs.toronto.edu/~kriz/cifar.html) and untar it (tar xzf cifar-10-binary.tar.gz), \
     so that the folder holds data_batch_1.bin ... data_batch_5.bin and test_batch.bin";

/// The folder itself, or its `cifar-10-batches-bin` subfolder (where the
/// archive unpacks), whichever holds the batch files.
fn resolve(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!(
            "CIFAR-10 folder {} does not exist or is not a folder; {HOW_TO_GET}",
            dir.display()
        );
    }
    for cand in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if cand.join(TRAIN_FILES[0]).is_file() || cand.join(TEST_FILE).is_file() {
            return Ok(cand);
        }
    }
    let hint = if dir.join("cifar-10-binary.tar.gz").is_file() {
        " (the archive is there: untar it)"
    } else {
        ""
    };
    bail!(
        "no CIFAR-10 batch files in {}{hint}; {HOW_TO_GET}",
        dir.display()
    )
}

/// Reads one batch file into (CHW pixels, labels).
pub fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        bail!(
            "{} is not a CIFAR-10 binary batch: its size, {} bytes, is not a whole number of \
             {RECORD}-byte records (1 label + 3072 pixels); the file is truncated or of another \
             format (the Python or Matlab version?); {HOW_TO_GET}",
            path.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (r, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            bail!(
                "{}: record {r} has label {}, but CIFAR-10 labels are 0..9; is this CIFAR-100 or another format?",
                path.display(),
                rec[0]
            );
        }
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    Ok((images, labels))
}

fn dataset(parts: Vec<(Vec<u8>, Vec<u8>)>) -> Dataset {
    let (images, labels): (Vec<Vec<u8>>, Vec<Vec<u8>>) = parts.into_iter().unzip();
    Dataset {
        images: images.concat(),
        labels: labels.concat(),
        channels: 3,
        height: SIDE,
        width: SIDE,
        num_classes: 10,
        mean: CIFAR10_MEAN.to_vec(),
        std: CIFAR10_STD.to_vec(),
    }
}

/// The five training batches (in order) and the test batch.
pub fn load_dir(dir: &Path) -> Result<DataSplits> {
    let dir = resolve(dir)?;
    let missing: Vec<&str> = TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "incomplete CIFAR-10 folder {}: missing {}; {HOW_TO_GET}",
            dir.display(),
            missing.join(", ")
        );
    }
    let train = TRAIN_FILES
        .iter()
        .map(|f| read_batch(&dir.join(f)))
        .collect::<Result<Vec<_>>>()?;
    let test = read_batch(&dir.join(TEST_FILE))?;
    Ok(DataSplits {
        train: dataset(train),
        test: dataset(vec![test]),
    })
}
