//! IDX files (the MNIST format): a 4-byte magic `00 00 08 NDIM` (unsigned
//! bytes), NDIM big-endian u32 sizes, then the data. Images are 0x803
//! (N x rows x cols), labels 0x801 (N). Files may be gzip-compressed; this is
//! told by the gzip magic bytes, not by the file name.

use super::{DataSplits, Dataset, MNIST_MEAN, MNIST_STD};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads a whole file, gunzipping it if it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| {
                format!(
                    "{} is a damaged or truncated gzip file; download it again",
                    path.display()
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Checks the header of an IDX file for `magic` and returns its sizes and data.
fn parse_idx<'a>(bytes: &'a [u8], magic: u32, path: &Path) -> Result<(Vec<usize>, &'a [u8])> {
    let what = if magic == 0x803 {
        "an IDX image file (magic 0x00000803)"
    } else {
        "an IDX label file (magic 0x00000801)"
    };
    if bytes.len() < 4 {
        bail!(
            "{} is too short to be {what}: {} bytes",
            path.display(),
            bytes.len()
        );
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        bail!(
            "{} is not {what}: its magic number is 0x{found:08x}",
            path.display()
        );
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        bail!(
            "{} is truncated: its header needs {header} bytes, the file has {}",
            path.display(),
            bytes.len()
        );
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let b = &bytes[4 + 4 * d..8 + 4 * d];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data = &bytes[header..];
    match expected {
        Some(n) if n == data.len() => Ok((dims, data)),
        Some(n) if n > data.len() => bail!(
            "{} is truncated: its header says {dims:?} ({n} bytes of data), the file holds {}; download it again",
            path.display(),
            data.len()
        ),
        _ => bail!(
            "{} has the wrong size: its header says {dims:?}, but the file holds {} bytes of data",
            path.display(),
            data.len()
        ),
    }
}

/// Images of an IDX image file: (count, rows, cols, pixels row-major).
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let (dims, data) = parse_idx(&bytes, 0x803, path)?;
    Ok((dims[0], dims[1], dims[2], data.to_vec()))
}

/// Labels of an IDX label file.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let (_, data) = parse_idx(&bytes, 0x801, path)?;
    Ok(data.to_vec())
}

/// `dir/name.gz` or `dir/name`, whichever exists.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// An image file and its label file as one data set of 1 x rows x cols images.
fn read_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let (n, rows, cols, pixels) = read_images(images)?;
    let labels_v = read_labels(labels)?;
    if labels_v.len() != n {
        bail!(
            "{} holds {n} images but {} holds {} labels; the two files must come from the same set",
            images.display(),
            labels.display(),
            labels_v.len()
        );
    }
    let max_label = labels_v.iter().copied().max().unwrap_or(0) as usize;
    Ok(Dataset {
        images: pixels,
        labels: labels_v,
        channels: 1,
        height: rows,
        width: cols,
        num_classes: (max_label + 1).max(10),
        mean: MNIST_MEAN.to_vec(),
        std: MNIST_STD.to_vec(),
    })
}

const HOW_TO_GET: &str =
    "expected in that folder either the embedded set (mnist10k-images-idx3-ubyte.gz and \
     mnist10k-labels-idx1-ubyte.gz, as in datasets/mnist10k of the nasflow repository) or the four \
     full MNIST files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
     t10k-labels-idx1-ubyte (each plain or .gz, as the MNIST database page distributes them)";

/// An IDX folder: the embedded mnist10k set (first 4/5 train, last 1/5
/// test: 8000/2000) or full MNIST (its own train and t10k files).
pub fn load_dir(dir: &Path) -> Result<DataSplits> {
    if !dir.is_dir() {
        bail!(
            "IDX data set folder {} does not exist or is not a folder; {HOW_TO_GET}",
            dir.display()
        );
    }
    if let Some(images) = find(dir, "mnist10k-images-idx3-ubyte") {
        let labels = find(dir, "mnist10k-labels-idx1-ubyte").with_context(|| {
            format!(
                "{} is there but mnist10k-labels-idx1-ubyte.gz is missing from {}",
                images.display(),
                dir.display()
            )
        })?;
        let all = read_pair(&images, &labels)?;
        let n_test = all.len() / 5;
        let n_train = all.len() - n_test;
        return Ok(DataSplits {
            train: all.range(0, n_train),
            test: all.range(n_train, all.len()),
        });
    }
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let found: [Option<PathBuf>; 4] = names.map(|n| find(dir, n));
    if found.iter().all(Option::is_none) {
        bail!("no IDX files in {}; {HOW_TO_GET}", dir.display());
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    let [Some(tri), Some(trl), Some(tei), Some(tel)] = found else {
        bail!(
            "incomplete MNIST folder {}: missing {} (plain or .gz); {HOW_TO_GET}",
            dir.display(),
            missing.join(", ")
        );
    };
    let mut train = read_pair(&tri, &trl)?;
    let mut test = read_pair(&tei, &tel)?;
    let classes = train.num_classes.max(test.num_classes);
    train.num_classes = classes;
    test.num_classes = classes;
    if (train.height, train.width) != (test.height, test.width) {
        bail!(
            "{} holds {}x{} images but {} holds {}x{}; train and test must have one image size",
            tri.display(),
            train.height,
            train.width,
            tei.display(),
            test.height,
            test.width
        );
    }
    Ok(DataSplits { train, test })
}
