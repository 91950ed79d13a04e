//! The BayesNAS op family (spec §4.1), built on the `nasflow_ops` kernels.
//!
//! These are *not* the DARTS ops: every conv unit is pre-activation
//! (BN → ReLU → conv) with no trailing BN, every BN is affine (search and
//! retrain alike), the dilated convs are full (not depthwise) convolutions
//! followed by a 1×1, and the pools pad with zeros (max) or count the padded
//! zeros (avg, divisor always 9). There is no `none` op: BayesNAS turns an
//! edge off with its edge switch instead.
//!
//! Choices where the spec offers two:
//! * the spatial halving inside [`CReduct`] is the single 1×1 stride-2 conv
//!   (the search one-shot net and the 0.007 / 0.01 released models), not the
//!   two-branch factorized pair of the 0.005 model; both have C_in² weights,
//!   so parameter counts are identical;
//! * dilated convs run as a dense conv with the kernel spread out by zero
//!   taps ([`dilate_kernel`]): the same function and gradients as a dilated
//!   conv, on the fast dense `nasflow_ops::conv2d` kernel (which exposes no
//!   dilation argument).

use candle_core::{bail, Result, Tensor};
use candle_nn::{init::DEFAULT_KAIMING_NORMAL, ModuleT, VarBuilder};
use nasflow_ops::{avg_pool2d, conv2d, max_pool2d, relu, relu_depthwise_conv2d, BatchNorm};
use rand::Rng as _;

use crate::genotype::BAYESNAS_OPS;
use crate::rng::Rng;

/// The seven candidate ops, in the order of `BAYESNAS_OPS` and of the op
/// switches (`switch_sep_3` .. `switch_ident`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BayesOp {
    Sep3,
    Sep5,
    Dil3,
    Dil5,
    MaxPool,
    AvgPool,
    Ident,
}

impl BayesOp {
    pub const ALL: [BayesOp; 7] = [
        BayesOp::Sep3,
        BayesOp::Sep5,
        BayesOp::Dil3,
        BayesOp::Dil5,
        BayesOp::MaxPool,
        BayesOp::AvgPool,
        BayesOp::Ident,
    ];

    /// The genotype name (`sep_3`, ..., `ident`).
    pub fn name(self) -> &'static str {
        BAYESNAS_OPS[self.index()]
    }

    /// Position in [`BayesOp::ALL`] (op switch k+1 of an edge).
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        BAYESNAS_OPS.iter().position(|&n| n == name).map(|i| Self::ALL[i])
    }
}

fn conv_weight(vb: &VarBuilder, name: &str, shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    vb.pp(name).get_with_hints(shape, "weight", DEFAULT_KAIMING_NORMAL)
}

/// A k×k kernel spread to (d(k-1)+1)² with zero taps between its entries:
/// a dense conv with it equals the dilated conv with the original kernel.
/// Built from differentiable ops, so gradients reach only the real taps.
pub fn dilate_kernel(w: &Tensor, dilation: usize) -> Result<Tensor> {
    if dilation == 1 {
        return Ok(w.clone());
    }
    let (o, i, k, k2) = w.dims4()?;
    if k != k2 {
        bail!("dilate_kernel: square kernels only, got {:?}", w.dims());
    }
    let eff = dilation * (k - 1) + 1;
    // width: [o,i,k,k] -> [o,i,k,k,1] ++ zeros [o,i,k,k,d-1] -> [o,i,k,k*d] -> first eff
    let z = Tensor::zeros((o, i, k, k, dilation - 1), w.dtype(), w.device())?;
    let w = Tensor::cat(&[&w.unsqueeze(4)?, &z], 4)?.reshape((o, i, k, k * dilation))?.narrow(3, 0, eff)?;
    // height: [o,i,k,eff] -> [o,i,k,1,eff] ++ zeros -> [o,i,k*d,eff] -> first eff
    let z = Tensor::zeros((o, i, k, dilation - 1, eff), w.dtype(), w.device())?;
    Tensor::cat(&[&w.unsqueeze(3)?, &z], 3)?.reshape((o, i, k * dilation, eff))?.narrow(2, 0, eff)
}

/// BN → ReLU → dw k×k (stride) → pw 1×1 → BN → ReLU → dw k×k → pw 1×1.
#[derive(Clone, Debug)]
struct SepConv {
    bn1: BatchNorm,
    dw1: Tensor,
    pw1: Tensor,
    bn2: BatchNorm,
    dw2: Tensor,
    pw2: Tensor,
    stride: usize,
    pad: usize,
}

