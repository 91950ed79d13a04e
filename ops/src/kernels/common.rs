//! Shared helpers for the CPU kernels: slice access, window geometry, small vector loops.

use candle_core::{bail, CpuStorage, DType, Layout, Result, Storage, Tensor};

/// The contiguous f32 data of a custom-op argument.
pub fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("nasflow-ops kernels: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("nasflow-ops kernels: argument is not contiguous"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (made contiguous first if needed).
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(cs) => f(slice(cs, l)?),
        _ => bail!("nasflow-ops kernels: tensor is not on the CPU"),
    }
}

/// True if the custom kernels can handle this tensor (CPU, f32).
pub fn kernel_ok(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Window geometry of one spatial dimension of a conv/pool.
/// For an input size `n`, output size `no`, the tap at offset `off = k_idx*dilation - padding`
/// reads input index `o*stride + off`; returns the output range [lo, hi) where that is in bounds.
#[inline]
pub fn valid_range(n: usize, no: usize, off: isize, stride: usize) -> (usize, usize) {
    let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(stride) };
    let last = n as isize - 1 - off;
    let hi = if last < 0 { 0 } else { (last as usize / stride + 1).min(no) };
    (lo, hi.max(lo))
}

/// y[i] += a * x[i]
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// y[i] += a * x[i * s]
#[inline]
pub fn axpy_strided(y: &mut [f32], a: f32, x: &[f32], s: usize) {
    if s == 1 {
        return axpy(y, a, &x[..y.len()]);
    }
    for (j, y) in y.iter_mut().enumerate() {
        *y += a * x[j * s];
    }
}

/// y[i * s] += a * x[i]
#[inline]
pub fn axpy_scatter(y: &mut [f32], a: f32, x: &[f32], s: usize) {
    if s == 1 {
        return axpy(&mut y[..x.len()], a, x);
    }
    for (j, x) in x.iter().enumerate() {
        y[j * s] += a * x;
    }
}

/// sum_i a[i] * b[i * s], with 8 independent accumulators so that it vectorises.
#[inline]
pub fn dot_strided(a: &[f32], b: &[f32], s: usize) -> f32 {
    if s == 1 {
        let b = &b[..a.len()];
        let mut acc = [0f32; 8];
        let ca = a.chunks_exact(8);
        let cb = b.chunks_exact(8);
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let mut tail = 0f32;
        for (x, y) in ra.iter().zip(rb) {
            tail += x * y;
        }
        return acc.iter().sum::<f32>() + tail;
    }
    let mut acc = 0f32;
    for (j, x) in a.iter().enumerate() {
        acc += x * b[j * s];
    }
    acc
}

/// Sum of a slice, f64 result from 8 f32 lanes.
#[inline]
pub fn sum8(x: &[f32]) -> f64 {
    let mut acc = [0f32; 8];
    let c = x.chunks_exact(8);
    let r = c.remainder();
    for v in c {
        for i in 0..8 {
            acc[i] += v[i];
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + r.iter().map(|&v| v as f64).sum::<f64>()
}

#[inline]
/// Sum of (x - m)^2, f64 result from 8 f32 lanes.
pub fn sqdev8(x: &[f32], m: f32) -> f64 {
    let mut acc = [0f32; 8];
    let c = x.chunks_exact(8);
    let r = c.remainder();
    for v in c {
        for i in 0..8 {
            let d = v[i] - m;
            acc[i] += d * d;
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + r.iter().map(|&v| ((v - m) * (v - m)) as f64).sum::<f64>()
}

/// (sum g, sum g * (x - m)) with 8 lanes.
#[inline]
pub fn bn_bwd_sums(g: &[f32], x: &[f32], m: f32) -> (f64, f64) {
    let mut a = [0f32; 8];
    let mut b = [0f32; 8];
    let cg = g.chunks_exact(8);
    let cx = x.chunks_exact(8);
    let (rg, rx) = (cg.remainder(), cx.remainder());
    for (gv, xv) in cg.zip(cx) {
        for i in 0..8 {
            a[i] += gv[i];
            b[i] += gv[i] * (xv[i] - m);
        }
    }
    let mut sa: f64 = a.iter().map(|&v| v as f64).sum();
    let mut sb: f64 = b.iter().map(|&v| v as f64).sum();
    for (gv, xv) in rg.iter().zip(rx) {
        sa += *gv as f64;
        sb += (*gv * (*xv - m)) as f64;
    }
    (sa, sb)
}
