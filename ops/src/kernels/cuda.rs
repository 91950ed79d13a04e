//! CUDA paths of the custom ops (feature `cuda`): launches of the kernels in
//! `ops/cuda/nasflow_ops.cu` (PTX built by `ops/build.rs`, loaded once per device through
//! candle's `CudaDevice::get_or_load_custom_func`), plus the gradient ops that the backward
//! passes apply on CUDA where the CPU code reads host slices.
//!
//! Every kernel takes contiguous f32 NCHW data; backward kernels are gathers (one thread per
//! input element) and reductions use one block per output value, so there are no float atomics
//! and results are the same from run to run.
//!
//! Not run on a GPU where this was written (compiled only); see docs/cuda.md.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{bail, CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::reference::out_size;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/nasflow_ops.ptx"));
const MODULE: &str = "nasflow_ops";
/// Threads per block of the reduction kernels (`NF_RED_THREADS` in the .cu file).
const RED_THREADS: u32 = 256;
/// Threads per block of the element-wise (grid-stride) kernels.
const EW_THREADS: u32 = 256;

/// Loads `$name` from the module and launches it with `$cfg` and the given argument references.
macro_rules! launch {
    ($dev:expr, $name:literal, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, MODULE, PTX)?;
        let mut b = func.builder();
        $( b.arg($arg); )+
        // SAFETY: the argument list matches the kernel's signature in nasflow_ops.cu (pointers to
        // device buffers of the sizes the kernel indexes, then its scalar/struct parameters).
        unsafe { b.launch($cfg) }.w()?;
    }};
}

/// Window geometry passed by value to the kernels; `struct WinGeo` in the .cu file.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct WinGeo {
    b: i32,
    c: i32,
    h: i32,
    w: i32,
    k: i32,
    s: i32,
    p: i32,
    d: i32,
    ho: i32,
    wo: i32,
    flag: i32,
}
// SAFETY: plain repr(C) struct of i32, the layout of the C struct.
unsafe impl DeviceRepr for WinGeo {}

/// Subsample geometry; `struct SubGeo` in the .cu file.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct SubGeo {
    b: i32,
    c: i32,
    h: i32,
    w: i32,
    sh: i32,
    sw: i32,
    h0: i32,
    w0: i32,
    ho: i32,
    wo: i32,
    relu: i32,
}
// SAFETY: plain repr(C) struct of i32, the layout of the C struct.
unsafe impl DeviceRepr for SubGeo {}

fn int(v: usize) -> Result<i32> {
    match i32::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => bail!("nasflow-ops cuda: size {v} does not fit the kernels' 32-bit indices"),
    }
}

impl WinGeo {
    /// Also checks that a plane (input and output) is indexable with i32.
    #[allow(clippy::too_many_arguments)]
    fn new(dims: (usize, usize, usize, usize), k: usize, s: usize, p: usize, d: usize, flag: bool) -> Result<Self> {
        let (b, c, h, w) = dims;
        if k == 0 || s == 0 || d == 0 || h + 2 * p < d * (k - 1) + 1 || w + 2 * p < d * (k - 1) + 1 {
            bail!("nasflow-ops cuda: window k{k} s{s} p{p} d{d} does not fit a {h}x{w} input");
        }
        let (ho, wo) = (out_size(h, k, s, p, d), out_size(w, k, s, p, d));
        int(h * w)?;
        int(ho * wo)?;
        Ok(Self { b: int(b)?, c: int(c)?, h: int(h)?, w: int(w)?, k: int(k)?, s: int(s)?, p: int(p)?, d: int(d)?, ho: int(ho)?, wo: int(wo)?, flag: flag as i32 })
    }
    fn out_shape(&self) -> Shape {
        Shape::from((self.b as usize, self.c as usize, self.ho as usize, self.wo as usize))
    }
    fn in_shape(&self) -> Shape {
        Shape::from((self.b as usize, self.c as usize, self.h as usize, self.w as usize))
    }
}

/// The contiguous f32 data of a custom-op argument on the device.
fn view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    let data = s.as_cuda_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(data.slice(a..b)),
        None => bail!("nasflow-ops cuda kernels: argument is not contiguous"),
    }
}

/// Uninitialised output of `n` f32 (every kernel writes all of it).
fn alloc(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    if n == 0 {
        return dev.alloc_zeros::<f32>(0);
    }
    // SAFETY: the kernel launched next writes all n elements before anything reads them.
    unsafe { dev.alloc::<f32>(n) }
}

