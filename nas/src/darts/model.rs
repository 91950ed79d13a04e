//! The evaluation (retrain) network, DARTS `model.py` NetworkCIFAR, with cells
//! built from a general genotype: a node sums all of its listed edges, so the
//! DARTS two-input form, SNAS's `edge_all` form (with `none` edges) and
//! BayesNAS's several-ops-per-edge form are all the same code.

use anyhow::{bail, Context};
use candle_core::{Result, Tensor, D};
use candle_nn::{Linear, Module, ModuleT, VarBuilder};
use nasflow_ops::{avg_pool2d, conv2d, drop_path, tape, BatchNorm, Op, Primitive};
use rand::Rng as _;

use super::model_search::{is_reduction, Classifier, Preprocess, Stem};
use crate::genotype::{Cell, Genotype};

/// Shape of the evaluation network. DARTS CIFAR-10 retrain: C=36, L=20, aux, 3.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub init_channels: usize,
    pub layers: usize,
    pub auxiliary: bool,
    pub stem_multiplier: usize,
}

/// Options of the evaluation network whose defaults are DARTS's retrain net.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalOptions {
    /// SNAS's retrain ops (spec §3.1): every max/avg pool is followed by an
    /// affine BN (2C parameters each). DARTS's retrain pools have none.
    pub pool_bn_affine: bool,
}

fn parse_op(name: &str) -> anyhow::Result<Primitive> {
    match Primitive::from_name(name) {
        Some(p) => Ok(p),
        None => {
            let known: Vec<&str> = Primitive::all().iter().map(|p| p.name()).collect();
            bail!("unknown op `{name}`; known ops: {}", known.join(", "))
        }
    }
}

/// One listed edge of a node; `op` is None for `none` edges (zero output).
struct EvalEdge {
    input: usize,
    op: Option<Op>,
    /// The affine BN after a pool (SNAS retrain ops only).
    pool_bn: Option<BatchNorm>,
}

/// A discrete cell (DARTS `model.Cell`), generalised to any edge list.
struct EvalCell {
    reduction: bool,
    pre0: Preprocess,
    pre1: Preprocess,
    nodes: Vec<Vec<EvalEdge>>,
    concat: Vec<usize>,
    c: usize,
    /// Training forward as one fused node (see `forward_t`).
    fused: bool,
}

impl EvalCell {
    #[allow(clippy::too_many_arguments)]
    fn new(
        genotype_cell: &Cell,
        c_pp: usize,
        c_p: usize,
        c: usize,
        reduction: bool,
        reduction_prev: bool,
        options: &EvalOptions,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        validate_cell(genotype_cell, reduction)?;
        let pre0 = Preprocess::new(c_pp, c, reduction_prev, true, vb.pp("preprocess0"))?;
        let pre1 = Preprocess::new(c_p, c, false, true, vb.pp("preprocess1"))?;
        let mut nodes = Vec::with_capacity(genotype_cell.nodes.len());
        for (n, node) in genotype_cell.nodes.iter().enumerate() {
            let mut edges = Vec::with_capacity(node.len());
            for (k, edge) in node.iter().enumerate() {
                let primitive =
                    parse_op(&edge.op).with_context(|| format!("node {n}, edge {k}"))?;
                let vb_edge = vb.pp(format!("nodes.{n}.edges.{k}"));
                let op = if primitive == Primitive::None {
                    None
                } else {
                    let stride = if reduction && edge.input < 2 { 2 } else { 1 };
                    Some(
                        Op::new(primitive, c, stride, true, vb_edge.clone()).with_context(
                            || format!("building op `{}` of node {n}, edge {k}", edge.op),
                        )?,
                    )
                };
                let is_pool = matches!(primitive, Primitive::MaxPool3x3 | Primitive::AvgPool3x3);
                let pool_bn = if options.pool_bn_affine && is_pool {
                    Some(BatchNorm::new(c, true, vb_edge.pp("bn"))?)
                } else {
                    None
                };
                edges.push(EvalEdge {
                    input: edge.input,
                    op,
                    pool_bn,
                });
            }
            nodes.push(edges);
        }
        let mut cell = Self {
            reduction,
            pre0,
            pre1,
            nodes,
            concat: genotype_cell.concat.clone(),
            c,
            fused: false,
        };
        cell.set_fused(true);
        Ok(cell)
    }

