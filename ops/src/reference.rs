//! Reference implementations built only from candle's stock tensor ops.
//!
//! They are slow but differentiable on any device. The public functions of this crate use them
//! where no custom kernel applies (other dtypes and devices; on CUDA, with the `cuda` feature, for
//! the 1x1 and dense convs only: see docs/cuda.md), and the tests use them as a second opinion
//! next to the PyTorch fixtures.

use candle_core::{Result, Tensor, D};

/// Output size of a window op: floor((n + 2p - d(k-1) - 1) / s) + 1.
pub fn out_size(n: usize, k: usize, stride: usize, padding: usize, dilation: usize) -> usize {
    let eff = dilation * (k - 1) + 1;
    assert!(n + 2 * padding >= eff, "window {eff} larger than padded input {n}+2*{padding}");
    (n + 2 * padding - eff) / stride + 1
}

/// Keeps every `stride`-th element along `dim`, starting at 0 (x[..., ::stride, ...]).
pub fn subsample_dim(x: &Tensor, dim: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let n = x.dim(dim)?;
    let idx: Vec<u32> = (0..n).step_by(stride).map(|i| i as u32).collect();
    let len = idx.len();
    let idx = Tensor::from_vec(idx, len, x.device())?;
    x.contiguous()?.index_select(&idx, dim)
}

/// x[:, :, ::stride, ::stride] for NCHW.
pub fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    subsample_dim(&subsample_dim(x, 2, stride)?, 3, stride)
}

/// Pads H and W of an NCHW tensor with a constant value (differentiable).
pub fn pad_const(x: &Tensor, p: usize, value: f32) -> Result<Tensor> {
    if p == 0 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let dev = x.device();
    let col = Tensor::full(value, (b, c, h, p), dev)?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&col, x, &col], 3)?;
    let row = Tensor::full(value, (b, c, p, w + 2 * p), dev)?.to_dtype(x.dtype())?;
    Tensor::cat(&[&row, &x, &row], 2)
}

/// Depthwise conv with candle's grouped conv2d (groups = C).
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize) -> Result<Tensor> {
    let c = x.dim(1)?;
    conv2d_candle_ext(x, w, stride, padding, dilation, c)
}

fn window_reduce(xp: &Tensor, kernel: usize, stride: usize, max: bool) -> Result<Tensor> {
    let (_, _, hp, wp) = xp.dims4()?;
    let ho1 = hp - kernel + 1;
    let wo1 = wp - kernel + 1;
    // separable: rows then columns
    let mut acc: Option<Tensor> = None;
    for d in 0..kernel {
        let v = xp.narrow(3, d, wo1)?;
        acc = Some(match acc {
            None => v,
            Some(a) => if max { a.maximum(&v)? } else { (a + v)? },
        });
    }
    let r = acc.unwrap();
    let mut acc: Option<Tensor> = None;
    for d in 0..kernel {
        let v = r.narrow(2, d, ho1)?;
        acc = Some(match acc {
            None => v,
            Some(a) => if max { a.maximum(&v)? } else { (a + v)? },
        });
    }
    subsample(&acc.unwrap(), stride)
}

/// Padded max pool (pad value -inf) from shifted views; ties split the gradient.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let xp = pad_const(x, padding, f32::NEG_INFINITY)?;
    window_reduce(&xp, kernel, stride, true)
}