fn wrap(out: CudaSlice<f32>, dev: &CudaDevice, shape: Shape) -> (CudaStorage, Shape) {
    (CudaStorage::wrap_cuda_slice(out, dev.clone()), shape)
}

/// Grid-stride launch for `n` elements.
fn ew_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(EW_THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (EW_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One reduction block per output value.
fn red_cfg(blocks: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig { grid_dim: (int(blocks.max(1))? as u32, 1, 1), block_dim: (RED_THREADS, 1, 1), shared_mem_bytes: 0 })
}

fn cuda_only(name: &str) -> Result<(CpuStorage, Shape)> {
    bail!("{name}: CUDA-only gradient op called on the CPU")
}

// ------------------------------------------------------------------------------ depthwise conv

pub(crate) fn dw_fwd(s: usize, p: usize, d: usize, relu: bool, xs: &CudaStorage, xl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
    let dims = xl.shape().dims4()?;
    let (cw, one, k, k2) = wl.shape().dims4()?;
    if cw != dims.1 || one != 1 || k != k2 {
        bail!("depthwise: weight {:?} does not fit input {:?}", wl.dims(), xl.dims());
    }
    let g = WinGeo::new(dims, k, s, p, d, relu)?;
    let dev = &xs.device;
    let (x, w) = (view(xs, xl)?, view(ws, wl)?);
    let shape = g.out_shape();
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_dw_fwd", ew_cfg(shape.elem_count()), &x, &w, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

/// (x, grad, w) -> grad x of the depthwise conv.
struct DwGradInput {
    s: usize,
    p: usize,
    d: usize,
    relu: bool,
}

impl CustomOp3 for DwGradInput {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d-grad-input"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout, gs: &CudaStorage, gl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
        let k = wl.shape().dims4()?.2;
        let g = WinGeo::new(xl.shape().dims4()?, k, self.s, self.p, self.d, self.relu)?;
        if gl.shape() != &g.out_shape() {
            bail!("depthwise bwd: grad {:?} for output {:?}", gl.dims(), g.out_shape());
        }
        let dev = &xs.device;
        let (x, gr, w) = (view(xs, xl)?, view(gs, gl)?, view(ws, wl)?);
        let shape = g.in_shape();
        let out = alloc(dev, shape.elem_count())?;
        if shape.elem_count() > 0 {
            launch!(dev, "nf_dw_bwd_input", ew_cfg(shape.elem_count()), &x, &gr, &w, &out, &g);
        }
        Ok(wrap(out, dev, shape))
    }
}

/// (x, grad) -> grad w [C, 1, k, k] of the depthwise conv, one block per (channel, tap).
struct DwGradWeight {
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    relu: bool,
}

impl CustomOp2 for DwGradWeight {
    fn name(&self) -> &'static str {
        "nasflow-depthwise-conv2d-grad-weight"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout, gs: &CudaStorage, gl: &Layout) -> Result<(CudaStorage, Shape)> {
        let g = WinGeo::new(xl.shape().dims4()?, self.k, self.s, self.p, self.d, self.relu)?;
        if gl.shape() != &g.out_shape() {
            bail!("depthwise bwd: grad {:?} for output {:?}", gl.dims(), g.out_shape());
        }
        let dev = &xs.device;
        let (x, gr) = (view(xs, xl)?, view(gs, gl)?);
        let (c, k) = (g.c as usize, self.k);
        let out = alloc(dev, c * k * k)?;
        if c * k * k > 0 {
            launch!(dev, "nf_dw_bwd_weight", red_cfg(c * k * k)?, &x, &gr, &out, &g);
        }
        Ok(wrap(out, dev, Shape::from((c, 1, k, k))))
    }
}

/// Backward of the depthwise conv on CUDA: (grad x, grad w).
pub(crate) fn dw_bwd(x: &Tensor, w: &Tensor, grad: &Tensor, s: usize, p: usize, d: usize, relu: bool) -> Result<(Tensor, Tensor)> {
    let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
    let k = w.dim(2)?;
    let gx = x.apply_op3_no_bwd(&grad, &w, &DwGradInput { s, p, d, relu })?;
    let gw = x.apply_op2_no_bwd(&grad, &DwGradWeight { k, s, p, d, relu })?;
    Ok((gx, gw))
}

