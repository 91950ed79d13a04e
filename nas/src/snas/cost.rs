//! Static per-op costs of the SNAS resource constraint (spec §3.6): size
//! (parameters), FLOPs and memory access (MAC) of every candidate op on every
//! edge of every cell, as [edges × ops] tables in DARTS edge and op order.

use anyhow::{bail, Result};
use nasflow_ops::Primitive;

use crate::darts::model_search::is_reduction;
use crate::space::{DartsSpace, SearchSpace};

/// The three static costs of one op on one edge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpCost {
    pub size: f64,
    pub flops: f64,
    pub mac: f64,
}

/// Costs of op `p` with `c` channels, stride `stride` and output side `y`
/// (the table of §3.6; `none` costs nothing).
pub fn op_cost(p: Primitive, c: usize, stride: usize, y: usize) -> Result<OpCost> {
    let (c, y2) = (c as f64, (y * y) as f64);
    let s2 = stride == 2;
    let sep = |k: f64| {
        let size = 2.0 * c * k * k + 2.0 * c * c;
        let mac = y2 * (if s2 { 10.0 * c } else { 7.0 * c } + c) + size;
        OpCost { size, flops: size * y2, mac }
    };
    let dil = |k: f64| {
        let size = c * k * k + c * c;
        let mac = y2 * (if s2 { 6.0 * c } else { 3.0 * c } + c) + size;
        OpCost { size, flops: size * y2, mac }
    };
    Ok(match p {
        Primitive::None => OpCost::default(),
        Primitive::SkipConnect if s2 => OpCost {
            // FactorizedReduce: two 1x1 convs to C/2 each.
            size: c * c,
            flops: c * c * y2,
            mac: 2.0 * y2 * (4.0 * c + c / 2.0) + c * c,
        },
        Primitive::SkipConnect => OpCost {
            size: 0.0,
            flops: 0.0,
            mac: 2.0 * c * y2,
        },
        Primitive::MaxPool3x3 | Primitive::AvgPool3x3 => OpCost {
            size: 0.0,
            flops: 9.0 * c * y2,
            mac: if s2 { 5.0 * c * y2 } else { 2.0 * c * y2 },
        },
        Primitive::SepConv3x3 => sep(3.0),
        Primitive::SepConv5x5 => sep(5.0),
        Primitive::DilConv3x3 => dil(3.0),
        Primitive::DilConv5x5 => dil(5.0),
        other => bail!(
            "the SNAS resource constraint has no cost table for op `{}` (only the DARTS ops)",
            other.name()
        ),
    })
}

/// One cell's tables, [edges][ops].
#[derive(Clone, Debug, PartialEq)]
pub struct CellCosts {
    pub reduction: bool,
    pub size: Vec<Vec<f64>>,
    pub flops: Vec<Vec<f64>>,
    pub mac: Vec<Vec<f64>>,
}

/// Output side of a stride-2 op with padding (3x3 pools, convs, factorized
/// reduce): ceil(h/2), which is the spec's h/2 for the even CIFAR sizes.
fn halved(h: usize) -> usize {
    h.div_ceil(2)
}

/// The tables of one cell with `c` channels per node, `steps` nodes, whose
/// inputs have side `h` (a reduction cell's edges out of its two inputs have
/// stride 2, and all its edges output side ceil(h/2)).
pub fn cell_costs(
    primitives: &[Primitive],
    steps: usize,
    c: usize,
    h: usize,
    reduction: bool,
) -> Result<CellCosts> {
    let y = if reduction { halved(h) } else { h };
    let mut out = CellCosts {
        reduction,
        size: Vec::new(),
        flops: Vec::new(),
        mac: Vec::new(),
    };
    let space = DartsSpace::new(steps, primitives.iter().map(|p| p.name()).collect());
    for spec in space.edges(reduction) {
        let stride = space.stride(reduction, spec.input);
        let costs: Vec<OpCost> = primitives
            .iter()
            .map(|&p| op_cost(p, c, stride, y))
            .collect::<Result<_>>()?;
        out.size.push(costs.iter().map(|k| k.size).collect());
        out.flops.push(costs.iter().map(|k| k.flops).collect());
        out.mac.push(costs.iter().map(|k| k.mac).collect());
    }
    Ok(out)
}

/// The tables of every cell of a supernet with `layers` cells, `init_channels`
/// channels in the first cell and `input_side`-pixel images, following the
/// DARTS macro-architecture (reductions at L/3 and 2L/3 double C and halve the side).
pub fn network_costs(
    primitives: &[Primitive],
    steps: usize,
    layers: usize,
    init_channels: usize,
    input_side: usize,
) -> Result<Vec<CellCosts>> {
    let (mut c, mut h) = (init_channels, input_side);
    let mut cells = Vec::with_capacity(layers);
    for i in 0..layers {
        let reduction = is_reduction(i, layers);
        if reduction {
            c *= 2;
        }
        cells.push(cell_costs(primitives, steps, c, h, reduction)?);
        if reduction {
            h = halved(h);
        }
    }
    Ok(cells)
}
