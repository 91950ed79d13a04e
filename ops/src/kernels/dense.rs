//! Dense k x k conv2d (square kernel, any stride / padding / dilation) as a candle CustomOp2:
//! per sample, an im2col built from the padded polyphase planes of `window.rs` (each column
//! block is one contiguous copy) and one GEMM; the backward does the transposed GEMMs and a
//! col2im through the same layout. The weight gradient is summed over fixed batch groups
//! (deterministic); grad input is skipped when the input does not need it (e.g. a stem conv
//! on data).

use candle_core::{bail, CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{cpu_kernel_ok, slice, with_slice};
use super::pointwise::{mm, WGRAD_GROUPS};
use super::simd::add_to;
use super::window::{build_phases, build_wide, compact, gather, PGeo};

#[derive(Default)]
struct Scratch {
    phased: Vec<f32>,
    cols: Vec<f32>,
    y: Vec<f32>,
    gw: Vec<f32>,
    c: Vec<f32>,
}

/// cols[(ci*k*k + t) * n + i] = phased(x_ci)[tap_t + i]
fn im2col(g: &PGeo, x: &[f32], cin: usize, sc: &mut Scratch) {
    let n = g.wide_len();
    let kk = g.k * g.k;
    let hw = g.h * g.w;
    sc.cols.clear();
    sc.cols.resize(cin * kk * n, 0.0);
    for ci in 0..cin {
        build_phases(g, &x[ci * hw..(ci + 1) * hw], 0.0, false, &mut sc.phased);
        for kh in 0..g.k {
            for kw in 0..g.k {
                let t = g.tap(kh, kw);
                let r = ci * kk + kh * g.k + kw;
                sc.cols[r * n..(r + 1) * n].copy_from_slice(&sc.phased[t..t + n]);
            }
        }
    }
}

struct DenseConv {
    s: usize,
    p: usize,
    d: usize,
}

impl CustomOp2 for DenseConv {
    fn name(&self) -> &'static str {
        "nasflow-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, cin, h, w) = l1.shape().dims4()?;
        let (cout, wcin, k, k2) = l2.shape().dims4()?;
        if wcin != cin || k != k2 {
            bail!("conv2d: weight {:?} does not fit input {:?}", l2.dims(), l1.dims());
        }
        let x = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let g = PGeo::new(h, w, k, self.s, self.p, self.d);
        let (n, kdim, plane) = (g.wide_len(), cin * k * k, g.ho * g.wo);
        let mut out = vec![0f32; b * cout * plane];
        out.par_chunks_mut(cout * plane).enumerate().for_each_init(Scratch::default, |sc, (bi, o)| {
            im2col(&g, &x[bi * cin * h * w..(bi + 1) * cin * h * w], cin, sc);
            sc.y.clear();
            sc.y.resize(cout * n, 0.0);
            mm(cout, n, kdim, &mut sc.y, n, false, wt, kdim as isize, 1, &sc.cols, n as isize, 1);
            for co in 0..cout {
                compact(&g, &sc.y[co * n..(co + 1) * n], &mut o[co * plane..(co + 1) * plane]);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, cout, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, cin, h, wd) = x.dims4()?;
        let (cout, _, k, _) = w.dims4()?;
        let g = PGeo::new(h, wd, k, self.s, self.p, self.d);
        let (n, kk, plane, hw) = (g.wide_len(), k * k, g.ho * g.wo, h * wd);
        let kdim = cin * kk;
        let (need_x, need_w) = (crate::tape::needs_grad(x), crate::tape::needs_grad(w));
        let per = b.div_ceil(WGRAD_GROUPS.min(b));
        let groups = b.div_ceil(per);
        let mut part = vec![0f32; groups * cout * kdim];
        // without a grad input, each group gets a 1-element dummy chunk
        let mut gx = vec![0f32; if need_x { b * cin * hw } else { groups }];
        let gx_chunk = if need_x { per * cin * hw } else { 1 };
        with_slice(x, |xs| {
            with_slice(grad, |gs| {
                with_slice(w, |wt| {
                    part.par_chunks_mut(cout * kdim).zip(gx.par_chunks_mut(gx_chunk)).enumerate().for_each_init(Scratch::default, |sc, (gi, (acc, gxg))| {
                        for (j, bi) in (gi * per..((gi + 1) * per).min(b)).enumerate() {
                            let gb = &gs[bi * cout * plane..(bi + 1) * cout * plane];
                            // g_wide [cout x n], scratch columns zero
                            sc.y.clear();
                            sc.y.resize(cout * n, 0.0);
                            for co in 0..cout {
                                build_wide(&g, &gb[co * plane..(co + 1) * plane], None, &mut sc.c);
                                sc.y[co * n..(co + 1) * n].copy_from_slice(&sc.c);
                            }
                            if need_w {
                                im2col(&g, &xs[bi * cin * hw..(bi + 1) * cin * hw], cin, sc);
                                // acc [cout x kdim] += g_wide [cout x n] * cols^T [n x kdim]
                                mm(cout, kdim, n, acc, kdim, j > 0, &sc.y, n as isize, 1, &sc.cols, 1, n as isize);
                            }
                            if need_x {
                                // gcols [kdim x n] = W^T [kdim x cout] * g_wide [cout x n]
                                sc.gw.clear();
                                sc.gw.resize(kdim * n, 0.0);
                                mm(kdim, n, cout, &mut sc.gw, n, false, wt, 1, kdim as isize, &sc.y, n as isize, 1);
                                let gxb = &mut gxg[j * cin * hw..(j + 1) * cin * hw];
                                for ci in 0..cin {
                                    sc.c.clear();
                                    sc.c.resize(g.phased_len(), 0.0);
                                    for kh in 0..k {
                                        for kw in 0..k {
                                            let t = g.tap(kh, kw);
                                            let r = ci * kk + kh * k + kw;
                                            add_to(&mut sc.c[t..t + n], &sc.gw[r * n..(r + 1) * n]);
                                        }
                                    }
                                    gather(&g, &sc.c, &mut gxb[ci * hw..(ci + 1) * hw]);
                                }
                            }
                        }
                    });
                    Ok(())
                })
            })
        })?;
        let dev = Device::Cpu;
        let gx = if need_x { Some(Tensor::from_vec(gx, (b, cin, h, wd), &dev)?) } else { None };
        let gw = if need_w {
            let mut gw = vec![0f32; cout * kdim];
            for p in part.chunks(cout * kdim) {
                for (o, v) in gw.iter_mut().zip(p) {
                    *o += v;
                }
            }
            Some(Tensor::from_vec(gw, (cout, cin, k, k), &dev)?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// Dense conv2d, square kernel; falls back to candle's conv for non-CPU / non-f32 tensors
/// (CUDA included: candle's own cuda conv).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
    if !(cpu_kernel_ok(x) && cpu_kernel_ok(w)) {
        return crate::reference::conv2d_candle_ext(x, w, stride, padding, dilation, 1);
    }
    crate::tape::apply2(&x.contiguous()?, &w.contiguous()?, DenseConv { s: stride, p: padding, d: dilation })
}
