//! ReLU, per-sample scaling (drop path) and the 1x1 convolution (one small GEMM per sample) as
//! candle custom ops.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::common::{cpu_kernel_ok, kernel_ok, slice, with_slice};
use super::simd::multiversion;

const CHUNK: usize = 16 * 1024;

#[inline(always)]
fn relu_body(o: &mut [f32], x: &[f32]) {
    for (o, &v) in o.iter_mut().zip(x) {
        *o = if v > 0.0 { v } else { 0.0 };
    }
}

#[inline(always)]
fn relu_grad_body(o: &mut [f32], g: &[f32], y: &[f32]) {
    for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
        *o = if y > 0.0 { g } else { 0.0 };
    }
}

multiversion!(fn relu_chunk(o: &mut [f32], x: &[f32]) = relu_body;);
multiversion!(fn relu_grad_chunk(o: &mut [f32], g: &[f32], y: &[f32]) = relu_grad_body;);

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "nasflow-relu"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(st, l)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, x)| relu_chunk(o, x));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, st: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::relu_fwd(st, l)
    }

    /// PyTorch's threshold_backward: grad where the output is > 0.
    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if res.device().is_cuda() {
            return Ok(Some(super::cuda::relu_bwd(res, grad)?));
        }
        let out = with_slice(res, |y| {
            with_slice(grad, |g| {
                let mut out = vec![0f32; y.len()];
                out.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(y.par_chunks(CHUNK)).for_each(|((o, g), y)| relu_grad_chunk(o, g, y));
                Ok(out)
            })
        })?;
        Ok(Some(Tensor::from_vec(out, res.shape(), &Device::Cpu)?))
    }
}

/// ReLU with a single-pass backward (candle's builds a mask with several ops).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !kernel_ok(x) {
        return x.relu();
    }
    crate::tape::apply1(&x.contiguous()?, Relu)
}

/// y = x · scale[block] over equal contiguous blocks (samples or planes): a dropout mask as the
/// op's own constant. candle's `broadcast_mul` with a mask tensor would also compute, zero-fill
/// and reduce a gradient for the mask (a constant) on every call, several full passes over each
/// activation; here the backward is one pass. The products are the same f32 multiplications, so
/// values and gradients are bit-identical.
struct ScaleBlocks {
    scale: Vec<f32>,
}

impl ScaleBlocks {
    /// Every block written once by its worker (no serial zero-fill first).
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let per = x.len() / self.scale.len().max(1);
        par_uninit(x.len(), per, |i, o| {
            let s = self.scale[i];
            for (o, &v) in o.iter_mut().zip(&x[i * per..(i + 1) * per]) {
                o.write(v * s);
            }
        })
    }
}

impl CustomOp1 for ScaleBlocks {
    fn name(&self) -> &'static str {
        "nasflow-scale-samples"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(st, l)?;
        Ok((CpuStorage::F32(self.apply(x)), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let out = with_slice(grad, |g| Ok(self.apply(g)))?;
        Ok(Some(Tensor::from_vec(out, grad.shape(), &Device::Cpu)?))
    }
}

/// x · scale, with one scale per index of the first `lead` dims (row-major): per sample for
/// drop path (`lead` 1), per (sample, channel) plane for channel dropout (`lead` 2).
/// Differentiable in x only.
pub fn scale_leading(x: &Tensor, scale: &[f32], lead: usize) -> Result<Tensor> {
    let dims = x.dims();
    if lead == 0 || lead > dims.len() || dims[..lead].iter().product::<usize>() != scale.len() {
        bail!("scale_leading: {} scales do not fit the first {lead} dims of {dims:?}", scale.len());
    }
    if !cpu_kernel_ok(x) {
        let shape: Vec<usize> = dims.iter().enumerate().map(|(i, &d)| if i < lead { d } else { 1 }).collect();
        let m = Tensor::from_vec(scale.to_vec(), shape, x.device())?.to_dtype(x.dtype())?;
        return x.broadcast_mul(&m);
    }
    crate::tape::apply1(&x.contiguous()?, ScaleBlocks { scale: scale.to_vec() })
}

/// dst[m x n] (row stride dst_rs) = (read_dst ? dst : 0) + lhs[m x k] * rhs[k x n], strided views.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn mm(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, read_dst: bool, lhs: &[f32], lhs_rs: isize, lhs_cs: isize, rhs: &[f32], rhs_rs: isize, rhs_cs: isize) {
    // Bounds: every view lies inside its slice (checked by the callers' shapes).
    debug_assert!(dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: dst is a valid, initialised m x n view (asserted above).
    unsafe { mm_raw(m, n, k, dst.as_mut_ptr(), dst_rs, read_dst, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) }
}

/// [`mm`] into a contiguous m x n block that may be uninitialised (never read: `read_dst` is
/// false), so that outputs the GEMM overwrites entirely skip the zero-fill.
#[allow(clippy::too_many_arguments)]
#[inline]
fn mm_uninit(m: usize, n: usize, k: usize, dst: &mut [MaybeUninit<f32>], lhs: &[f32], lhs_rs: isize, lhs_cs: isize, rhs: &[f32], rhs_rs: isize, rhs_cs: isize) {
    assert!(dst.len() == m * n);
    // SAFETY: dst holds exactly m x n elements; with read_dst = false gemm only writes them.
    unsafe { mm_raw(m, n, k, dst.as_mut_ptr().cast(), n, false, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) }
}

/// # Safety
/// `dst` must be valid for writes of the m x n view with row stride `dst_rs` (and for reads
/// when `read_dst`); lhs and rhs views must lie inside their slices.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn mm_raw(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, read_dst: bool, lhs: &[f32], lhs_rs: isize, lhs_cs: isize, rhs: &[f32], rhs_rs: isize, rhs_cs: isize) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            read_dst,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// A vector of `len` f32 whose chunks of `chunk` elements are all written by `fill(i, chunk_i)`
/// in parallel, without zero-filling it first (`len` must be a multiple of `chunk`).
fn par_uninit(len: usize, chunk: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
    if len == 0 {
        return Vec::new();
    }
    assert!(chunk > 0 && len % chunk == 0, "par_uninit: {len} is not a multiple of {chunk}");
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each(|(i, c)| fill(i, c));
    // SAFETY: every chunk was written entirely by `fill` (its callers overwrite all of it).
    unsafe { v.set_len(len) };
    v
}

/// Number of fixed batch groups for the weight gradient (deterministic summation order,
/// independent of the thread count).
pub(crate) const WGRAD_GROUPS: usize = 16;

/// (x [B,Cin,H,W], w [Cout,Cin,1,1]) -> y [B,Cout,H,W]; y_b = W x_b, one GEMM per sample.
/// With `relu`, y_b = W relu(x_b): the ReLU is applied to a per-sample copy inside the op, so
/// relu(x) is neither a separate autograd node nor kept alive for the backward.
struct Conv1x1 {
    relu: bool,
}

/// The GEMM operand for sample `xi`: itself, or its ReLU in `buf` (same values as `relu_body`).
fn operand<'a>(relu: bool, xi: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    if !relu {
        return xi;
    }
    buf.clear();
    buf.extend(xi.iter().map(|&v| if v > 0.0 { v } else { 0.0 }));
    buf
}

