//! Per-plane kernels of the window ops (depthwise conv, max/avg pool), forward and backward.
//!
//! Every plane is first copied into a padded, *polyphase* layout: for stride s the padded plane
//! (Hp x Wp) is split into s*s phase planes xs[rh][rw][i][j] = xp[i*s + rh][j*s + rw], each
//! Hq x Wq with Hq = ceil(Hp/s), Wq = ceil(Wp/s). The tap (kh, kw) of every output then reads one
//! phase plane at a constant offset, so with the output kept in a "wide" layout (row stride Wq,
//! columns >= Wo are scratch) each tap is a single long contiguous vector loop over the whole
//! plane, for any stride, padding and dilation. Scatter (backward) works the same way in reverse.

use super::simd::{add_to, axpy, dot, max_to, multiversion};
use crate::reference::out_size;

#[derive(Clone, Copy, Debug)]
pub struct PGeo {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub d: usize,
    pub ho: usize,
    pub wo: usize,
    wq: usize,
    /// size of one phase plane, with slack for the wide reads
    pq: usize,
}

impl PGeo {
    pub fn new(h: usize, w: usize, k: usize, s: usize, p: usize, d: usize) -> Self {
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let (hq, wq) = (hp.div_ceil(s), wp.div_ceil(s));
        Self { h, w, k, s, p, d, ho: out_size(h, k, s, p, d), wo: out_size(w, k, s, p, d), wq, pq: (hq + 2) * wq + k * d + 8 }
    }
    #[inline(always)]
    pub fn phased_len(&self) -> usize {
        self.s * self.s * self.pq
    }
    #[inline(always)]
    pub fn wide_len(&self) -> usize {
        self.ho * self.wq
    }
    /// Start of the wide window of tap (kh, kw) in the phased buffer.
    #[inline(always)]
    pub fn tap(&self, kh: usize, kw: usize) -> usize {
        let (a, b, s) = (kh * self.d, kw * self.d, self.s);
        ((a % s) * s + b % s) * self.pq + (a / s) * self.wq + b / s
    }
    /// Index of padded position (i, j) in the phased buffer.
    #[inline(always)]
    fn pos(&self, i: usize, j: usize) -> usize {
        let s = self.s;
        ((i % s) * s + j % s) * self.pq + (i / s) * self.wq + j / s
    }
}

/// Scratch buffers of one worker.
#[derive(Default)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    idx: Vec<u32>,
}

/// Copies a plane into the padded polyphase layout, applying ReLU on the way when `relu`.
#[inline(always)]
pub fn build_phases(g: &PGeo, x: &[f32], pad: f32, relu: bool, buf: &mut Vec<f32>) {
    buf.clear();
    buf.resize(g.phased_len(), pad);
    let (w, p) = (g.w, g.p);
    if g.s == 1 {
        for ih in 0..g.h {
            let o = (ih + p) * g.wq + p;
            let (dst, src) = (&mut buf[o..o + w], &x[ih * w..(ih + 1) * w]);
            if relu {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = if v > 0.0 { v } else { 0.0 };
                }
            } else {
                dst.copy_from_slice(src);
            }
        }
    } else {
        // Row by row, one phase column at a time: input columns iw ≡ rw - p (mod s) land
        // contiguously in phase plane (rh, rw), so the inner loop is a strided read and a
        // contiguous write with no division per element.
        let s = g.s;
        for ih in 0..g.h {
            let row = &x[ih * w..(ih + 1) * w];
            let (rh, qh) = ((ih + p) % s, (ih + p) / s);
            for rw in 0..s {
                // first input column with (iw + p) % s == rw
                let iw0 = (rw + s - p % s) % s;
                if iw0 >= w {
                    continue;
                }
                let q0 = (iw0 + p) / s;
                let base = (rh * s + rw) * g.pq + qh * g.wq + q0;
                debug_assert_eq!(base, g.pos(ih + p, iw0 + p));
                let n = (w - iw0).div_ceil(s);
                let dst = &mut buf[base..base + n];
                for (d, &v) in dst.iter_mut().zip(row[iw0..].iter().step_by(s)) {
                    *d = if relu && !(v > 0.0) { 0.0 } else { v };
                }
            }
        }
    }
}

