// NaN-aware comparisons (`!(v > 0.0)`) are deliberate; the plane kernels take many slices.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::too_many_arguments)]

pub mod bn;
pub mod common;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dense;
pub mod depthwise;
pub mod pointwise;
pub mod pool;
pub mod simd;
pub mod window;

use candle_core::{Result, Tensor};

pub use pointwise::relu;

/// x[:, :, ::stride, ::stride] for NCHW (differentiable); output size ceil(H/stride).
pub fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    pool::subsample_ext(x, stride, stride, 0, 0, false)
}

/// x[:, :, ::sh, ::sw] for NCHW (differentiable).
pub fn subsample2(x: &Tensor, sh: usize, sw: usize) -> Result<Tensor> {
    pool::subsample_ext(x, sh, sw, 0, 0, false)
}

/// 2D max pooling, NCHW, padding value -inf; the gradient goes to the first maximum of each
/// window in row-major order, like PyTorch.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    pool::max_pool2d(x, kernel, stride, padding)
}

/// 2D average pooling, NCHW, zero padding; with `count_include_pad == false` the divisor is the
/// number of non-pad cells in the window.
pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize, count_include_pad: bool) -> Result<Tensor> {
    pool::avg_pool2d(x, kernel, stride, padding, count_include_pad)
}
