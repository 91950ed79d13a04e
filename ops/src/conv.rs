use candle_core::{bail, Result, Tensor};

use crate::reference;

/// Depthwise conv2d (groups = C), NCHW f32. `w` is `[C, 1, k, k]`.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (cw, one, kh, kw) = w.dims4()?;
    if cw != c || one != 1 || kh != kw {
        bail!("depthwise_conv2d: weight {:?} does not fit input {:?}", w.dims(), x.dims());
    }
    crate::kernels::depthwise::depthwise_conv2d(x, w, stride, padding, dilation, false)
}

/// `depthwise_conv2d(relu(x), ...)` with the ReLU fused into the kernel (no intermediate tensor,
/// no separate autograd node). Every DARTS depthwise conv is preceded by a ReLU.
pub fn relu_depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (cw, one, kh, kw) = w.dims4()?;
    if cw != c || one != 1 || kh != kw {
        bail!("relu_depthwise_conv2d: weight {:?} does not fit input {:?}", w.dims(), x.dims());
    }
    crate::kernels::depthwise::depthwise_conv2d(x, w, stride, padding, dilation, true)
}

/// Dense conv2d without bias, NCHW f32, `w` is `[C_out, C_in, kh, kw]`.
///
/// 1x1 convs without padding run as a subsample (for stride > 1) followed by one GEMM per
/// sample; other square kernels as im2col + GEMM per sample (both custom ops on CPU/f32).
/// Non-square kernels, and other devices, go to candle's conv2d with its stride-2 backward bug
/// avoided (see [`reference::conv2d_candle`]).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, cin, _, _) = x.dims4()?;
    let (_, wcin, kh, kw) = w.dims4()?;
    if wcin != cin {
        bail!("conv2d: weight {:?} does not fit input {:?}", w.dims(), x.dims());
    }
    if kh == 1 && kw == 1 && padding == 0 {
        let xs = crate::kernels::subsample(x, stride)?;
        crate::kernels::pointwise::conv1x1(&xs, w)
    } else if kh == kw {
        crate::kernels::dense::conv2d(x, w, stride, padding, 1)
    } else {
        reference::conv2d_candle(x, w, stride, padding)
    }
}
