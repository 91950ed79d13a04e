//! Shared helpers for the CPU kernels: access to contiguous f32 data.

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