impl CustomOp2 for Conv1x1 {
    fn name(&self) -> &'static str {
        "nasflow-conv1x1"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, cin, h, w) = l1.shape().dims4()?;
        let (cout, wcin, kh, kw) = l2.shape().dims4()?;
        if wcin != cin || kh != 1 || kw != 1 {
            bail!("conv1x1: weight {:?} does not fit input {:?}", l2.dims(), l1.dims());
        }
        let x = slice(s1, l1)?;
        let wt = slice(s2, l2)?;
        let hw = h * w;
        let out = par_uninit(b * cout * hw, cout * hw, |i, y| {
            let mut buf = Vec::new();
            let xi = operand(self.relu, &x[i * cin * hw..(i + 1) * cin * hw], &mut buf);
            mm_uninit(cout, hw, cin, y, wt, cin as isize, 1, xi, hw as isize, 1);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, cout, h, w))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, cin, h, wd) = x.dims4()?;
        let cout = w.dim(0)?;
        let hw = h * wd;
        let groups = WGRAD_GROUPS.min(b);
        let per = b.div_ceil(groups);
        let need_x = crate::tape::needs_grad(x);
        let (gx, gw) = with_slice(x, |xs| {
            with_slice(grad, |gs| {
                with_slice(w, |wt| {
                    // grad x_b = W^T g_b (skipped when x needs no gradient)
                    let gx = if need_x {
                        par_uninit(b * cin * hw, cin * hw, |i, o| {
                            mm_uninit(cin, hw, cout, o, wt, 1, cin as isize, &gs[i * cout * hw..(i + 1) * cout * hw], hw as isize, 1);
                            if self.relu {
                                // SAFETY: the GEMM above wrote every element of `o`.
                                let o = unsafe { &mut *(o as *mut [MaybeUninit<f32>] as *mut [f32]) };
                                // ReLU backward: the gradient passes where relu(x) > 0, i.e. x > 0
                                for (g, &xv) in o.iter_mut().zip(&xs[i * cin * hw..(i + 1) * cin * hw]) {
                                    if !(xv > 0.0) {
                                        *g = 0.0;
                                    }
                                }
                            }
                        })
                    } else {
                        Vec::new()
                    };
                    // grad W = sum_b g_b x_b^T, in fixed batch groups
                    let mut part = vec![0f32; groups * cout * cin];
                    part.par_chunks_mut(cout * cin).enumerate().for_each(|(gi, acc)| {
                        let mut buf = Vec::new();
                        for i in gi * per..((gi + 1) * per).min(b) {
                            let read = i > gi * per;
                            let xi = operand(self.relu, &xs[i * cin * hw..(i + 1) * cin * hw], &mut buf);
                            mm(cout, cin, hw, acc, cin, read, &gs[i * cout * hw..(i + 1) * cout * hw], hw as isize, 1, xi, 1, hw as isize);
                        }
                    });
                    let mut gw = vec![0f32; cout * cin];
                    for p in part.chunks(cout * cin) {
                        for (o, v) in gw.iter_mut().zip(p) {
                            *o += v;
                        }
                    }
                    Ok((gx, gw))
                })
            })
        })?;
        let dev = Device::Cpu;
        let gx = if need_x { Some(Tensor::from_vec(gx, (b, cin, h, wd), &dev)?) } else { None };
        Ok((gx, Some(Tensor::from_vec(gw, (cout, cin, 1, 1), &dev)?)))
    }
}

/// 1x1 conv without padding or stride (callers subsample first).
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !(cpu_kernel_ok(x) && cpu_kernel_ok(w)) {
        return crate::reference::conv1x1(x, w, 1);
    }
    crate::tape::apply2(&x.contiguous()?, &w.contiguous()?, Conv1x1 { relu: false })
}

/// `conv1x1(relu(x), w)` with the ReLU fused into the op (ReLUConvBN's stride-1 case, e.g. every
/// cell's preprocessing): one autograd node, and relu(x) is not kept for the backward.
pub fn relu_conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !(cpu_kernel_ok(x) && cpu_kernel_ok(w)) {
        return crate::reference::conv1x1(&x.relu()?, w, 1);
    }
    crate::tape::apply2(&x.contiguous()?, &w.contiguous()?, Conv1x1 { relu: true })
}