// ------------------------------------------------------------------------------ pools

pub(crate) fn max_fwd(k: usize, s: usize, p: usize, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
    let g = WinGeo::new(xl.shape().dims4()?, k, s, p, 1, false)?;
    let dev = &xs.device;
    let x = view(xs, xl)?;
    let shape = g.out_shape();
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_max_fwd", ew_cfg(shape.elem_count()), &x, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

/// `MaxPoolGrad` on CUDA: (x, grad) -> grad x.
pub(crate) fn max_bwd(k: usize, s: usize, p: usize, xs: &CudaStorage, xl: &Layout, gs: &CudaStorage, gl: &Layout) -> Result<(CudaStorage, Shape)> {
    let g = WinGeo::new(xl.shape().dims4()?, k, s, p, 1, false)?;
    if gl.shape() != &g.out_shape() {
        bail!("pool grad: grad {:?} does not fit input {:?}", gl.dims(), xl.dims());
    }
    let dev = &xs.device;
    let (x, gr) = (view(xs, xl)?, view(gs, gl)?);
    let shape = g.in_shape();
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_max_bwd", ew_cfg(shape.elem_count()), &x, &gr, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

pub(crate) fn avg_fwd(k: usize, s: usize, p: usize, cip: bool, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
    let g = WinGeo::new(xl.shape().dims4()?, k, s, p, 1, cip)?;
    let dev = &xs.device;
    let x = view(xs, xl)?;
    let shape = g.out_shape();
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_avg_fwd", ew_cfg(shape.elem_count()), &x, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

/// `AvgPoolGrad` on CUDA: grad [B, C, Ho, Wo] -> grad x [B, C, h, w].
#[allow(clippy::too_many_arguments)]
pub(crate) fn avg_bwd(h: usize, w: usize, k: usize, s: usize, p: usize, cip: bool, gs: &CudaStorage, gl: &Layout) -> Result<(CudaStorage, Shape)> {
    let (b, c, ho, wo) = gl.shape().dims4()?;
    let g = WinGeo::new((b, c, h, w), k, s, p, 1, cip)?;
    if (g.ho as usize, g.wo as usize) != (ho, wo) {
        bail!("pool grad: output {ho}x{wo} does not fit input {h}x{w}");
    }
    let dev = &gs.device;
    let gr = view(gs, gl)?;
    let shape = g.in_shape();
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_avg_bwd", ew_cfg(shape.elem_count()), &gr, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

// ------------------------------------------------------------------------------ subsample

fn sub_geo(dims: (usize, usize, usize, usize), sh: usize, sw: usize, h0: usize, w0: usize, relu: bool) -> Result<SubGeo> {
    let (b, c, h, w) = dims;
    if sh == 0 || sw == 0 || h0 >= h || w0 >= w {
        bail!("subsample: stride ({sh}, {sw}) offset ({h0}, {w0}) on a {h}x{w} input");
    }
    let (ho, wo) = ((h - h0).div_ceil(sh), (w - w0).div_ceil(sw));
    int(h * w)?;
    Ok(SubGeo { b: int(b)?, c: int(c)?, h: int(h)?, w: int(w)?, sh: int(sh)?, sw: int(sw)?, h0: int(h0)?, w0: int(w0)?, ho: int(ho)?, wo: int(wo)?, relu: relu as i32 })
}

pub(crate) fn sub_fwd(sh: usize, sw: usize, h0: usize, w0: usize, relu: bool, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
    let g = sub_geo(xl.shape().dims4()?, sh, sw, h0, w0, relu)?;
    let dev = &xs.device;
    let x = view(xs, xl)?;
    let shape = Shape::from((g.b as usize, g.c as usize, g.ho as usize, g.wo as usize));
    let out = alloc(dev, shape.elem_count())?;
    if shape.elem_count() > 0 {
        launch!(dev, "nf_sub_fwd", ew_cfg(shape.elem_count()), &x, &out, &g);
    }
    Ok(wrap(out, dev, shape))
}

/// (grad, y) -> grad x of the subsample (y: the forward output, for the fused ReLU).
struct SubGrad {
    h: usize,
    w: usize,
    sh: usize,
    sw: usize,
    h0: usize,
    w0: usize,
    relu: bool,
}

impl CustomOp2 for SubGrad {
    fn name(&self) -> &'static str {
        "nasflow-subsample-grad"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, gs: &CudaStorage, gl: &Layout, ys: &CudaStorage, yl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, c, _, _) = gl.shape().dims4()?;
        let g = sub_geo((b, c, self.h, self.w), self.sh, self.sw, self.h0, self.w0, self.relu)?;
        let out_shape = Shape::from((b, c, g.ho as usize, g.wo as usize));
        if gl.shape() != &out_shape || yl.shape() != &out_shape {
            bail!("subsample bwd: grad {:?} / output {:?}, expected {:?}", gl.dims(), yl.dims(), out_shape);
        }
        let dev = &gs.device;
        let (gr, y) = (view(gs, gl)?, view(ys, yl)?);
        let shape = Shape::from((b, c, self.h, self.w));
        let out = alloc(dev, shape.elem_count())?;
        if shape.elem_count() > 0 {
            launch!(dev, "nf_sub_bwd", ew_cfg(shape.elem_count()), &gr, &y, &out, &g);
        }
        Ok(wrap(out, dev, shape))
    }
}

/// Backward of `Subsample` on CUDA.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sub_bwd(x: &Tensor, res: &Tensor, grad: &Tensor, sh: usize, sw: usize, h0: usize, w0: usize, relu: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    grad.contiguous()?.apply_op2_no_bwd(&res.contiguous()?, &SubGrad { h, w, sh, sw, h0, w0, relu })
}

// ------------------------------------------------------------------------------ relu

pub(crate) fn relu_fwd(xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &xs.device;
    let x = view(xs, xl)?;
    let n = xl.shape().elem_count();
    let out = alloc(dev, n)?;
    if n > 0 {
        let nn = n as i64;
        launch!(dev, "nf_relu_fwd", ew_cfg(n), &x, &out, &nn);
    }
    Ok(wrap(out, dev, xl.shape().clone()))
}

/// (y, grad) -> grad where y > 0.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "nasflow-relu-grad"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, ys: &CudaStorage, yl: &Layout, gs: &CudaStorage, gl: &Layout) -> Result<(CudaStorage, Shape)> {
        if yl.shape() != gl.shape() {
            bail!("relu bwd: grad {:?} for output {:?}", gl.dims(), yl.dims());
        }
        let dev = &ys.device;
        let (y, gr) = (view(ys, yl)?, view(gs, gl)?);
        let n = yl.shape().elem_count();
        let out = alloc(dev, n)?;
        if n > 0 {
            let nn = n as i64;
            launch!(dev, "nf_relu_bwd", ew_cfg(n), &y, &gr, &out, &nn);
        }
        Ok(wrap(out, dev, yl.shape().clone()))
    }
}