impl SepConv {
    fn new(c: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            bn1: BatchNorm::new(c, true, vb.pp("bn1"))?,
            dw1: conv_weight(&vb, "dw1", (c, 1, k, k))?,
            pw1: conv_weight(&vb, "pw1", (c, c, 1, 1))?,
            bn2: BatchNorm::new(c, true, vb.pp("bn2"))?,
            dw2: conv_weight(&vb, "dw2", (c, 1, k, k))?,
            pw2: conv_weight(&vb, "pw2", (c, c, 1, 1))?,
            stride,
            pad: k / 2,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // the ReLU after each BN is fused into the depthwise kernel's input read
        let y = relu_depthwise_conv2d(&self.bn1.forward_t(x, train)?, &self.dw1, self.stride, self.pad, 1)?;
        let y = conv2d(&y, &self.pw1, 1, 0)?;
        let y = relu_depthwise_conv2d(&self.bn2.forward_t(&y, train)?, &self.dw2, 1, self.pad, 1)?;
        conv2d(&y, &self.pw2, 1, 0)
    }
}

/// BN → ReLU → full k×k conv, dilation 2 (stride) → pw 1×1.
#[derive(Clone, Debug)]
struct DilConv {
    bn: BatchNorm,
    conv: Tensor,
    pw: Tensor,
    stride: usize,
    pad: usize,
}

impl DilConv {
    fn new(c: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            bn: BatchNorm::new(c, true, vb.pp("bn"))?,
            conv: conv_weight(&vb, "conv", (c, c, k, k))?,
            pw: conv_weight(&vb, "pw", (c, c, 1, 1))?,
            stride,
            pad: k - 1, // dilation 2: (d(k-1)+1)/2 keeps the size
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = relu(&self.bn.forward_t(x, train)?)?;
        let y = conv2d(&y, &dilate_kernel(&self.conv, 2)?, self.stride, self.pad)?;
        conv2d(&y, &self.pw, 1, 0)
    }
}

/// Stride 2 `ident`: BN → 1×1 conv stride 2, no ReLU.
#[derive(Clone, Debug)]
struct ReduceIdent {
    bn: BatchNorm,
    conv: Tensor,
}

#[derive(Clone, Debug)]
enum Kind {
    Sep(SepConv),
    Dil(DilConv),
    MaxPool { stride: usize },
    AvgPool { stride: usize },
    Identity,
    ReduceIdent(ReduceIdent),
}

/// One BayesNAS op instance for C channels in and out.
#[derive(Clone, Debug)]
pub struct BayesOpModule {
    op: BayesOp,
    kind: Kind,
}

impl BayesOpModule {
    /// Learnable vars are taken from `vb` directly (no extra prefix).
    pub fn new(op: BayesOp, c: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        if stride != 1 && stride != 2 {
            bail!("BayesNAS op {}: stride must be 1 or 2, got {stride}", op.name());
        }
        let kind = match op {
            BayesOp::Sep3 => Kind::Sep(SepConv::new(c, 3, stride, vb)?),
            BayesOp::Sep5 => Kind::Sep(SepConv::new(c, 5, stride, vb)?),
            BayesOp::Dil3 => Kind::Dil(DilConv::new(c, 3, stride, vb)?),
            BayesOp::Dil5 => Kind::Dil(DilConv::new(c, 5, stride, vb)?),
            BayesOp::MaxPool => Kind::MaxPool { stride },
            BayesOp::AvgPool => Kind::AvgPool { stride },
            BayesOp::Ident if stride == 1 => Kind::Identity,
            BayesOp::Ident => Kind::ReduceIdent(ReduceIdent {
                bn: BatchNorm::new(c, true, vb.pp("bn"))?,
                conv: conv_weight(&vb, "conv", (c, c, 1, 1))?,
            }),
        };
        Ok(Self { op, kind })
    }

    pub fn op(&self) -> BayesOp {
        self.op
    }
}

