//! The BayesNAS retrain network (spec §4.8): stem conv (no BN), L cells with
//! reductions at L/3 and 2L/3 (L=20: 6 N, R, 6 N, R, 6 N), CReduct
//! preprocessing, cells built from a general genotype (several ops per edge,
//! any in-degree), channel dropout on every op output, and a BN → ReLU →
//! global pool → linear head. No auxiliary head.
//!
//! The head keeps the ReLU before the pool in both the search and the
//! retrain network: the reference retrain models drop it (spec §9, item 10),
//! which leaves a pre-activation network's last BN unactivated; we treat that
//! as a defect. It has no parameters, so counts are unaffected.

use anyhow::{bail, Context};
use candle_core::{Result, Tensor, D};
use candle_nn::{init::DEFAULT_KAIMING_NORMAL, Linear, Module, ModuleT, VarBuilder};
use nasflow_ops::{conv2d, relu, BatchNorm};

use super::ops::{channel_dropout, BayesOp, BayesOpModule, CReduct};
use super::space::{BayesNasSpace, SearchSpace};
use crate::darts::model_search::is_reduction;
use crate::genotype::{Cell, Genotype, BAYESNAS_OPS};
use crate::rng::Rng;

/// Shape of a BayesNAS network (search or retrain). Stem: 3·C channels.
#[derive(Clone, Debug, PartialEq)]
pub struct BayesNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub init_channels: usize,
    pub layers: usize,
}

impl BayesNetConfig {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (n, v) in [
            ("in_channels", self.in_channels),
            ("num_classes", self.num_classes),
            ("init_channels", self.init_channels),
            ("layers", self.layers),
        ] {
            if v == 0 {
                bail!("BayesNAS network: {n} must be at least 1");
            }
        }
        Ok(())
    }

    /// (c_pp, c_p, c, reduction, reduction_prev) of every cell.
    pub(crate) fn cell_shapes(&self) -> Vec<(usize, usize, usize, bool, bool)> {
        let c_stem = 3 * self.init_channels;
        let (mut c_pp, mut c_p, mut c) = (c_stem, c_stem, self.init_channels);
        let mut reduction_prev = false;
        let mut out = Vec::with_capacity(self.layers);
        for i in 0..self.layers {
            let reduction = is_reduction(i, self.layers);
            if reduction {
                c *= 2;
            }
            out.push((c_pp, c_p, c, reduction, reduction_prev));
            (c_pp, c_p) = (c_p, 4 * c);
            reduction_prev = reduction;
        }
        out
    }

    pub(crate) fn final_channels(&self) -> usize {
        self.cell_shapes().last().map_or(3 * self.init_channels, |s| 4 * s.2)
    }
}

/// conv 3×3 (in → 3C, pad 1), no BN: every cell input starts with a BN.
pub(crate) struct Stem(Tensor);

impl Stem {
    pub(crate) fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(vb.pp("conv").get_with_hints((c_out, c_in, 3, 3), "weight", DEFAULT_KAIMING_NORMAL)?))
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.0, 1, 1)
    }
}

/// BN → ReLU → global average pool → linear.
pub(crate) struct Head {
    bn: BatchNorm,
    linear: Linear,
}

