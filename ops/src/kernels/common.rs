//! Shared helpers for the kernels: access to contiguous f32 data, which tensors they take.

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

/// True if the custom kernels can handle this tensor: f32 on the CPU, or f32 on a CUDA device
/// when the `cuda` feature is on (the window, pool, subsample, ReLU and BN ops have CUDA kernels).
pub fn kernel_ok(t: &Tensor) -> bool {
    (t.device().is_cpu() || (cfg!(feature = "cuda") && t.device().is_cuda())) && t.dtype() == DType::F32
}

/// True if the CPU-only kernels (the 1x1 and dense conv GEMMs) can handle this tensor (CPU, f32);
/// on CUDA those go to candle's own conv / matmul.
pub fn cpu_kernel_ok(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}


/// A vector of `len` f32 (a multiple of `chunk`), built in parallel chunk by chunk: the worker
/// that fills chunk `i` (`fill(state, i, chunk_i)`, with `state` from `init` per worker, like
/// rayon's `for_each_init`) first zeroes it itself. `vec![0f32; len]` would zero the whole
/// output on the calling thread before the parallel pass (a serial memset per kernel output,
/// ~7% of a DARTS_V2 training step); here the zeroing is parallel and the chunk stays in cache
/// for the fill.
pub fn par_chunks_zeroed<S>(len: usize, chunk: usize, init: impl Fn() -> S + Sync + Send, fill: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    use rayon::prelude::*;
    if len == 0 {
        return Vec::new();
    }
    assert!(chunk > 0 && len % chunk == 0, "par_chunks_zeroed: {len} is not a multiple of {chunk}");
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each_init(init, |st, (i, c)| {
        fill(st, i, zero_chunk(c));
    });
    // SAFETY: all `len` elements were initialised above.
    unsafe { v.set_len(len) };
    v
}

/// Zeroes a chunk of a vector's spare capacity and returns it as initialised f32.
pub fn zero_chunk(c: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    c.fill(std::mem::MaybeUninit::new(0.0));
    // SAFETY: every element was just initialised; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}