    fn out_channels(&self) -> usize {
        self.concat.len() * self.c
    }

    /// Training on the CPU runs the whole cell as one fused autograd node
    /// (`nasflow_ops::fused`: the cell's own backward on nasflow-ops' tape,
    /// without candle's per-node gradient buffers).
    fn forward_t(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        train: bool,
        drop_prob: f32,
        rng: &mut crate::rng::Rng,
    ) -> Result<Tensor> {
        if train && self.fused {
            nasflow_ops::fused(&[s0, s1], |v| self.body(&v[0], &v[1], train, drop_prob, rng))
        } else {
            self.body(s0, s1, train, drop_prob, rng)
        }
    }

    fn body(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        train: bool,
        drop_prob: f32,
        rng: &mut crate::rng::Rng,
    ) -> Result<Tensor> {
        let mut states = vec![
            self.pre0.forward_t(s0, train)?,
            self.pre1.forward_t(s1, train)?,
        ];
        for node in &self.nodes {
            let mut sum: Option<Tensor> = None;
            for edge in node {
                let Some(op) = &edge.op else { continue };
                let mut y = op.forward_t(&states[edge.input], train)?;
                if let Some(bn) = &edge.pool_bn {
                    y = bn.forward_t(&y, train)?;
                }
                if train && drop_prob > 0.0 && !op.is_identity() {
                    y = drop_path_with_rng(&y, drop_prob, rng)?;
                }
                sum = Some(match sum {
                    None => y,
                    Some(s) => tape::add(&s, &y)?,
                });
            }
            let value = match sum {
                Some(s) => s,
                // Only `none` edges (e.g. SNAS_aggressive's reduce cell): a zero node.
                None => self.zero_node(&states[0])?,
            };
            states.push(value);
        }
        let outputs: Vec<&Tensor> = self.concat.iter().map(|&i| &states[i]).collect();
        tape::cat_channels(&outputs)
    }

    /// Fused cells on (the default where every op can be recorded) or off:
    /// for tests and benchmarks that compare with candle's own graph.
    fn set_fused(&mut self, on: bool) {
        let recordable = self.nodes.iter().flatten().all(|e| e.op.as_ref().is_none_or(Op::recordable));
        self.fused = on && recordable;
    }

    /// Zeros shaped like this cell's nodes, from the preprocessed input h0:
    /// stride-2 ops with padding map H to ceil(H/2).
    fn zero_node(&self, h0: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = h0.dims4()?;
        let (h, w) = if self.reduction {
            (h.div_ceil(2), w.div_ceil(2))
        } else {
            (h, w)
        };
        Tensor::zeros((b, self.c, h, w), h0.dtype(), h0.device())
    }
}

/// Shape checks a cell needs before any op is built, with messages that say
/// which node/edge is wrong.
fn validate_cell(cell: &Cell, reduction: bool) -> anyhow::Result<()> {
    if cell.nodes.is_empty() {
        bail!("the cell has no intermediate nodes");
    }
    if cell.concat.is_empty() {
        bail!("the cell's concat list is empty");
    }
    for (n, node) in cell.nodes.iter().enumerate() {
        for (k, edge) in node.iter().enumerate() {
            // States 0, 1 are the cell inputs; node n is state n+2.
            if edge.input >= n + 2 {
                bail!(
                    "node {n}, edge {k}: input {} is not an earlier state \
                     (node {n} may read states 0..={}: the two cell inputs and nodes before it)",
                    edge.input,
                    n + 1
                );
            }
        }
    }
    let num_states = cell.nodes.len() + 2;
    for &i in &cell.concat {
        if i >= num_states {
            bail!("concat index {i} is out of range: the cell has {num_states} states");
        }
        if reduction && i < 2 {
            bail!(
                "concat index {i} names a cell input, which a reduction cell cannot \
                 concatenate (it has twice the resolution of the nodes)"
            );
        }
    }
    Ok(())
}