/// Copies phased position (ih + p, iw + p) back to the plain plane.
#[inline(always)]
pub fn gather(g: &PGeo, buf: &[f32], out: &mut [f32]) {
    let (w, p) = (g.w, g.p);
    if g.s == 1 {
        for ih in 0..g.h {
            let o = (ih + p) * g.wq + p;
            out[ih * w..(ih + 1) * w].copy_from_slice(&buf[o..o + w]);
        }
    } else {
        // the inverse of `build_phases`' strided copy
        let s = g.s;
        for ih in 0..g.h {
            let row = &mut out[ih * w..(ih + 1) * w];
            let (rh, qh) = ((ih + p) % s, (ih + p) / s);
            for rw in 0..s {
                let iw0 = (rw + s - p % s) % s;
                if iw0 >= w {
                    continue;
                }
                let q0 = (iw0 + p) / s;
                let base = (rh * s + rw) * g.pq + qh * g.wq + q0;
                let n = (w - iw0).div_ceil(s);
                for (o, &v) in row[iw0..].iter_mut().step_by(s).zip(&buf[base..base + n]) {
                    *o = v;
                }
            }
        }
    }
}

/// Wide copy of an output-shaped plane (scratch columns zeroed), optionally times `scale`.
#[inline(always)]
pub fn build_wide(g: &PGeo, x: &[f32], scale: Option<&[f32]>, buf: &mut Vec<f32>) {
    buf.clear();
    buf.resize(g.wide_len(), 0.0);
    for oh in 0..g.ho {
        let dst = &mut buf[oh * g.wq..oh * g.wq + g.wo];
        let src = &x[oh * g.wo..(oh + 1) * g.wo];
        match scale {
            None => dst.copy_from_slice(src),
            Some(sc) => {
                for ((d, s), c) in dst.iter_mut().zip(src).zip(&sc[oh * g.wo..(oh + 1) * g.wo]) {
                    *d = s * c;
                }
            }
        }
    }
}

#[inline(always)]
pub fn compact(g: &PGeo, wide: &[f32], out: &mut [f32]) {
    for oh in 0..g.ho {
        out[oh * g.wo..(oh + 1) * g.wo].copy_from_slice(&wide[oh * g.wq..oh * g.wq + g.wo]);
    }
}

// ------------------------------------------------------------------------------ depthwise conv

#[inline(always)]
fn dw_fwd_body(g: &PGeo, relu: bool, x: &[f32], wt: &[f32], out: &mut [f32], sc: &mut Scratch) {
    build_phases(g, x, 0.0, relu, &mut sc.a);
    let n = g.wide_len();
    sc.b.clear();
    sc.b.resize(n, 0.0);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            axpy(&mut sc.b, wt[kh * g.k + kw], &sc.a[t..t + n]);
        }
    }
    compact(g, &sc.b, out);
}

/// Backward of one plane: grad input into `gx`, this plane's share of grad weight into `gw`.
/// With `relu`, the op is conv(relu(x)) and grad input is masked by x > 0.
#[inline(always)]
fn dw_bwd_body(g: &PGeo, relu: bool, x: &[f32], gr: &[f32], wt: &[f32], gx: &mut [f32], gw: &mut [f32], sc: &mut Scratch) {
    build_phases(g, x, 0.0, relu, &mut sc.a);
    build_wide(g, gr, None, &mut sc.b);
    let n = g.wide_len();
    sc.c.clear();
    sc.c.resize(g.phased_len(), 0.0);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            gw[kh * g.k + kw] = dot(&sc.b, &sc.a[t..t + n]);
            axpy(&mut sc.c[t..t + n], wt[kh * g.k + kw], &sc.b);
        }
    }
    gather(g, &sc.c, gx);
    if relu {
        for (o, &v) in gx.iter_mut().zip(x) {
            *o = if v > 0.0 { *o } else { 0.0 };
        }
    }
}

multiversion!(pub fn dw_fwd_plane(g: &PGeo, relu: bool, x: &[f32], wt: &[f32], out: &mut [f32], sc: &mut Scratch) = dw_fwd_body;);
multiversion!(pub fn dw_bwd_plane(g: &PGeo, relu: bool, x: &[f32], gr: &[f32], wt: &[f32], gx: &mut [f32], gw: &mut [f32], sc: &mut Scratch) = dw_bwd_body;);

// ------------------------------------------------------------------------------ max pool

