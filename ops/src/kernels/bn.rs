use candle_core::{Result, Tensor};

use crate::reference;

/// Training-mode batch norm: returns (y, batch mean, biased batch var) with mean/var detached.
pub fn bn_train(x: &Tensor, wb: Option<(&Tensor, &Tensor)>, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let (mean, var) = reference::batch_stats(x)?;
    let y = reference::bn_apply(x, &mean, &var, wb, eps)?;
    Ok((y, mean.detach(), var.detach()))
}