/// Drop path with a fresh per-sample Bernoulli(1 - drop_prob) mask from `rng`.
fn drop_path_with_rng(x: &Tensor, drop_prob: f32, rng: &mut crate::rng::Rng) -> Result<Tensor> {
    let keep = 1.0 - drop_prob;
    let batch = x.dim(0)?;
    let mask: Vec<f32> = (0..batch)
        .map(|_| if rng.random::<f32>() < keep { 1.0 } else { 0.0 })
        .collect();
    drop_path(x, &mask, keep)
}

/// DARTS AuxiliaryHeadCIFAR: ReLU, avgpool 5/3 (8x8 -> 2x2), 1x1 conv to 128,
/// BN, ReLU, 2x2 conv to 768, BN, ReLU, linear.
///
/// Generalised for other input sizes: a tapped map smaller than 8x8 (MNIST:
/// 28 -> 7) is instead average-pooled adaptively to 2x2, so the 2x2 conv has
/// its input; a map larger than 8x8 leaves more than 1x1 after the 2x2 conv,
/// which is averaged. For CIFAR (8x8) both rules are no-ops.
struct AuxiliaryHead {
    conv1: Tensor,
    bn1: BatchNorm,
    conv2: Tensor,
    bn2: BatchNorm,
    classifier: Linear,
}

impl AuxiliaryHead {
    fn new(c_in: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let kaiming = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let conv1 = vb
            .pp("conv1")
            .get_with_hints((128, c_in, 1, 1), "weight", kaiming)?;
        let bn1 = BatchNorm::new(128, true, vb.pp("bn1"))?;
        let conv2 = vb
            .pp("conv2")
            .get_with_hints((768, 128, 2, 2), "weight", kaiming)?;
        let bn2 = BatchNorm::new(768, true, vb.pp("bn2"))?;
        let classifier = candle_nn::linear(768, num_classes, vb.pp("classifier"))?;
        Ok(Self {
            conv1,
            bn1,
            conv2,
            bn2,
            classifier,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.relu()?;
        let (_, _, h, w) = x.dims4()?;
        let x = if h >= 8 && w >= 8 {
            avg_pool2d(&x, 5, 3, 0, false)?
        } else {
            adaptive_avg_pool_2x2(&x)?
        };
        let x = self
            .bn1
            .forward_t(&conv2d(&x, &self.conv1, 1, 0)?, train)?
            .relu()?;
        let x = self
            .bn2
            .forward_t(&conv2d(&x, &self.conv2, 1, 0)?, train)?
            .relu()?;
        let x = x.mean(D::Minus1)?.mean(D::Minus1)?;
        self.classifier.forward(&x)
    }
}

/// PyTorch AdaptiveAvgPool2d(2): output cell i averages rows
/// [floor(i*H/2), ceil((i+1)*H/2)), likewise for columns.
fn adaptive_avg_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let window = |i: usize, n: usize| (i * n / 2, ((i + 1) * n).div_ceil(2));
    let (_, _, h, w) = x.dims4()?;
    let mut rows = Vec::with_capacity(2);
    for i in 0..2 {
        let (r0, r1) = window(i, h);
        let band = x.narrow(2, r0, r1 - r0)?;
        let mut cols = Vec::with_capacity(2);
        for j in 0..2 {
            let (c0, c1) = window(j, w);
            cols.push(
                band.narrow(3, c0, c1 - c0)?
                    .mean_keepdim(2)?
                    .mean_keepdim(3)?,
            );
        }
        rows.push(Tensor::cat(&cols, 3)?);
    }
    Tensor::cat(&rows, 2)
}

/// NetworkCIFAR: stem, `layers` discrete cells (reductions at L/3 and 2L/3),
/// optional auxiliary head after cell 2L/3, global average pool, linear.
pub struct EvalNetwork {
    stem: Stem,
    cells: Vec<EvalCell>,
    auxiliary: Option<AuxiliaryHead>,
    /// The cell whose output feeds the auxiliary head.
    aux_cell: usize,
    classifier: Classifier,
}

impl EvalNetwork {
    /// Fused cells on (the default) or off, see `EvalCell::forward_t`.
    pub fn set_fused(&mut self, on: bool) {
        for cell in &mut self.cells {
            cell.set_fused(on);
        }
    }

