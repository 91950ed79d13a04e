//! Depthwise conv2d (groups = C) as a candle CustomOp2 with a fused backward (grad input and
//! grad weight in one pass). One rayon task per (batch, channel) plane; see `window.rs`.

use candle_core::{bail, CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{kernel_ok, par_chunks_zeroed, slice, with_slice, zero_chunk};
use super::window::{dw_bwd_plane, dw_fwd_plane, PGeo, Scratch};

struct DwConv {
    s: usize,
    p: usize,
    d: usize,
    /// conv(relu(x)): ReLU fused into the input read (DARTS always puts one before a depthwise)
    relu: bool,
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let (cw, one, k, k2) = l2.shape().dims4()?;
        if cw != c || one != 1 || k != k2 {
            bail!("depthwise: weight {:?} does not fit input {:?}", l2.dims(), l1.dims());
        }
        let x = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let g = PGeo::new(h, w, k, self.s, self.p, self.d);
        let (hw, plane, kk) = (h * w, g.ho * g.wo, k * k);
        let out = par_chunks_zeroed(b * c * plane, plane, Scratch::default, |sc, i, o| {
            let ch = i % c;
            dw_fwd_plane(&g, self.relu, &x[i * hw..(i + 1) * hw], &wt[ch * kk..(ch + 1) * kk], o, sc);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::dw_fwd(self.s, self.p, self.d, self.relu, s1, l1, s2, l2)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let (gx, gw) = super::cuda::dw_bwd(x, w, grad, self.s, self.p, self.d, self.relu)?;
            return Ok((Some(gx), Some(gw)));
        }
        let (b, c, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let g = PGeo::new(h, wd, k, self.s, self.p, self.d);
        let (hw, plane, kk) = (h * wd, g.ho * g.wo, k * k);
        if grad.dims() != [b, c, g.ho, g.wo] {
            bail!("depthwise bwd: grad {:?} for output {:?}", grad.dims(), (b, c, g.ho, g.wo));
        }
        // grad input: each plane zeroed by the worker that writes it (see `par_chunks_zeroed`)
        let n = b * c * hw;
        let mut gx: Vec<f32> = Vec::with_capacity(n);
        let mut part = vec![0f32; b * c * kk];
        with_slice(x, |xs| {
            with_slice(grad, |gs| {
                with_slice(w, |wt| {
                    gx.spare_capacity_mut()[..n].par_chunks_mut(hw).zip(part.par_chunks_mut(kk)).enumerate().for_each_init(Scratch::default, |sc, (i, (gxu, gwp))| {
                        let gxp = zero_chunk(gxu);
                        let ch = i % c;
                        dw_bwd_plane(&g, self.relu, &xs[i * hw..(i + 1) * hw], &gs[i * plane..(i + 1) * plane], &wt[ch * kk..(ch + 1) * kk], gxp, gwp, sc);
                    });
                    Ok(())
                })
            })
        })?;
        // SAFETY: the parallel pass above initialised all n elements (one chunk per plane).
        unsafe { gx.set_len(n) };
        let mut gw = vec![0f32; c * kk];
        for bi in 0..b {
            for (o, v) in gw.iter_mut().zip(&part[bi * c * kk..(bi + 1) * c * kk]) {
                *o += v;
            }
        }
        let dev = Device::Cpu;
        Ok((Some(Tensor::from_vec(gx, (b, c, h, wd), &dev)?), Some(Tensor::from_vec(gw, (c, 1, k, k), &dev)?)))
    }
}

pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize, relu: bool) -> Result<Tensor> {
    if !(kernel_ok(x) && kernel_ok(w)) {
        let x = if relu { x.relu()? } else { x.clone() };
        return crate::reference::depthwise_conv2d(&x, w, stride, padding, dilation);
    }
    crate::tape::apply2(&x.contiguous()?, &w.contiguous()?, DwConv { s: stride, p: padding, d: dilation, relu })
}