impl Head {
    pub(crate) fn new(c: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { bn: BatchNorm::new(c, true, vb.pp("bn"))?, linear: candle_nn::linear(c, classes, vb.pp("linear"))? })
    }
    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = relu(&self.bn.forward_t(x, train)?)?;
        self.linear.forward(&y.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

struct EvalEdge {
    input: usize,
    op: BayesOpModule,
}

struct EvalCell {
    reduction: bool,
    /// CReduct of c_{k-2} (state 0) and of c_{k-1} (state 1).
    pre0: CReduct,
    pre1: CReduct,
    nodes: Vec<Vec<EvalEdge>>,
    concat: Vec<usize>,
    c: usize,
}

impl EvalCell {
    fn new(cell: &Cell, shape: (usize, usize, usize, bool, bool), vb: VarBuilder) -> anyhow::Result<Self> {
        let (c_pp, c_p, c, reduction, reduction_prev) = shape;
        let pre0 = CReduct::new(c_pp, c, reduction_prev, vb.pp("pre0"))?;
        let pre1 = CReduct::new(c_p, c, false, vb.pp("pre1"))?;
        let mut nodes = Vec::with_capacity(cell.nodes.len());
        for (n, node) in cell.nodes.iter().enumerate() {
            let mut edges = Vec::new();
            for (k, e) in node.iter().enumerate() {
                if e.op == crate::genotype::NONE_OP {
                    continue;
                }
                let Some(op) = BayesOp::from_name(&e.op) else {
                    bail!(
                        "node {n}, edge {k}: `{}` is not a BayesNAS op (known: {})",
                        e.op,
                        BAYESNAS_OPS.join(", ")
                    );
                };
                if e.input >= n + 2 {
                    bail!("node {n}, edge {k}: input {} is not an earlier state", e.input);
                }
                let stride = BayesNasSpace.stride(reduction, e.input);
                let op = BayesOpModule::new(op, c, stride, vb.pp(format!("nodes.{n}.edges.{k}")))?;
                edges.push(EvalEdge { input: e.input, op });
            }
            nodes.push(edges);
        }
        if cell.concat.iter().any(|&i| i >= cell.nodes.len() + 2 || (reduction && i < 2)) {
            bail!("concat {:?} names a state the cell does not have at its output resolution", cell.concat);
        }
        Ok(Self { reduction, pre0, pre1, nodes, concat: cell.concat.clone(), c })
    }

    fn forward_t(&self, s0: &Tensor, s1: &Tensor, train: bool, p: f32, rng: &mut Rng) -> Result<Tensor> {
        let mut states = vec![self.pre0.forward_t(s0, train)?, self.pre1.forward_t(s1, train)?];
        for node in &self.nodes {
            let mut sum: Option<Tensor> = None;
            for e in node {
                let mut y = e.op.forward_t(&states[e.input], train)?;
                if train && p > 0.0 {
                    y = channel_dropout(&y, p, rng)?;
                }
                sum = Some(match sum {
                    None => y,
                    Some(s) => (s + y)?,
                });
            }
            let v = match sum {
                Some(s) => s,
                None => {
                    // every edge into this node was pruned: a zero node
                    let (b, _, h, w) = states[1].dims4()?;
                    let (h, w) = if self.reduction { (h.div_ceil(2), w.div_ceil(2)) } else { (h, w) };
                    Tensor::zeros((b, self.c, h, w), states[1].dtype(), states[1].device())?
                }
            };
            states.push(v);
        }
        let out: Vec<&Tensor> = self.concat.iter().map(|&i| &states[i]).collect();
        Tensor::cat(&out, 1)
    }
}

/// The discrete BayesNAS network of a genotype.
pub struct BayesNasNetwork {
    stem: Stem,
    cells: Vec<EvalCell>,
    head: Head,
}

impl BayesNasNetwork {
    /// Var names: `stem.conv.weight`, `cells.{i}.pre{0,1}.*`,
    /// `cells.{i}.nodes.{n}.edges.{k}.*`, `head.{bn,linear}`.
    pub fn new(cfg: &BayesNetConfig, genotype: &Genotype, vb: VarBuilder) -> anyhow::Result<Self> {
        cfg.validate()?;
        for (which, cell) in [("normal", &genotype.normal), ("reduce", &genotype.reduce)] {
            if cell.concat.len() != 4 {
                bail!(
                    "{which} cell: the BayesNAS network concatenates 4 nodes (channels 4C), \
                     the genotype's concat lists {}",
                    cell.concat.len()
                );
            }
        }
        let stem = Stem::new(cfg.in_channels, 3 * cfg.init_channels, vb.pp("stem"))?;
        let mut cells = Vec::new();
        for (i, shape) in cfg.cell_shapes().into_iter().enumerate() {
            let cell = if shape.3 { &genotype.reduce } else { &genotype.normal };
            let which = if shape.3 { "reduce" } else { "normal" };
            cells.push(
                EvalCell::new(cell, shape, vb.pp(format!("cells.{i}")))
                    .with_context(|| format!("building cell {i} ({which} cell of the genotype)"))?,
            );
        }
        let head = Head::new(cfg.final_channels(), cfg.num_classes, vb.pp("head"))?;
        Ok(Self { stem, cells, head })
    }

    /// Logits `[B, classes]`; `dropout` is the channel-dropout probability
    /// (used only when `train`).
    pub fn forward_t(&self, x: &Tensor, train: bool, dropout: f32, rng: &mut Rng) -> Result<Tensor> {
        let stem = self.stem.forward(x)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        for cell in &self.cells {
            let out = cell.forward_t(&s0, &s1, train, dropout, rng)?;
            (s0, s1) = (s1, out);
        }
        self.head.forward_t(&s1, train)
    }
}

/// True when every op of the genotype is a BayesNAS op (and at least one
/// op is): such genotypes build a [`BayesNasNetwork`].
pub fn is_bayesnas_genotype(g: &Genotype) -> bool {
    let ops: Vec<&str> = [&g.normal, &g.reduce]
        .iter()
        .flat_map(|c| c.nodes.iter().flatten())
        .map(|e| e.op.as_str())
        .filter(|&o| o != crate::genotype::NONE_OP)
        .collect();
    !ops.is_empty() && ops.iter().all(|o| BAYESNAS_OPS.contains(o))
}
