//! Training-mode batch norm as a candle CustomOp3 (x, weight, bias) with a fused backward.
//! Statistics are reduced per (batch, channel) plane in parallel (f32 lanes, f64 totals).

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{kernel_ok, par_chunks_zeroed, slice, with_slice};
use super::simd::{self, multiversion};

multiversion!(fn plane_sum(x: &[f32]) -> f64 = simd::sum;);
multiversion!(fn plane_sqdev(x: &[f32], m: f32) -> f64 = simd::sqdev;);
multiversion!(fn plane_bwd_sums(g: &[f32], x: &[f32], m: f32) -> (f64, f64) = simd::bn_bwd_sums;);
multiversion!(fn plane_scale_shift(o: &mut [f32], x: &[f32], a: f32, b: f32) = simd::scale_shift;);
multiversion!(fn plane_dx(o: &mut [f32], g: &[f32], x: &[f32], a: f32, k: f32, c: f32) = simd::bn_dx;);
use crate::reference;

/// y = (x - mean) * invstd * w + b with fixed per-channel mean/invstd. With `batch_stats` the
/// statistics are those of x itself (training mode) and the backward includes their dependence
/// on x; otherwise they are constants (eval mode, running statistics).
struct BnTrain {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    affine: bool,
    batch_stats: bool,
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "nasflow-batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let x = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let bs = slice(s3, l3)?;
        let scale: Vec<f32> = (0..c).map(|i| wt[i] * self.invstd[i]).collect();
        let shift: Vec<f32> = (0..c).map(|i| bs[i] - self.mean[i] * scale[i]).collect();
        let hw = h * w;
        let out = par_chunks_zeroed(b * c * hw, hw, || (), |_, i, o| {
            plane_scale_shift(o, &x[i * hw..(i + 1) * hw], scale[i % c], shift[i % c]);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout, s3: &candle_core::CudaStorage, l3: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::bn_fwd(&self.mean, &self.invstd, s1, l1, s2, l2, s3, l3)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let (gx, dw, db) = super::cuda::bn_bwd(&self.mean, &self.invstd, self.affine, self.batch_stats, x, w, grad)?;
            return Ok((Some(gx), dw, db));
        }
        let (b, c, h, wd) = x.dims4()?;
        let hw = h * wd;
        let n = (b * hw) as f64;
        let wt = w.to_vec1::<f32>()?;
        let (gx, sg, sgx) = with_slice(x, |xs| {
            with_slice(grad, |gs| {
                // per-plane partial sums, reduced over the batch
                let part: Vec<(f64, f64)> = (0..b * c)
                    .into_par_iter()
                    .map(|i| plane_bwd_sums(&gs[i * hw..(i + 1) * hw], &xs[i * hw..(i + 1) * hw], self.mean[i % c]))
                    .collect();
                let mut sg = vec![0f64; c];
                let mut sgx = vec![0f64; c];
                for (i, (a, bb)) in part.iter().enumerate() {
                    sg[i % c] += a;
                    sgx[i % c] += bb;
                }
                // dx = a*g - k*x + c0, with a = w*invstd, k = a*invstd^2*sgx/N, c0 = k*mean - a*sg/N
                let coef: Vec<(f32, f32, f32)> = (0..c)
                    .map(|i| {
                        let inv = self.invstd[i] as f64;
                        let a = wt[i] as f64 * inv;
                        if !self.batch_stats {
                            return (a as f32, 0.0, 0.0);
                        }
                        let k = a * inv * inv * sgx[i] / n;
                        let c0 = k * self.mean[i] as f64 - a * sg[i] / n;
                        (a as f32, k as f32, c0 as f32)
                    })
                    .collect();
                let gx = par_chunks_zeroed(b * c * hw, hw, || (), |_, i, o| {
                    let (a, k, c0) = coef[i % c];
                    plane_dx(o, &gs[i * hw..(i + 1) * hw], &xs[i * hw..(i + 1) * hw], a, k, c0);
                });
                Ok((gx, sg, sgx))
            })
        })?;
        let dev = Device::Cpu;
        let gx = Tensor::from_vec(gx, (b, c, h, wd), &dev)?;
        if !self.affine {
            return Ok((Some(gx), None, None));
        }
        let dw: Vec<f32> = (0..c).map(|i| (sgx[i] * self.invstd[i] as f64) as f32).collect();
        let db: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
        Ok((Some(gx), Some(Tensor::from_vec(dw, c, &dev)?), Some(Tensor::from_vec(db, c, &dev)?)))
    }
}

