//! The DARTS building blocks (`operations.py`): ReLUConvBN, FactorizedReduce, SepConv, DilConv
//! and the NASNet/Amoeba-only Conv7x1_1x7. Every conv is bias-free.

use candle_core::{bail, Result, Tensor};
use candle_nn::{init::DEFAULT_KAIMING_NORMAL, ModuleT, VarBuilder};

use crate::bn::BatchNorm;
use crate::conv::{conv2d, relu_depthwise_conv2d};
use crate::kernels::pool::subsample_ext;
use crate::kernels::relu;

fn conv_weight(vb: &VarBuilder, name: &str, shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    vb.pp(name).get_with_hints(shape, "weight", DEFAULT_KAIMING_NORMAL)
}

/// ReLU -> Conv(k x k, stride, padding) -> BN. Vars: `conv.weight`, `bn.*`.
#[derive(Clone, Debug)]
pub struct ReLUConvBN {
    conv: Tensor,
    stride: usize,
    padding: usize,
    bn: BatchNorm,
}

impl ReLUConvBN {
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv_weight(&vb, "conv", (c_out, c_in, kernel, kernel))?,
            stride,
            padding,
            bn: BatchNorm::new(c_out, affine, vb.pp("bn"))?,
        })
    }
}

impl ModuleT for ReLUConvBN {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, _, kh, kw) = self.conv.dims4()?;
        // ReLU commutes with the subsampling of a strided 1x1 conv: subsample first, then ReLU;
        // at stride 1 the ReLU goes inside the 1x1 conv op (no separate node)
        let y = if kh == 1 && kw == 1 && self.padding == 0 && self.stride == 1 {
            crate::kernels::pointwise::relu_conv1x1(x, &self.conv)?
        } else if kh == 1 && kw == 1 && self.padding == 0 {
            conv2d(&subsample_ext(x, self.stride, self.stride, 0, 0, true)?, &self.conv, 1, 0)?
        } else {
            conv2d(&relu(x)?, &self.conv, self.stride, self.padding)?
        };
        self.bn.forward_t(&y, train)
    }
}

/// ReLU -> [conv1x1 s2 (x), conv1x1 s2 (x[:, :, 1:, 1:])] concatenated on channels -> BN.
/// Vars: `conv1.weight`, `conv2.weight` (each `[c_out/2, c_in, 1, 1]`), `bn.*`.
#[derive(Clone, Debug)]
pub struct FactorizedReduce {
    conv1: Tensor,
    conv2: Tensor,
    bn: BatchNorm,
}

impl FactorizedReduce {
    pub fn new(c_in: usize, c_out: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; rust-version is 1.85
        if c_out % 2 != 0 {
            bail!("FactorizedReduce needs an even c_out, got {c_out}");
        }
        Ok(Self {
            conv1: conv_weight(&vb, "conv1", (c_out / 2, c_in, 1, 1))?,
            conv2: conv_weight(&vb, "conv2", (c_out / 2, c_in, 1, 1))?,
            bn: BatchNorm::new(c_out, affine, vb.pp("bn"))?,
        })
    }
}

impl ModuleT for FactorizedReduce {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // relu(x)[::2, ::2] == relu(x[::2, ::2]): subsample first, with the ReLU fused (4x less
        // work); branch B reads x[:, :, 1:, 1:][::2, ::2] = x[:, :, 1::2, 1::2] directly.
        let a = conv2d(&subsample_ext(x, 2, 2, 0, 0, true)?, &self.conv1, 1, 0)?;
        let b = conv2d(&subsample_ext(x, 2, 2, 1, 1, true)?, &self.conv2, 1, 0)?;
        if a.dims() != b.dims() {
            bail!("FactorizedReduce: odd spatial size {:?} gives branches {:?} and {:?}", x.dims(), a.dims(), b.dims());
        }
        let y = crate::tape::cat_channels(&[&a, &b])?;
        self.bn.forward_t(&y, train)
    }
}

