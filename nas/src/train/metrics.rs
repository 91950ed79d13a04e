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
    let correct = pred.eq(&labels.to_dtype(pred.dtype())?)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    Ok(100.0 * correct / n as f64)
}

/// A scalar loss as f64.
pub fn scalar(loss: &Tensor) -> Result<f64> {
    Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Fails when a loss is NaN or infinite, naming where it happened.
pub fn ensure_finite(value: f64, what: &str, epoch: usize, step: usize, advice: &str) -> Result<()> {
    if !value.is_finite() {
        bail!("{what} is {value} at epoch {epoch}, step {step}: training diverged. {advice}");
    }
    Ok(())
}