impl ModuleT for BayesOpModule {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.kind {
            Kind::Sep(m) => m.forward_t(x, train),
            Kind::Dil(m) => m.forward_t(x, train),
            // zero padding, not -inf: a window over the border sees 0
            Kind::MaxPool { stride } => max_pool2d(&x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?, 3, *stride, 0),
            // count_include_pad: the divisor is always 9
            Kind::AvgPool { stride } => avg_pool2d(x, 3, *stride, 1, true),
            Kind::Identity => Ok(x.clone()),
            Kind::ReduceIdent(m) => conv2d(&m.bn.forward_t(x, train)?, &m.conv, 2, 0),
        }
    }
}

/// Cell preprocessing `CReduct(C_in, C_out, size_reduct)`: [1×1 stride-2
/// conv C_in→C_in when the input is at twice the cell's resolution] → BN →
/// ReLU → 1×1 conv C_in→C_out.
#[derive(Clone, Debug)]
pub struct CReduct {
    halve: Option<Tensor>,
    bn: BatchNorm,
    conv: Tensor,
}

impl CReduct {
    pub fn new(c_in: usize, c_out: usize, size_reduct: bool, vb: VarBuilder) -> Result<Self> {
        let halve = if size_reduct { Some(conv_weight(&vb, "halve", (c_in, c_in, 1, 1))?) } else { None };
        Ok(Self {
            halve,
            bn: BatchNorm::new(c_in, true, vb.pp("bn"))?,
            conv: conv_weight(&vb, "conv", (c_out, c_in, 1, 1))?,
        })
    }
}

impl ModuleT for CReduct {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = match &self.halve {
            Some(w) => conv2d(x, w, 2, 0)?,
            None => x.clone(),
        };
        conv2d(&relu(&self.bn.forward_t(&x, train)?)?, &self.conv, 1, 0)
    }
}

/// Channel dropout (`dropout2d`): each (sample, channel) plane is zeroed
/// with probability `p`, the rest scaled by 1/(1-p). The mask comes from the
/// seeded `rng` (candle's CPU RNG is never used).
pub fn channel_dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        bail!("channel dropout probability {p} must be below 1");
    }
    let (b, c, _, _) = x.dims4()?;
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..b * c).map(|_| if rng.random::<f32>() < keep { 1.0 / keep } else { 0.0 }).collect();
    // one op with a constant mask: no gradient is computed for the mask (see `drop_path`)
    nasflow_ops::scale_leading(x, &mask, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn count(op: BayesOp, c: usize, stride: usize) -> usize {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        BayesOpModule::new(op, c, stride, vb).unwrap();
        crate::params::count_params(&vm, None)
    }

    #[test]
    fn param_counts_match_spec_table() {
        let c = 6;
        assert_eq!(count(BayesOp::Sep3, c, 1), 2 * c * c + 22 * c);
        assert_eq!(count(BayesOp::Sep5, c, 2), 2 * c * c + 54 * c);
        assert_eq!(count(BayesOp::Dil3, c, 1), 10 * c * c + 2 * c);
        assert_eq!(count(BayesOp::Dil5, c, 2), 26 * c * c + 2 * c);
        assert_eq!(count(BayesOp::MaxPool, c, 2), 0);
        assert_eq!(count(BayesOp::Ident, c, 1), 0);
        assert_eq!(count(BayesOp::Ident, c, 2), c * c + 2 * c);
    }

    #[test]
    fn dilated_kernel_matches_candle_dilated_conv() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 9), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap();
        for stride in [1, 2] {
            let want = x.conv2d(&w, 2, stride, 2, 1).unwrap();
            let got = conv2d(&x, &dilate_kernel(&w, 2).unwrap(), stride, 2).unwrap();
            let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "stride {stride}: {diff}");
        }
    }

    #[test]
    fn pools_count_padded_zeros() {
        let dev = Device::Cpu;
        // all -1: the zero padding wins the max at the border, and the avg divides by 9
        let x = Tensor::full(-1f32, (1, 1, 4, 4), &dev).unwrap();
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let mp = BayesOpModule::new(BayesOp::MaxPool, 1, 1, vb.clone()).unwrap();
        let ap = BayesOpModule::new(BayesOp::AvgPool, 1, 1, vb).unwrap();
        let m = mp.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(m[0], 0.0); // corner window touches padding
        assert_eq!(m[5], -1.0); // interior window
        let a = ap.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((a[0] + 4.0 / 9.0).abs() < 1e-6, "{}", a[0]);
        assert!((a[5] + 1.0).abs() < 1e-6);
    }
}