/// Divisor per output position of a padded average pool (Ho*Wo, row-major).
pub fn avg_divisor(h: usize, w: usize, kernel: usize, stride: usize, padding: usize, count_include_pad: bool) -> Vec<f32> {
    let ho = out_size(h, kernel, stride, padding, 1);
    let wo = out_size(w, kernel, stride, padding, 1);
    let mut v = Vec::with_capacity(ho * wo);
    for i in 0..ho {
        for j in 0..wo {
            if count_include_pad {
                // PyTorch: window clipped to the padded input (H + 2p), pads counted.
                let h0 = (i * stride) as isize - padding as isize;
                let w0 = (j * stride) as isize - padding as isize;
                let h1 = (h0 + kernel as isize).min((h + padding) as isize);
                let w1 = (w0 + kernel as isize).min((w + padding) as isize);
                v.push(((h1 - h0) * (w1 - w0)) as f32);
            } else {
                let h0 = ((i * stride) as isize - padding as isize).max(0);
                let w0 = ((j * stride) as isize - padding as isize).max(0);
                let h1 = ((i * stride) as isize - padding as isize + kernel as isize).min(h as isize);
                let w1 = ((j * stride) as isize - padding as isize + kernel as isize).min(w as isize);
                v.push(((h1 - h0) * (w1 - w0)) as f32);
            }
        }
    }
    v
}

/// Padded average pool from shifted views.
pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize, count_include_pad: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let xp = pad_const(x, padding, 0.0)?;
    let s = window_reduce(&xp, kernel, stride, false)?;
    let (_, _, ho, wo) = s.dims4()?;
    let div = avg_divisor(h, w, kernel, stride, padding, count_include_pad);
    let inv: Vec<f32> = div.iter().map(|d| 1.0 / d).collect();
    let inv = Tensor::from_vec(inv, (1, 1, ho, wo), x.device())?.to_dtype(x.dtype())?;
    s.broadcast_mul(&inv)
}

/// Dense conv through candle's conv2d, working around its stride>1 backward bug for inputs whose
/// H and W leave different remainders (candle computes output_padding from H only): the dimension
/// with the smaller remainder gets extra zero rows/cols at its end, which changes no output.
pub fn conv2d_candle(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    conv2d_candle_ext(x, w, stride, padding, 1, 1)
}

/// [`conv2d_candle`] with dilation and groups.
pub fn conv2d_candle_ext(x: &Tensor, w: &Tensor, stride: usize, padding: usize, dilation: usize, groups: usize) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    if stride > 1 {
        let rh = (h + 2 * padding - dilation * (kh - 1) - 1) % stride;
        let rw = (wd + 2 * padding - dilation * (kw - 1) - 1) % stride;
        if rh != rw {
            let x = if rh < rw { x.pad_with_zeros(2, 0, rw - rh)? } else { x.pad_with_zeros(3, 0, rh - rw)? };
            return x.conv2d(w, padding, stride, dilation, groups);
        }
    }
    x.conv2d(w, padding, stride, dilation, groups)
}

/// 1x1 conv (no padding) as subsample + one batched matmul.
pub fn conv1x1(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let x = subsample(x, stride)?;
    let (b, cin, h, wd) = x.dims4()?;
    let cout = w.dim(0)?;
    let w2 = w.reshape((cout, cin))?;
    let y = w2.broadcast_matmul(&x.reshape((b, cin, h * wd))?)?;
    y.reshape((b, cout, h, wd))
}

/// Batch statistics per channel: (mean, biased var), each of shape `[C]`.
pub fn batch_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, c, h, w) = x.dims4()?;
    let n = (b * h * w) as f64;
    let xt = x.transpose(0, 1)?.reshape((c, b * h * w))?;
    let mean = (xt.sum(D::Minus1)? / n)?;
    let centered = xt.broadcast_sub(&mean.unsqueeze(1)?)?;
    let var = (centered.sqr()?.sum(D::Minus1)? / n)?;
    Ok((mean, var))
}

/// Normalises with the given per-channel statistics and applies the optional affine transform.
pub fn bn_apply(x: &Tensor, mean: &Tensor, var: &Tensor, wb: Option<(&Tensor, &Tensor)>, eps: f64) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mean = mean.reshape((1, c, 1, 1))?;
    let inv = (var.reshape((1, c, 1, 1))? + eps)?.sqrt()?.recip()?;
    let y = x.broadcast_sub(&mean)?.broadcast_mul(&inv)?;
    match wb {
        Some((w, b)) => y.broadcast_mul(&w.reshape((1, c, 1, 1))?)?.broadcast_add(&b.reshape((1, c, 1, 1))?),
        None => Ok(y),
    }
}