/// Per-channel (mean, biased variance) of an NCHW tensor.
fn stats(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return super::cuda::bn_stats(x);
    }
    let (b, c, h, w) = x.dims4()?;
    let hw = h * w;
    let n = (b * hw) as f64;
    with_slice(x, |xs| {
        let sums: Vec<f64> = (0..b * c).into_par_iter().map(|i| plane_sum(&xs[i * hw..(i + 1) * hw])).collect();
        let mut mean = vec![0f64; c];
        for (i, s) in sums.iter().enumerate() {
            mean[i % c] += s;
        }
        let mean: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
        let sq: Vec<f64> = (0..b * c).into_par_iter().map(|i| plane_sqdev(&xs[i * hw..(i + 1) * hw], mean[i % c])).collect();
        let mut var = vec![0f64; c];
        for (i, s) in sq.iter().enumerate() {
            var[i % c] += s;
        }
        Ok((mean, var.iter().map(|s| (s / n) as f32).collect()))
    })
}

/// Training-mode batch norm: returns (y, batch mean, biased batch var), mean/var without graph.
pub fn bn_train(x: &Tensor, wb: Option<(&Tensor, &Tensor)>, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    if !kernel_ok(x) {
        let (mean, var) = reference::batch_stats(x)?;
        let y = reference::bn_apply(x, &mean, &var, wb, eps)?;
        return Ok((y, mean.detach(), var.detach()));
    }
    let x = x.contiguous()?;
    let c = x.dim(1)?;
    let (mean, var) = stats(&x)?;
    let invstd: Vec<f32> = var.iter().map(|v| (1.0 / (*v as f64 + eps).sqrt()) as f32).collect();
    let dev = x.device();
    let (w, b) = match wb {
        Some((w, b)) => (w.contiguous()?, b.contiguous()?),
        None => (Tensor::ones(c, x.dtype(), dev)?, Tensor::zeros(c, x.dtype(), dev)?),
    };
    let mean_t = Tensor::from_vec(mean.clone(), c, dev)?;
    let var_t = Tensor::from_vec(var, c, dev)?;
    let y = crate::tape::apply3(&x, &w, &b, BnTrain { mean, invstd, affine: wb.is_some(), batch_stats: true })?;
    Ok((y, mean_t, var_t))
}

/// Eval-mode batch norm with the given (running) statistics.
pub fn bn_eval(x: &Tensor, wb: Option<(&Tensor, &Tensor)>, mean: &Tensor, var: &Tensor, eps: f64) -> Result<Tensor> {
    if !kernel_ok(x) {
        return reference::bn_apply(x, mean, var, wb, eps);
    }
    let x = x.contiguous()?;
    let c = x.dim(1)?;
    let mean = mean.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let invstd: Vec<f32> = var.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?.iter().map(|v| (1.0 / (*v as f64 + eps).sqrt()) as f32).collect();
    let dev = x.device();
    let (w, b) = match wb {
        Some((w, b)) => (w.contiguous()?, b.contiguous()?),
        None => (Tensor::ones(c, x.dtype(), dev)?, Tensor::zeros(c, x.dtype(), dev)?),
    };
    crate::tape::apply3(&x, &w, &b, BnTrain { mean, invstd, affine: wb.is_some(), batch_stats: false })
}
