//! Padded 2D max / average pooling and strided subsampling as candle custom ops (forward and
//! backward), one rayon task per (batch, channel) plane.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Tensor};

use super::common::{kernel_ok, par_chunks_zeroed, slice, with_slice};
use super::window::{avg_bwd_plane, avg_fwd_plane, max_bwd_plane, max_fwd_plane, PGeo, Scratch};
use crate::reference::avg_divisor;

struct MaxPool {
    k: usize,
    s: usize,
    p: usize,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "nasflow-max-pool2d"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(st, l)?;
        let g = PGeo::new(h, w, self.k, self.s, self.p, 1);
        let plane = g.ho * g.wo;
        let out = par_chunks_zeroed(b * c * plane, plane, Scratch::default, |sc, i, o| max_fwd_plane(&g, &x[i * h * w..(i + 1) * h * w], o, sc));
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, st: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::max_fwd(self.k, self.s, self.p, st, l)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let gx = x.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolGrad { k: self.k, s: self.s, p: self.p })?;
        Ok(Some(gx))
    }
}

struct MaxPoolGrad {
    k: usize,
    s: usize,
    p: usize,
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "nasflow-max-pool2d-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let (_, _, ho, wo) = l2.shape().dims4()?;
        let x = slice(s1, l1)?;
        let gr = slice(s2, l2)?;
        let g = PGeo::new(h, w, self.k, self.s, self.p, 1);
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("pool grad: output {ho}x{wo} does not fit input {h}x{w}");
        }
        let out = par_chunks_zeroed(b * c * h * w, h * w, Scratch::default, |sc, i, o| {
            max_bwd_plane(&g, &x[i * h * w..(i + 1) * h * w], &gr[i * ho * wo..(i + 1) * ho * wo], o, sc)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::max_bwd(self.k, self.s, self.p, s1, l1, s2, l2)
    }
}

struct AvgPool {
    k: usize,
    s: usize,
    p: usize,
    cip: bool,
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "nasflow-avg-pool2d"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(st, l)?;
        let g = PGeo::new(h, w, self.k, self.s, self.p, 1);
        let inv: Vec<f32> = avg_divisor(h, w, self.k, self.s, self.p, self.cip).iter().map(|d| 1.0 / d).collect();
        let plane = g.ho * g.wo;
        let out = par_chunks_zeroed(b * c * plane, plane, Scratch::default, |sc, i, o| avg_fwd_plane(&g, &x[i * h * w..(i + 1) * h * w], &inv, o, sc));
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, st: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::avg_fwd(self.k, self.s, self.p, self.cip, st, l)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let op = AvgPoolGrad { h, w, k: self.k, s: self.s, p: self.p, cip: self.cip };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

struct AvgPoolGrad {
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    cip: bool,
}

impl CustomOp1 for AvgPoolGrad {
    fn name(&self) -> &'static str {
        "nasflow-avg-pool2d-grad"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, ho, wo) = l.shape().dims4()?;
        let (h, w) = (self.h, self.w);
        let gr = slice(st, l)?;
        let g = PGeo::new(h, w, self.k, self.s, self.p, 1);
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("pool grad: output {ho}x{wo} does not fit input {h}x{w}");
        }
        let inv: Vec<f32> = avg_divisor(h, w, self.k, self.s, self.p, self.cip).iter().map(|d| 1.0 / d).collect();
        let out = par_chunks_zeroed(b * c * h * w, h * w, Scratch::default, |sc, i, o| {
            avg_bwd_plane(&g, &gr[i * ho * wo..(i + 1) * ho * wo], &inv, o, sc)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, st: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::avg_bwd(self.h, self.w, self.k, self.s, self.p, self.cip, st, l)
    }
}

/// x[:, :, h0::sh, w0::sw], optionally followed by ReLU.
struct Subsample {
    sh: usize,
    sw: usize,
    h0: usize,
    w0: usize,
    relu: bool,
}

impl Subsample {
    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        ((h - self.h0).div_ceil(self.sh), (w - self.w0).div_ceil(self.sw))
    }
}

impl CustomOp1 for Subsample {
    fn name(&self) -> &'static str {
        "nasflow-subsample"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(st, l)?;
        let (ho, wo) = self.out_hw(h, w);
        let (sh, sw, relu) = (self.sh, self.sw, self.relu);
        let base = self.h0 * w + self.w0;
        let out = par_chunks_zeroed(b * c * ho * wo, ho * wo, || (), |_, i, o| {
            let xp = &x[i * h * w + base..(i + 1) * h * w];
            for oh in 0..ho {
                let row = &xp[oh * sh * w..];
                for (ow, v) in o[oh * wo..(oh + 1) * wo].iter_mut().enumerate() {
                    let u = row[ow * sw];
                    *v = if relu && !(u > 0.0) { 0.0 } else { u };
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, st: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::sub_fwd(self.sh, self.sw, self.h0, self.w0, self.relu, st, l)
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return Ok(Some(super::cuda::sub_bwd(x, res, grad, self.sh, self.sw, self.h0, self.w0, self.relu)?));
        }
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = self.out_hw(h, w);
        let (sh, sw, relu) = (self.sh, self.sw, self.relu);
        let base = self.h0 * w + self.w0;
        let out = with_slice(grad, |gr| {
            with_slice(res, |ys| {
                let out = par_chunks_zeroed(b * c * h * w, h * w, || (), |_, i, o| {
                    let gp = &gr[i * ho * wo..(i + 1) * ho * wo];
                    let yp = &ys[i * ho * wo..(i + 1) * ho * wo];
                    let o = &mut o[base..];
                    for oh in 0..ho {
                        let row = &mut o[oh * sh * w..];
                        for ow in 0..wo {
                            let j = oh * wo + ow;
                            // ReLU: PyTorch's threshold_backward passes the grad where the output > 0
                            row[ow * sw] = if relu && !(yp[j] > 0.0) { 0.0 } else { gp[j] };
                        }
                    }
                });
                Ok(out)
            })
        })?;
        Ok(Some(Tensor::from_vec(out, (b, c, h, w), &Device::Cpu)?))
    }
}

pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if !kernel_ok(x) {
        return crate::reference::max_pool2d(x, kernel, stride, padding);
    }
    crate::tape::apply1(&x.contiguous()?, MaxPool { k: kernel, s: stride, p: padding })
}

pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize, count_include_pad: bool) -> Result<Tensor> {
    if !kernel_ok(x) {
        return crate::reference::avg_pool2d(x, kernel, stride, padding, count_include_pad);
    }
    crate::tape::apply1(&x.contiguous()?, AvgPool { k: kernel, s: stride, p: padding, cip: count_include_pad })
}

/// x[:, :, h0::sh, w0::sw], then ReLU when `relu`.
pub fn subsample_ext(x: &Tensor, sh: usize, sw: usize, h0: usize, w0: usize, relu: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h0 >= h || w0 >= w {
        candle_core::bail!("subsample: offset ({h0}, {w0}) outside a {h}x{w} input");
    }
    if !kernel_ok(x) {
        let x = x.narrow(2, h0, h - h0)?.narrow(3, w0, w - w0)?;
        let y = crate::reference::subsample_dim(&crate::reference::subsample_dim(&x, 2, sh)?, 3, sw)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    if sh == 1 && sw == 1 && h0 == 0 && w0 == 0 {
        return if relu { super::pointwise::relu(x) } else { Ok(x.clone()) };
    }
    crate::tape::apply1(&x.contiguous()?, Subsample { sh, sw, h0, w0, relu })
}