/// Two stacked (ReLU -> depthwise k x k -> pointwise 1x1 -> BN) units; the first has the stride
/// and keeps c_in channels, the second maps to c_out.
/// Vars: `dw1.weight`, `pw1.weight`, `bn1.*`, `dw2.weight`, `pw2.weight`, `bn2.*`.
#[derive(Clone, Debug)]
pub struct SepConv {
    dw1: Tensor,
    pw1: Tensor,
    bn1: BatchNorm,
    dw2: Tensor,
    pw2: Tensor,
    bn2: BatchNorm,
    stride: usize,
    padding: usize,
}

impl SepConv {
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dw1: conv_weight(&vb, "dw1", (c_in, 1, kernel, kernel))?,
            pw1: conv_weight(&vb, "pw1", (c_in, c_in, 1, 1))?,
            bn1: BatchNorm::new(c_in, affine, vb.pp("bn1"))?,
            dw2: conv_weight(&vb, "dw2", (c_in, 1, kernel, kernel))?,
            pw2: conv_weight(&vb, "pw2", (c_out, c_in, 1, 1))?,
            bn2: BatchNorm::new(c_out, affine, vb.pp("bn2"))?,
            stride,
            padding,
        })
    }
}

impl ModuleT for SepConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = relu_depthwise_conv2d(x, &self.dw1, self.stride, self.padding, 1)?;
        let y = self.bn1.forward_t(&conv2d(&y, &self.pw1, 1, 0)?, train)?;
        let y = relu_depthwise_conv2d(&y, &self.dw2, 1, self.padding, 1)?;
        self.bn2.forward_t(&conv2d(&y, &self.pw2, 1, 0)?, train)
    }
}

/// ReLU -> depthwise k x k (stride, padding, dilation) -> pointwise 1x1 -> BN.
/// Vars: `dw.weight`, `pw.weight`, `bn.*`.
#[derive(Clone, Debug)]
pub struct DilConv {
    dw: Tensor,
    pw: Tensor,
    bn: BatchNorm,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl DilConv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, dilation: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dw: conv_weight(&vb, "dw", (c_in, 1, kernel, kernel))?,
            pw: conv_weight(&vb, "pw", (c_out, c_in, 1, 1))?,
            bn: BatchNorm::new(c_out, affine, vb.pp("bn"))?,
            stride,
            padding,
            dilation,
        })
    }
}

impl ModuleT for DilConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = relu_depthwise_conv2d(x, &self.dw, self.stride, self.padding, self.dilation)?;
        self.bn.forward_t(&conv2d(&y, &self.pw, 1, 0)?, train)
    }
}

/// ReLU -> conv(1x7, stride (1,s), pad (0,3)) -> conv(7x1, stride (s,1), pad (3,0)) -> BN
/// (only used by the NASNet / AmoebaNet genotypes). Vars: `conv1x7.weight`, `conv7x1.weight`, `bn.*`.
#[derive(Clone, Debug)]
pub struct Conv7x1_1x7 {
    conv1x7: Tensor,
    conv7x1: Tensor,
    bn: BatchNorm,
    stride: usize,
}

impl Conv7x1_1x7 {
    pub fn new(c: usize, stride: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1x7: conv_weight(&vb, "conv1x7", (c, c, 1, 7))?,
            conv7x1: conv_weight(&vb, "conv7x1", (c, c, 7, 1))?,
            bn: BatchNorm::new(c, affine, vb.pp("bn"))?,
            stride,
        })
    }
}

impl ModuleT for Conv7x1_1x7 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = relu(x)?.pad_with_zeros(3, 3, 3)?;
        let y = crate::reference::conv2d_candle(&y, &self.conv1x7, 1, 0)?;
        let y = crate::kernels::subsample2(&y, 1, self.stride)?;
        let y = y.pad_with_zeros(2, 3, 3)?;
        let y = crate::reference::conv2d_candle(&y, &self.conv7x1, 1, 0)?;
        let y = crate::kernels::subsample2(&y, self.stride, 1)?;
        self.bn.forward_t(&y, train)
    }
}
