//! Loss and accuracy bookkeeping shared by the search and retrain loops
//! (DARTS `utils.accuracy` / `AvgrageMeter` semantics, spec §5.4).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

/// Sample-weighted running mean (`sum(val·n) / sum(n)`).
#[derive(Clone, Debug, Default)]
pub struct Meter {
    sum: f64,
    count: usize,
}

impl Meter {
    pub fn add(&mut self, value: f64, n: usize) {
        self.sum += value * n as f64;
        self.count += n;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }
}

/// Top-1 accuracy of a batch in percent.
pub fn top1_percent(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let n = labels.dims1()?;
    if n == 0 {
        return Ok(0.0);
    }
    let pred = logits.argmax(D::Minus1)?;
    let correct = pred
        .eq(&labels.to_dtype(pred.dtype())?)?
        .to_dtype(DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(100.0 * correct / n as f64)
}

/// A scalar loss as f64.
pub fn scalar(loss: &Tensor) -> Result<f64> {
    Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Fails when a loss is NaN or infinite, naming where it happened.
pub fn ensure_finite(
    value: f64,
    what: &str,
    epoch: usize,
    step: usize,
    advice: &str,
) -> Result<()> {
    if !value.is_finite() {
        bail!("{what} is {value} at epoch {epoch}, step {step}: training diverged. {advice}");
    }
    Ok(())
}

/// What to tell the user when epoch `epoch` diverges: which checkpoint is
/// left (the loops save only after a finished, finite epoch) and what to change.
pub fn divergence_advice(epoch: usize, dir: &std::path::Path, knobs: &str) -> String {
    if epoch == 0 {
        format!("No checkpoint was written (the first epoch diverged); lower {knobs} and rerun.")
    } else {
        format!(
            "The last good checkpoint ({epoch} epochs done) is kept in {}; lower {knobs} and rerun \
             (a changed config does not resume: delete that folder to restart).",
            dir.display()
        )
    }
}