/// Backward of `Relu` on CUDA.
pub(crate) fn relu_bwd(res: &Tensor, grad: &Tensor) -> Result<Tensor> {
    res.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)
}

// ------------------------------------------------------------------------------ batch norm

fn bn_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = l.shape().dims4()?;
    Ok((b, c, h * w))
}

/// x -> [2, C]: per-channel mean and biased variance.
struct BnStats;

impl CustomOp1 for BnStats {
    fn name(&self) -> &'static str {
        "nasflow-batch-norm-stats"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, c, hw) = bn_dims(xl)?;
        let dev = &xs.device;
        let x = view(xs, xl)?;
        let out = alloc(dev, 2 * c)?;
        if c > 0 {
            let (bi, ci, hwi) = (int(b)?, int(c)?, hw as i64);
            launch!(dev, "nf_bn_stats", red_cfg(c)?, &x, &out, &bi, &ci, &hwi);
        }
        Ok(wrap(out, dev, Shape::from((2, c))))
    }
}

/// Per-channel (mean, biased variance) of a CUDA NCHW tensor, copied to the host (the CPU op
/// keeps them as host vectors; this is one device sync per training-mode BN call).
pub(crate) fn bn_stats(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let s = x.contiguous()?.apply_op1_no_bwd(&BnStats)?.to_vec2::<f32>()?;
    let mut it = s.into_iter();
    match (it.next(), it.next()) {
        (Some(mean), Some(var)) => Ok((mean, var)),
        _ => bail!("bn stats: expected two rows"),
    }
}

