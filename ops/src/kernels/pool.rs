//! Padded 2D max / average pooling and strided subsampling as candle custom ops (forward and
//! backward), one rayon task per (batch, channel) plane.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{kernel_ok, slice, valid_range};
use crate::reference::{avg_divisor, out_size};

#[derive(Clone, Copy, Debug)]
struct Geo {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    s: usize,
    p: usize,
}

impl Geo {
    fn new(h: usize, w: usize, k: usize, s: usize, p: usize) -> Self {
        Self { h, w, ho: out_size(h, k, s, p, 1), wo: out_size(w, k, s, p, 1), k, s, p }
    }
    #[inline]
    fn off(&self, kidx: usize) -> isize {
        kidx as isize - self.p as isize
    }
}

/// Visits every (output row segment, input row segment) pair of the window loops:
/// f(oh, ih, ow0, ow1, iw0) for each tap (kh, kw) with a non-empty valid range.
#[inline]
fn for_taps(g: &Geo, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    for kh in 0..g.k {
        let offh = g.off(kh);
        let (oh0, oh1) = valid_range(g.h, g.ho, offh, g.s);
        for kw in 0..g.k {
            let offw = g.off(kw);
            let (ow0, ow1) = valid_range(g.w, g.wo, offw, g.s);
            if ow0 >= ow1 {
                continue;
            }
            let iw0 = ((ow0 * g.s) as isize + offw) as usize;
            for oh in oh0..oh1 {
                let ih = ((oh * g.s) as isize + offh) as usize;
                f(oh, ih, ow0, ow1, iw0);
            }
        }
    }
}

fn max_plane(x: &[f32], out: &mut [f32], g: &Geo) {
    out.fill(f32::NEG_INFINITY);
    let s = g.s;
    for_taps(g, |oh, ih, ow0, ow1, iw0| {
        let o = &mut out[oh * g.wo + ow0..oh * g.wo + ow1];
        let xr = &x[ih * g.w + iw0..];
        if s == 1 {
            for (o, v) in o.iter_mut().zip(xr) {
                *o = if *v > *o || v.is_nan() { *v } else { *o };
            }
        } else {
            for (j, o) in o.iter_mut().enumerate() {
                let v = xr[j * s];
                *o = if v > *o || v.is_nan() { v } else { *o };
            }
        }
    });
}

/// Gradient of max pooling: each output's gradient goes to the first maximum of its window in
/// row-major order (PyTorch's CPU rule: `val > max || isnan(val)`, starting at the first valid cell).
fn max_grad_plane(x: &[f32], gr: &[f32], gx: &mut [f32], g: &Geo) {
    gx.fill(0.0);
    for oh in 0..g.ho {
        let h0 = (oh * g.s) as isize - g.p as isize;
        let ha = h0.max(0) as usize;
        let hb = ((h0 + g.k as isize).min(g.h as isize)).max(0) as usize;
        for ow in 0..g.wo {
            let w0 = (ow * g.s) as isize - g.p as isize;
            let wa = w0.max(0) as usize;
            let wb = ((w0 + g.k as isize).min(g.w as isize)).max(0) as usize;
            if ha >= hb || wa >= wb {
                continue;
            }
            let mut best = f32::NEG_INFINITY;
            let mut idx = ha * g.w + wa;
            for ih in ha..hb {
                let row = &x[ih * g.w..];
                for iw in wa..wb {
                    let v = row[iw];
                    if v > best || v.is_nan() {
                        best = v;
                        idx = ih * g.w + iw;
                    }
                }
            }
            gx[idx] += gr[oh * g.wo + ow];
        }
    }
}

fn sum_plane(x: &[f32], out: &mut [f32], inv: &[f32], g: &Geo) {
    out.fill(0.0);
    let s = g.s;
    for_taps(g, |oh, ih, ow0, ow1, iw0| {
        let o = &mut out[oh * g.wo + ow0..oh * g.wo + ow1];
        let xr = &x[ih * g.w + iw0..];
        if s == 1 {
            for (o, v) in o.iter_mut().zip(xr) {
                *o += v;
            }
        } else {
            for (j, o) in o.iter_mut().enumerate() {
                *o += xr[j * s];
            }
        }
    });
    for (o, i) in out.iter_mut().zip(inv) {
        *o *= i;
    }
}