#[inline(always)]
fn max_fwd_body(g: &PGeo, x: &[f32], out: &mut [f32], sc: &mut Scratch) {
    build_phases(g, x, f32::NEG_INFINITY, false, &mut sc.a);
    let n = g.wide_len();
    sc.b.clear();
    sc.b.resize(n, f32::NEG_INFINITY);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            max_to(&mut sc.b, &sc.a[t..t + n]);
        }
    }
    compact(g, &sc.b, out);
}

/// Each output's gradient goes to the first maximum of its window in row-major tap order, with
/// PyTorch's CPU rule (`val > max || isnan(val)`, starting from the first in-bounds cell).
#[inline(always)]
fn max_bwd_body(g: &PGeo, x: &[f32], gr: &[f32], gx: &mut [f32], sc: &mut Scratch) {
    build_phases(g, x, f32::NEG_INFINITY, false, &mut sc.a);
    let n = g.wide_len();
    sc.b.clear();
    sc.b.resize(n, f32::NEG_INFINITY);
    sc.idx.clear();
    sc.idx.resize(n, u32::MAX);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            let tap = (kh * g.k + kw) as u32;
            let src = &sc.a[t..t + n];
            for ((b, i), &v) in sc.b.iter_mut().zip(sc.idx.iter_mut()).zip(src) {
                let take = v > *b || v.is_nan();
                *b = if take { v } else { *b };
                *i = if take { tap } else { *i };
            }
        }
    }
    gx.fill(0.0);
    let (s, p, d, k) = (g.s, g.p, g.d, g.k);
    // first in-bounds tap along one axis for output index o
    let first = |o: usize, n_in: usize| -> usize { (0..k).find(|&t| o * s + t * d >= p && o * s + t * d < n_in + p).unwrap_or(0) };
    for oh in 0..g.ho {
        for ow in 0..g.wo {
            let mut t = sc.idx[oh * g.wq + ow] as usize;
            if t == u32::MAX as usize {
                t = first(oh, g.h) * k + first(ow, g.w);
            }
            let (kh, kw) = (t / k, t % k);
            let ih = oh * s + kh * d - p;
            let iw = ow * s + kw * d - p;
            gx[ih * g.w + iw] += gr[oh * g.wo + ow];
        }
    }
}

multiversion!(pub fn max_fwd_plane(g: &PGeo, x: &[f32], out: &mut [f32], sc: &mut Scratch) = max_fwd_body;);
multiversion!(pub fn max_bwd_plane(g: &PGeo, x: &[f32], gr: &[f32], gx: &mut [f32], sc: &mut Scratch) = max_bwd_body;);

// ------------------------------------------------------------------------------ avg pool

/// `inv`: 1/divisor per output position (Ho*Wo).
#[inline(always)]
fn avg_fwd_body(g: &PGeo, x: &[f32], inv: &[f32], out: &mut [f32], sc: &mut Scratch) {
    build_phases(g, x, 0.0, false, &mut sc.a);
    let n = g.wide_len();
    sc.b.clear();
    sc.b.resize(n, 0.0);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            add_to(&mut sc.b, &sc.a[t..t + n]);
        }
    }
    for oh in 0..g.ho {
        let o = &mut out[oh * g.wo..(oh + 1) * g.wo];
        let wsrc = &sc.b[oh * g.wq..oh * g.wq + g.wo];
        let isrc = &inv[oh * g.wo..(oh + 1) * g.wo];
        for ((o, v), i) in o.iter_mut().zip(wsrc).zip(isrc) {
            *o = v * i;
        }
    }
}

#[inline(always)]
fn avg_bwd_body(g: &PGeo, gr: &[f32], inv: &[f32], gx: &mut [f32], sc: &mut Scratch) {
    build_wide(g, gr, Some(inv), &mut sc.b);
    let n = g.wide_len();
    sc.c.clear();
    sc.c.resize(g.phased_len(), 0.0);
    for kh in 0..g.k {
        for kw in 0..g.k {
            let t = g.tap(kh, kw);
            add_to(&mut sc.c[t..t + n], &sc.b);
        }
    }
    gather(g, &sc.c, gx);
}

multiversion!(pub fn avg_fwd_plane(g: &PGeo, x: &[f32], inv: &[f32], out: &mut [f32], sc: &mut Scratch) = avg_fwd_body;);
multiversion!(pub fn avg_bwd_plane(g: &PGeo, gr: &[f32], inv: &[f32], gx: &mut [f32], sc: &mut Scratch) = avg_bwd_body;);