/// `BnTrain` forward on CUDA: y = x * (w * invstd) + (b - mean * w * invstd) per channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_fwd(mean: &[f32], invstd: &[f32], xs: &CudaStorage, xl: &Layout, ws: &CudaStorage, wl: &Layout, bs: &CudaStorage, bl: &Layout) -> Result<(CudaStorage, Shape)> {
    let (_, c, hw) = bn_dims(xl)?;
    if mean.len() != c || invstd.len() != c || wl.shape().elem_count() != c || bl.shape().elem_count() != c {
        bail!("batch norm: per-channel vectors do not fit input {:?}", xl.dims());
    }
    let dev = &xs.device;
    let (x, w, b) = (view(xs, xl)?, view(ws, wl)?, view(bs, bl)?);
    let (m, inv) = (dev.clone_htod(mean)?, dev.clone_htod(invstd)?);
    let n = xl.shape().elem_count();
    let out = alloc(dev, n)?;
    if n > 0 {
        let (ci, hwi, nn) = (int(c)?, hw as i64, n as i64);
        launch!(dev, "nf_bn_fwd", ew_cfg(n), &x, &w, &b, &m, &inv, &out, &ci, &hwi, &nn);
    }
    Ok(wrap(out, dev, xl.shape().clone()))
}

/// (grad, x, w) -> [5, C]: rows a, k, c0 (grad x = a*g - k*x + c0), grad w, grad bias.
struct BnBwdReduce {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    batch_stats: bool,
}

impl CustomOp3 for BnBwdReduce {
    fn name(&self) -> &'static str {
        "nasflow-batch-norm-bwd-reduce"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, gs: &CudaStorage, gl: &Layout, xs: &CudaStorage, xl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, c, hw) = bn_dims(xl)?;
        if gl.shape() != xl.shape() || wl.shape().elem_count() != c || self.mean.len() != c || self.invstd.len() != c {
            bail!("batch norm bwd: grad {:?} / weight {:?} for input {:?}", gl.dims(), wl.dims(), xl.dims());
        }
        let dev = &xs.device;
        let (gr, x, w) = (view(gs, gl)?, view(xs, xl)?, view(ws, wl)?);
        let (m, inv) = (dev.clone_htod(&self.mean)?, dev.clone_htod(&self.invstd)?);
        let out = alloc(dev, 5 * c)?;
        if c > 0 {
            let (bi, ci, hwi, bsi) = (int(b)?, int(c)?, hw as i64, self.batch_stats as i32);
            launch!(dev, "nf_bn_bwd_reduce", red_cfg(c)?, &gr, &x, &w, &m, &inv, &out, &bi, &ci, &hwi, &bsi);
        }
        Ok(wrap(out, dev, Shape::from((5, c))))
    }
}

/// (grad, x, coef [5, C]) -> grad x.
struct BnDx;

impl CustomOp3 for BnDx {
    fn name(&self) -> &'static str {
        "nasflow-batch-norm-dx"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }
    fn cuda_fwd(&self, gs: &CudaStorage, gl: &Layout, xs: &CudaStorage, xl: &Layout, cs: &CudaStorage, cl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (_, c, hw) = bn_dims(xl)?;
        if gl.shape() != xl.shape() || cl.dims() != [5, c] {
            bail!("batch norm dx: grad {:?} / coefficients {:?} for input {:?}", gl.dims(), cl.dims(), xl.dims());
        }
        let dev = &xs.device;
        let (gr, x, coef) = (view(gs, gl)?, view(xs, xl)?, view(cs, cl)?);
        let n = xl.shape().elem_count();
        let out = alloc(dev, n)?;
        if n > 0 {
            let (ci, hwi, nn) = (int(c)?, hw as i64, n as i64);
            launch!(dev, "nf_bn_dx", ew_cfg(n), &gr, &x, &coef, &out, &ci, &hwi, &nn);
        }
        Ok(wrap(out, dev, xl.shape().clone()))
    }
}

/// `BnTrain` backward on CUDA: (grad x, grad w, grad bias), the last two only when `affine`.
pub(crate) fn bn_bwd(mean: &[f32], invstd: &[f32], affine: bool, batch_stats: bool, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
    let op = BnBwdReduce { mean: mean.to_vec(), invstd: invstd.to_vec(), batch_stats };
    let coef = grad.apply_op3_no_bwd(&x, &w, &op)?;
    let gx = grad.apply_op3_no_bwd(&x, &coef, &BnDx)?;
    if !affine {
        return Ok((gx, None, None));
    }
    Ok((gx, Some(coef.get(3)?), Some(coef.get(4)?)))
}
