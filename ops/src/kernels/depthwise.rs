//! Depthwise conv2d (groups = C) as a candle CustomOp2: forward, grad input, grad weight.
//! Each (batch, channel) plane is an independent rayon task.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{axpy_scatter, axpy_strided, dot_strided, slice, valid_range};
use crate::reference::out_size;

#[derive(Clone, Copy, Debug)]
struct Geo {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
}

impl Geo {
    fn new(h: usize, w: usize, k: usize, s: usize, p: usize, d: usize) -> Self {
        Self { h, w, ho: out_size(h, k, s, p, d), wo: out_size(w, k, s, p, d), k, s, p, d }
    }
    #[inline]
    fn off(&self, kidx: usize) -> isize {
        (kidx * self.d) as isize - self.p as isize
    }
}

fn fwd_plane(x: &[f32], wt: &[f32], out: &mut [f32], g: &Geo) {
    out.fill(0.0);
    for kh in 0..g.k {
        let offh = g.off(kh);
        let (oh0, oh1) = valid_range(g.h, g.ho, offh, g.s);
        for kw in 0..g.k {
            let a = wt[kh * g.k + kw];
            let offw = g.off(kw);
            let (ow0, ow1) = valid_range(g.w, g.wo, offw, g.s);
            if ow0 >= ow1 {
                continue;
            }
            let iw0 = (ow0 * g.s) as isize + offw;
            for oh in oh0..oh1 {
                let ih = ((oh * g.s) as isize + offh) as usize;
                let xr = &x[ih * g.w + iw0 as usize..(ih + 1) * g.w];
                axpy_strided(&mut out[oh * g.wo + ow0..oh * g.wo + ow1], a, xr, g.s);
            }
        }
    }
}

fn grad_input_plane(gr: &[f32], wt: &[f32], gx: &mut [f32], g: &Geo) {
    gx.fill(0.0);
    for kh in 0..g.k {
        let offh = g.off(kh);
        let (oh0, oh1) = valid_range(g.h, g.ho, offh, g.s);
        for kw in 0..g.k {
            let a = wt[kh * g.k + kw];
            let offw = g.off(kw);
            let (ow0, ow1) = valid_range(g.w, g.wo, offw, g.s);
            if ow0 >= ow1 {
                continue;
            }
            let iw0 = (ow0 * g.s) as isize + offw;
            for oh in oh0..oh1 {
                let ih = ((oh * g.s) as isize + offh) as usize;
                let xr = &mut gx[ih * g.w + iw0 as usize..(ih + 1) * g.w];
                axpy_scatter(xr, a, &gr[oh * g.wo + ow0..oh * g.wo + ow1], g.s);
            }
        }
    }
}

fn grad_weight_plane(x: &[f32], gr: &[f32], gw: &mut [f32], g: &Geo) {
    for kh in 0..g.k {
        let offh = g.off(kh);
        let (oh0, oh1) = valid_range(g.h, g.ho, offh, g.s);
        for kw in 0..g.k {
            let offw = g.off(kw);
            let (ow0, ow1) = valid_range(g.w, g.wo, offw, g.s);
            let mut acc = 0f32;
            if ow0 < ow1 {
                let iw0 = (ow0 * g.s) as isize + offw;
                for oh in oh0..oh1 {
                    let ih = ((oh * g.s) as isize + offh) as usize;
                    acc += dot_strided(&gr[oh * g.wo + ow0..oh * g.wo + ow1], &x[ih * g.w + iw0 as usize..(ih + 1) * g.w], g.s);
                }
            }
            gw[kh * g.k + kw] = acc;
        }
    }
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

/// Forward op: (x [B,C,H,W], w [C,1,k,k]) -> y [B,C,Ho,Wo].
struct DwConv {
    s: usize,
    p: usize,
    d: usize,
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let (cw, _, k, _) = dims4(l2)?;
        if cw != c {
            bail!("depthwise: {c} channels vs weight {cw}");
        }
        let x = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let g = Geo::new(h, w, k, self.s, self.p, self.d);
        let plane = g.ho * g.wo;
        let mut out = vec![0f32; b * c * plane];
        out.par_chunks_mut(plane).enumerate().for_each(|(bc, o)| {
            let ch = bc % c;
            fwd_plane(&x[bc * h * w..(bc + 1) * h * w], &wt[ch * k * k..(ch + 1) * k * k], o, &g);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let grad = grad.contiguous()?;
        let gx = grad.apply_op2_no_bwd(w, &DwGradInput { h, w: wd, s: self.s, p: self.p, d: self.d })?;
        let gw = x.apply_op2_no_bwd(&grad, &DwGradWeight { k, s: self.s, p: self.p, d: self.d })?;
        Ok((Some(gx), Some(gw)))
    }
}

/// (grad [B,C,Ho,Wo], w [C,1,k,k]) -> grad x [B,C,H,W].
struct DwGradInput {
    h: usize,
    w: usize,
    s: usize,
    p: usize,
    d: usize,
}

impl CustomOp2 for DwGradInput {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, ho, wo) = dims4(l1)?;
        let (_, _, k, _) = dims4(l2)?;
        let gr = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let g = Geo::new(self.h, self.w, k, self.s, self.p, self.d);
        if (g.ho, g.wo) != (ho, wo) {
            bail!("depthwise grad: output {ho}x{wo} does not match input {}x{}", self.h, self.w);
        }
        let plane = self.h * self.w;
        let mut out = vec![0f32; b * c * plane];
        out.par_chunks_mut(plane).enumerate().for_each(|(bc, o)| {
            let ch = bc % c;
            grad_input_plane(&gr[bc * ho * wo..(bc + 1) * ho * wo], &wt[ch * k * k..(ch + 1) * k * k], o, &g);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, self.h, self.w))))
    }
}

/// (x [B,C,H,W], grad [B,C,Ho,Wo]) -> grad w [C,1,k,k].
struct DwGradWeight {
    k: usize,
    s: usize,
    p: usize,
    d: usize,
}

impl CustomOp2 for DwGradWeight {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d-grad-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let (_, _, ho, wo) = dims4(l2)?;
        let x = slice(s1, l1)?;
        let gr = slice(s2, l2)?;
        let k = self.k;
        let g = Geo::new(h, w, k, self.s, self.p, self.d);
        if (g.ho, g.wo) != (ho, wo) {
            bail!("depthwise grad weight: shapes do not match");
        }
        let kk = k * k;
        // one partial k*k sum per plane, then a sum over the batch
        let mut part = vec![0f32; b * c * kk];
        part.par_chunks_mut(kk).enumerate().for_each(|(bc, o)| {
            grad_weight_plane(&x[bc * h * w..(bc + 1) * h * w], &gr[bc * ho * wo..(bc + 1) * ho * wo], o, &g);
        });
        let mut out = vec![0f32; c * kk];
        for bi in 0..b {
            for (o, v) in out.iter_mut().zip(&part[bi * c * kk..(bi + 1) * c * kk]) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((c, 1, k, k))))
    }
}

pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
    if !(super::common::kernel_ok(x) && super::common::kernel_ok(w)) {
        return crate::reference::depthwise_conv2d(x, w, stride, padding, dilation);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, DwConv { s: stride, p: padding, d: dilation })
}