    /// Var names: `stem.{conv,bn}`, `cells.{i}.preprocess{0,1}`,
    /// `cells.{i}.nodes.{n}.edges.{k}`, `auxiliary.*`, `classifier`.
    pub fn new(cfg: &EvalNetConfig, genotype: &Genotype, vb: VarBuilder) -> anyhow::Result<Self> {
        Self::new_with(cfg, genotype, &EvalOptions::default(), vb)
    }

    /// [`Self::new`] with non-DARTS options (SNAS's affine BN after pools:
    /// extra vars `cells.{i}.nodes.{n}.edges.{k}.bn`).
    pub fn new_with(
        cfg: &EvalNetConfig,
        genotype: &Genotype,
        options: &EvalOptions,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        for (name, value) in [
            ("in_channels", cfg.in_channels),
            ("num_classes", cfg.num_classes),
            ("init_channels", cfg.init_channels),
            ("layers", cfg.layers),
            ("stem_multiplier", cfg.stem_multiplier),
        ] {
            if value == 0 {
                bail!("eval network config: {name} must be at least 1");
            }
        }
        let c_stem = cfg.stem_multiplier * cfg.init_channels;
        let stem = Stem::new(cfg.in_channels, c_stem, vb.pp("stem"))?;
        let (mut c_pp, mut c_p, mut c) = (c_stem, c_stem, cfg.init_channels);
        let mut reduction_prev = false;
        let aux_cell = 2 * cfg.layers / 3;
        let mut c_aux = c_p;
        let mut cells = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let reduction = is_reduction(i, cfg.layers);
            if reduction {
                c *= 2;
            }
            let (which, genotype_cell) = if reduction {
                ("reduce", &genotype.reduce)
            } else {
                ("normal", &genotype.normal)
            };
            let cell = EvalCell::new(
                genotype_cell,
                c_pp,
                c_p,
                c,
                reduction,
                reduction_prev,
                options,
                vb.pp(format!("cells.{i}")),
            )
            .with_context(|| format!("genotype {which} cell (network cell {i})"))?;
            (c_pp, c_p) = (c_p, cell.out_channels());
            reduction_prev = reduction;
            if i == aux_cell {
                c_aux = c_p;
            }
            cells.push(cell);
        }
        let auxiliary = if cfg.auxiliary {
            Some(AuxiliaryHead::new(
                c_aux,
                cfg.num_classes,
                vb.pp("auxiliary"),
            )?)
        } else {
            None
        };
        let classifier = Classifier::new(c_p, cfg.num_classes, vb.pp("classifier"))?;
        Ok(Self {
            stem,
            cells,
            auxiliary,
            aux_cell,
            classifier,
        })
    }

    /// train: BN batch stats, drop path with prob drop_prob (masks from rng),
    /// auxiliary logits when cfg.auxiliary && train. Returns (logits, aux logits).
    pub fn forward_t(
        &self,
        x: &Tensor,
        train: bool,
        drop_prob: f32,
        rng: &mut crate::rng::Rng,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if !(0.0..1.0).contains(&drop_prob) {
            candle_core::bail!("EvalNetwork::forward_t: drop_prob {drop_prob} must be in [0, 1)");
        }
        let stem = self.stem.forward_t(x, train)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        let mut logits_aux = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let out = cell.forward_t(&s0, &s1, train, drop_prob, rng)?;
            (s0, s1) = (s1, out);
            if i == self.aux_cell && train {
                if let Some(head) = &self.auxiliary {
                    logits_aux = Some(head.forward_t(&s1, train)?);
                }
            }
        }
        Ok((self.classifier.forward(&s1)?, logits_aux))
    }
}
