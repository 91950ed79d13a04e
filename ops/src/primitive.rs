use candle_core::{Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use crate::blocks::{Conv7x1_1x7, DilConv, FactorizedReduce, SepConv};
use crate::kernels::{avg_pool2d, max_pool2d};

/// The DARTS `PRIMITIVES` in their exact order (index = alpha column), plus the extra ops of the
/// NASNet / AmoebaNet genotypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Primitive {
    None,
    MaxPool3x3,
    AvgPool3x3,
    SkipConnect,
    SepConv3x3,
    SepConv5x5,
    DilConv3x3,
    DilConv5x5,
    SepConv7x7,
    Conv7x1_1x7,
}

const ALL: [Primitive; 10] = [
    Primitive::None,
    Primitive::MaxPool3x3,
    Primitive::AvgPool3x3,
    Primitive::SkipConnect,
    Primitive::SepConv3x3,
    Primitive::SepConv5x5,
    Primitive::DilConv3x3,
    Primitive::DilConv5x5,
    Primitive::SepConv7x7,
    Primitive::Conv7x1_1x7,
];

impl Primitive {
    /// The 8 searched primitives, in alpha column order.
    pub const DARTS: [Primitive; 8] = [
        Primitive::None,
        Primitive::MaxPool3x3,
        Primitive::AvgPool3x3,
        Primitive::SkipConnect,
        Primitive::SepConv3x3,
        Primitive::SepConv5x5,
        Primitive::DilConv3x3,
        Primitive::DilConv5x5,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Primitive::None => "none",
            Primitive::MaxPool3x3 => "max_pool_3x3",
            Primitive::AvgPool3x3 => "avg_pool_3x3",
            Primitive::SkipConnect => "skip_connect",
            Primitive::SepConv3x3 => "sep_conv_3x3",
            Primitive::SepConv5x5 => "sep_conv_5x5",
            Primitive::DilConv3x3 => "dil_conv_3x3",
            Primitive::DilConv5x5 => "dil_conv_5x5",
            Primitive::SepConv7x7 => "sep_conv_7x7",
            Primitive::Conv7x1_1x7 => "conv_7x1_1x7",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL.iter().copied().find(|p| p.name() == name)
    }

    /// All primitives: the 8 DARTS ones in alpha order, then `sep_conv_7x7`, `conv_7x1_1x7`.
    pub fn all() -> &'static [Primitive] {
        &ALL
    }

    /// Column of this primitive in a DARTS alpha matrix (None for the extras).
    pub fn darts_index(self) -> Option<usize> {
        Self::DARTS.iter().position(|&p| p == self)
    }
}

impl std::fmt::Display for Primitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
enum OpKind {
    Zero { stride: usize },
    MaxPool { stride: usize },
    AvgPool { stride: usize },
    Identity,
    FactorizedReduce(FactorizedReduce),
    SepConv(SepConv),
    DilConv(DilConv),
    Conv7x1_1x7(Conv7x1_1x7),
}

/// One candidate op instance, as in the DARTS `OPS` dict, for C channels in and out.
///
/// * `none`: zeros (spatially subsampled at stride 2);
/// * pools: 3x3, pad 1, avg with count_include_pad=False (no BN here: the search-time BN after
///   pools is added by the caller);
/// * `skip_connect`: identity at stride 1, FactorizedReduce(C, C) at stride 2;
/// * sep/dil convs as in DARTS. Learnable vars are taken directly from `vb` (no extra prefix).
#[derive(Clone, Debug)]
pub struct Op {
    primitive: Primitive,
    kind: OpKind,
}

impl Op {
    pub fn new(p: Primitive, c: usize, stride: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        if stride != 1 && stride != 2 {
            candle_core::bail!("Op {p}: stride must be 1 or 2, got {stride}");
        }
        let kind = match p {
            Primitive::None => OpKind::Zero { stride },
            Primitive::MaxPool3x3 => OpKind::MaxPool { stride },
            Primitive::AvgPool3x3 => OpKind::AvgPool { stride },
            Primitive::SkipConnect => {
                if stride == 1 {
                    OpKind::Identity
                } else {
                    OpKind::FactorizedReduce(FactorizedReduce::new(c, c, affine, vb)?)
                }
            }
            Primitive::SepConv3x3 => OpKind::SepConv(SepConv::new(c, c, 3, stride, 1, affine, vb)?),
            Primitive::SepConv5x5 => OpKind::SepConv(SepConv::new(c, c, 5, stride, 2, affine, vb)?),
            Primitive::SepConv7x7 => OpKind::SepConv(SepConv::new(c, c, 7, stride, 3, affine, vb)?),
            Primitive::DilConv3x3 => OpKind::DilConv(DilConv::new(c, c, 3, stride, 2, 2, affine, vb)?),
            Primitive::DilConv5x5 => OpKind::DilConv(DilConv::new(c, c, 5, stride, 4, 2, affine, vb)?),
            Primitive::Conv7x1_1x7 => OpKind::Conv7x1_1x7(Conv7x1_1x7::new(c, stride, affine, vb)?),
        };
        Ok(Self { primitive: p, kind })
    }

    pub fn primitive(&self) -> Primitive {
        self.primitive
    }

    /// True for the stride-1 skip_connect (Identity), which drop path leaves alone.
    pub fn is_identity(&self) -> bool {
        matches!(self.kind, OpKind::Identity)
    }

    /// True if the op can run inside a fused node on the tape ([`crate::fused`]): every op but
    /// `conv_7x1_1x7`, whose non-square convs are candle's own.
    pub fn recordable(&self) -> bool {
        !matches!(self.kind, OpKind::Conv7x1_1x7(_))
    }

    /// True for `none` (its output is all zeros and carries no gradient).
    pub fn is_zero(&self) -> bool {
        matches!(self.kind, OpKind::Zero { .. })
    }
}

impl ModuleT for Op {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.kind {
            OpKind::Zero { stride } => {
                let (b, c, h, w) = x.dims4()?;
                let s = *stride;
                Tensor::zeros((b, c, h.div_ceil(s), w.div_ceil(s)), x.dtype(), x.device())
            }
            OpKind::MaxPool { stride } => max_pool2d(x, 3, *stride, 1),
            OpKind::AvgPool { stride } => avg_pool2d(x, 3, *stride, 1, false),
            OpKind::Identity => Ok(x.clone()),
            OpKind::FactorizedReduce(m) => m.forward_t(x, train),
            OpKind::SepConv(m) => m.forward_t(x, train),
            OpKind::DilConv(m) => m.forward_t(x, train),
            OpKind::Conv7x1_1x7(m) => m.forward_t(x, train),
        }
    }
}