fn avg_grad_plane(gr: &[f32], gx: &mut [f32], inv: &[f32], scratch: &mut Vec<f32>, g: &Geo) {
    gx.fill(0.0);
    scratch.clear();
    scratch.extend(gr.iter().zip(inv).map(|(a, b)| a * b));
    let s = g.s;
    for_taps(g, |oh, ih, ow0, ow1, iw0| {
        let gs = &scratch[oh * g.wo + ow0..oh * g.wo + ow1];
        let xr = &mut gx[ih * g.w + iw0..];
        if s == 1 {
            for (x, v) in xr.iter_mut().zip(gs) {
                *x += v;
            }
        } else {
            for (j, v) in gs.iter().enumerate() {
                xr[j * s] += v;
            }
        }
    });
}

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
        let g = Geo::new(h, w, self.k, self.s, self.p);
        let plane = g.ho * g.wo;
        let mut out = vec![0f32; b * c * plane];
        out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| max_plane(&x[i * h * w..(i + 1) * h * w], o, &g));
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
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
        let g = Geo::new(h, w, self.k, self.s, self.p);
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("pool grad: output {ho}x{wo} does not fit input {h}x{w}");
        }
        let mut out = vec![0f32; b * c * h * w];
        out.par_chunks_mut(h * w).enumerate().for_each(|(i, o)| {
            max_grad_plane(&x[i * h * w..(i + 1) * h * w], &gr[i * ho * wo..(i + 1) * ho * wo], o, &g)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
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
        let g = Geo::new(h, w, self.k, self.s, self.p);
        let inv: Vec<f32> = avg_divisor(h, w, self.k, self.s, self.p, self.cip).iter().map(|d| 1.0 / d).collect();
        let plane = g.ho * g.wo;
        let mut out = vec![0f32; b * c * plane];
        out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| sum_plane(&x[i * h * w..(i + 1) * h * w], o, &inv, &g));
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.ho, g.wo))))
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
        let g = Geo::new(h, w, self.k, self.s, self.p);
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("pool grad: output {ho}x{wo} does not fit input {h}x{w}");
        }
        let inv: Vec<f32> = avg_divisor(h, w, self.k, self.s, self.p, self.cip).iter().map(|d| 1.0 / d).collect();
        let mut out = vec![0f32; b * c * h * w];
        out.par_chunks_mut(h * w).enumerate().for_each_init(Vec::new, |scratch, (i, o)| {
            avg_grad_plane(&gr[i * ho * wo..(i + 1) * ho * wo], o, &inv, scratch, &g)
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// x[:, :, ::sh, ::sw]
struct Subsample {
    sh: usize,
    sw: usize,
}

impl CustomOp1 for Subsample {
    fn name(&self) -> &'static str {
        "nasflow-subsample"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = slice(st, l)?;
        let (ho, wo) = (h.div_ceil(self.sh), w.div_ceil(self.sw));
        let mut out = vec![0f32; b * c * ho * wo];
        let (sh, sw) = (self.sh, self.sw);
        out.par_chunks_mut(ho * wo).enumerate().for_each(|(i, o)| {
            let xp = &x[i * h * w..(i + 1) * h * w];
            for oh in 0..ho {
                let row = &xp[oh * sh * w..];
                for (ow, v) in o[oh * wo..(oh + 1) * wo].iter_mut().enumerate() {
                    *v = row[ow * sw];
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&SubsampleGrad { h, w, sh: self.sh, sw: self.sw })?))
    }
}

struct SubsampleGrad {
    h: usize,
    w: usize,
    sh: usize,
    sw: usize,
}

impl CustomOp1 for SubsampleGrad {
    fn name(&self) -> &'static str {
        "nasflow-subsample-grad"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, ho, wo) = l.shape().dims4()?;
        let (h, w, sh, sw) = (self.h, self.w, self.sh, self.sw);
        let gr = slice(st, l)?;
        let mut out = vec![0f32; b * c * h * w];
        out.par_chunks_mut(h * w).enumerate().for_each(|(i, o)| {
            let gp = &gr[i * ho * wo..(i + 1) * ho * wo];
            for oh in 0..ho {
                let row = &mut o[oh * sh * w..];
                for (ow, v) in gp[oh * wo..(oh + 1) * wo].iter().enumerate() {
                    row[ow * sw] = *v;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if !kernel_ok(x) {
        return crate::reference::max_pool2d(x, kernel, stride, padding);
    }
    x.contiguous()?.apply_op1(MaxPool { k: kernel, s: stride, p: padding })
}

pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize, count_include_pad: bool) -> Result<Tensor> {
    if !kernel_ok(x) {
        return crate::reference::avg_pool2d(x, kernel, stride, padding, count_include_pad);
    }
    x.contiguous()?.apply_op1(AvgPool { k: kernel, s: stride, p: padding, cip: count_include_pad })
}

pub fn subsample2(x: &Tensor, sh: usize, sw: usize) -> Result<Tensor> {
    if sh == 1 && sw == 1 {
        return Ok(x.clone());
    }
    if !kernel_ok(x) {
        return crate::reference::subsample_dim(&crate::reference::subsample_dim(x, 2, sh)?, 3, sw);
    }
    x.contiguous()?.apply_op1(Subsample { sh, sw })
}
