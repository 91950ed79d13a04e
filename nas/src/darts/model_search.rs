//! The DARTS search supernet (DARTS `model_search.py`): the cell topology and
//! stride rule come from [`DartsSpace`] (the same [`SearchSpace`] abstraction
//! the BayesNAS one-shot net is built from), every edge of a cell is
//! a MixedOp, the weighted sum of all candidate ops, and the mixing weights
//! come from outside (softmax(alpha) for DARTS, Gumbel samples for SNAS), so
//! one network serves every gradient-based search method.
//!
//! Also home of the pieces the evaluation network (`model.rs`) shares with
//! the supernet: stem, cell preprocessing, global-pool classifier.

use candle_core::{bail, Result, Tensor, D};
use candle_nn::{Linear, Module, ModuleT, VarBuilder};
use nasflow_ops::tape::weighted_sum;
use nasflow_ops::{conv2d, drop_path, BatchNorm, FactorizedReduce, Op, Primitive, ReLUConvBN};
use rand::Rng as _;

use crate::rng::Rng;
use crate::space::{run_cell, DartsSpace, EdgeSpec, SearchSpace};

/// Drop path on every edge's mixed-op output during training (SNAS search,
/// spec §3.5: constant probability, nothing exempt). DARTS search has none.
pub struct EdgeDropPath<'a> {
    pub prob: f32,
    /// One Bernoulli(1 - prob) draw per sample and edge call, from this stream.
    pub rng: &'a mut Rng,
}

impl EdgeDropPath<'_> {
    fn apply(&mut self, y: &Tensor) -> Result<Tensor> {
        let keep = 1.0 - self.prob;
        let mask: Vec<f32> = (0..y.dim(0)?)
            .map(|_| if self.rng.random::<f32>() < keep { 1.0 } else { 0.0 })
            .collect();
        drop_path(y, &mask, keep)
    }
}

/// Shape of the supernet. DARTS search on CIFAR-10: C=16, L=8, 4/4/3.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub init_channels: usize,
    pub layers: usize,
    /// Intermediate nodes per cell (4 in DARTS).
    pub steps: usize,
    /// How many of the last nodes are concatenated into the cell output (4).
    pub multiplier: usize,
    /// Stem output channels = stem_multiplier * init_channels (3).
    pub stem_multiplier: usize,
}

/// Cells at depth L/3 and 2L/3 halve the resolution and double the channels.
pub fn is_reduction(layer: usize, layers: usize) -> bool {
    layer == layers / 3 || layer == 2 * layers / 3
}

// ---------------------------------------------------------------- shared parts

/// conv3x3(in -> out, pad 1, no bias) + BN(affine): the first layer of both nets.
pub(crate) struct Stem {
    weight: Tensor,
    bn: BatchNorm,
}

impl Stem {
    pub(crate) fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.pp("conv").get_with_hints(
            (c_out, c_in, 3, 3),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bn = BatchNorm::new(c_out, true, vb.pp("bn"))?;
        Ok(Self { weight, bn })
    }

    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&conv2d(x, &self.weight, 1, 1)?, train)
    }
}

/// How a cell brings its older input c_{k-2} to its own channel count: after
/// a reduction cell c_{k-2} has twice the resolution of c_{k-1}, so it is
/// factorized-reduced; otherwise a 1x1 ReLUConvBN suffices.
pub(crate) enum Preprocess {
    Reduce(FactorizedReduce),
    Conv(ReLUConvBN),
}

impl Preprocess {
    pub(crate) fn new(
        c_in: usize,
        c_out: usize,
        reduction_prev: bool,
        affine: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(if reduction_prev {
            Self::Reduce(FactorizedReduce::new(c_in, c_out, affine, vb)?)
        } else {
            Self::Conv(ReLUConvBN::new(c_in, c_out, 1, 1, 0, affine, vb)?)
        })
    }

    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Reduce(m) => m.forward_t(x, train),
            Self::Conv(m) => m.forward_t(x, train),
        }
    }
}

/// Global average pool over H and W, then a linear layer: [B,C,H,W] -> [B,K].
pub(crate) struct Classifier {
    linear: Linear,
}

impl Classifier {
    pub(crate) fn new(c_in: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear: candle_nn::linear(c_in, num_classes, vb)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        self.linear.forward(&pooled)
    }
}

// ---------------------------------------------------------------- supernet

/// One candidate op of a MixedOp, with the BN(affine=false) DARTS puts after
/// pools at search time (pool outputs are not normalised otherwise, and would
/// dominate the weighted sum).
struct Candidate {
    op: Op,
    pool_bn: Option<BatchNorm>,
}

/// sum_k w_k * op_k(x) over the candidate ops of one edge. The `none` op is
/// not built: its output is zero, so leaving it out changes neither the value
/// nor any gradient (its weight still gets its zero gradient via the softmax).
/// Public so that benchmarks can time one edge through the real code path.
pub struct MixedOp {
    candidates: Vec<Candidate>,
    /// Column of each candidate in the mixing-weight matrix (u32, for index_select).
    columns: Tensor,
    /// Training forward as one autograd node with its own backward
    /// (`nasflow_ops::fused`); on unless an op cannot be recorded.
    fused: bool,
}

impl MixedOp {
    pub fn new(primitives: &[Primitive], c: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let mut candidates = Vec::new();
        let mut columns = Vec::new();
        for (column, &p) in primitives.iter().enumerate() {
            if p == Primitive::None {
                continue;
            }
            // Var names use the op name, so they do not depend on column order.
            let vb_op = vb.pp(p.name());
            let op = Op::new(p, c, stride, false, vb_op.clone())?;
            let pool_bn = match p {
                Primitive::MaxPool3x3 | Primitive::AvgPool3x3 => {
                    Some(BatchNorm::new(c, false, vb_op.pp("bn"))?)
                }
                _ => None,
            };
            candidates.push(Candidate { op, pool_bn });
            columns.push(column as u32);
        }
        let columns = Tensor::new(columns.as_slice(), vb.device())?;
        let fused = candidates.iter().all(|c| c.op.recordable());
        Ok(Self {
            candidates,
            columns,
            fused,
        })
    }

    /// Turns the fused training forward off (or back on where possible):
    /// for tests and benchmarks that compare it with candle's own graph.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on && self.candidates.iter().all(|c| c.op.recordable());
    }

    fn candidate_outputs(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::with_capacity(self.candidates.len());
        for cand in &self.candidates {
            let mut y = cand.op.forward_t(x, train)?;
            if let Some(bn) = &cand.pool_bn {
                y = bn.forward_t(&y, train)?;
            }
            outputs.push(y);
        }
        if outputs.is_empty() {
            // Unreachable: SearchNetwork::new rejects primitive lists without a real op.
            bail!("MixedOp has no candidate op besides `none`");
        }
        Ok(outputs)
    }

    /// `w` is this edge's row of mixing weights, shape [num_primitives].
    ///
    /// Training (CPU): one fused node whose backward runs the candidates'
    /// kernels on nasflow-ops' tape, so candle's gradient store neither
    /// zero-fills nor sums a buffer per intermediate, and x's seven gradient
    /// contributions are summed in place. (Inside a search cell the whole
    /// cell is the fused node, see `SearchCell::forward_t`.)
    pub fn forward_t(&self, x: &Tensor, w: &Tensor, train: bool) -> Result<Tensor> {
        let w = self.select(w)?;
        let run = |v: &[Tensor]| self.forward_selected(&v[0], &v[1], train);
        if train && self.fused {
            nasflow_ops::fused(&[x, &w], run)
        } else {
            run(&[x.clone(), w])
        }
    }

    /// The weights of the built candidates (`none` left out) from a full row.
    fn select(&self, w: &Tensor) -> Result<Tensor> {
        w.index_select(&self.columns, 0)
    }

    /// The weighted sum, given the selected weights (recordable on the tape).
    fn forward_selected(&self, x: &Tensor, w: &Tensor, train: bool) -> Result<Tensor> {
        weighted_sum(&self.candidate_outputs(x, train)?, w)
    }
}

/// A search cell: two preprocessed inputs, then the nodes of the search
/// space's DAG (for DARTS, node i sums a MixedOp over every earlier state);
/// output = concat of the last `multiplier` nodes.
struct SearchCell {
    reduction: bool,
    pre0: Preprocess,
    pre1: Preprocess,
    /// The space's edges, and one MixedOp per edge in the same order.
    specs: Vec<EdgeSpec>,
    edges: Vec<MixedOp>,
    nodes: usize,
    multiplier: usize,
}

impl SearchCell {
    #[allow(clippy::too_many_arguments)]
    fn new(
        space: &DartsSpace,
        primitives: &[Primitive],
        multiplier: usize,
        c_pp: usize,
        c_p: usize,
        c: usize,
        reduction: bool,
        reduction_prev: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let pre0 = Preprocess::new(c_pp, c, reduction_prev, false, vb.pp("preprocess0"))?;
        let pre1 = Preprocess::new(c_p, c, false, false, vb.pp("preprocess1"))?;
        let specs = space.edges(reduction);
        let mut edges = Vec::with_capacity(specs.len());
        for (e, spec) in specs.iter().enumerate() {
            let stride = space.stride(reduction, spec.input);
            edges.push(MixedOp::new(primitives, c, stride, vb.pp(format!("edges.{e}")))?);
        }
        Ok(Self {
            reduction,
            pre0,
            pre1,
            specs,
            edges,
            nodes: space.nodes(),
            multiplier,
        })
    }

    /// Training on the CPU runs the whole cell (preprocessing, every mixed
    /// edge, node sums, concat) as one fused autograd node whose backward
    /// runs on nasflow-ops' tape; the mixing weights enter as one selected
    /// row per edge, so they get their gradients too.
    fn forward_t(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        weights: &Tensor,
        train: bool,
        drop: Option<&mut EdgeDropPath>,
    ) -> Result<Tensor> {
        let rows: Vec<Tensor> = (0..self.edges.len())
            .map(|e| self.edges[e].select(&weights.get(e)?))
            .collect::<Result<_>>()?;
        let fused = train && self.edges.iter().all(|e| e.fused);
        if !fused {
            return self.body(s0, s1, &rows, train, drop);
        }
        let mut inputs = vec![s0, s1];
        inputs.extend(rows.iter());
        nasflow_ops::fused(&inputs, |v| self.body(&v[0], &v[1], &v[2..], train, drop))
    }

    /// The cell from its inputs and each edge's selected mixing weights.
    fn body(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        rows: &[Tensor],
        train: bool,
        mut drop: Option<&mut EdgeDropPath>,
    ) -> Result<Tensor> {
        let inputs = vec![self.pre0.forward_t(s0, train)?, self.pre1.forward_t(s1, train)?];
        let states = run_cell(&self.specs, self.nodes, inputs, |e, x| {
            let y = self.edges[e].forward_selected(x, &rows[e], train)?;
            match drop.as_deref_mut() {
                Some(d) if train && d.prob > 0.0 => d.apply(&y),
                _ => Ok(y),
            }
        })?;
        let outputs: Vec<&Tensor> = states[states.len() - self.multiplier..].iter().collect();
        nasflow_ops::tape::cat_channels(&outputs)
    }
}

/// The DARTS supernet: stem, `layers` search cells (reductions at L/3 and
/// 2L/3), global average pool and linear classifier. Normal cells share one
/// mixing-weight matrix and reduction cells the other; conv weights are not
/// shared.
pub struct SearchNetwork {
    stem: Stem,
    cells: Vec<SearchCell>,
    classifier: Classifier,
    num_edges: usize,
    num_primitives: usize,
}

impl SearchNetwork {
    /// Fused mixed edges on (the default) or off, see [`MixedOp::set_fused`].
    pub fn set_fused(&mut self, on: bool) {
        for edge in self.cells.iter_mut().flat_map(|c| c.edges.iter_mut()) {
            edge.set_fused(on);
        }
    }

    /// Var names: `stem.{conv,bn}`, `cells.{i}.preprocess{0,1}`,
    /// `cells.{i}.edges.{e}.{op name}[.bn]`, `classifier`.
    pub fn new(cfg: &SearchNetConfig, primitives: &[Primitive], vb: VarBuilder) -> Result<Self> {
        validate(cfg, primitives)?;
        let c_stem = cfg.stem_multiplier * cfg.init_channels;
        let stem = Stem::new(cfg.in_channels, c_stem, vb.pp("stem"))?;
        let (mut c_pp, mut c_p, mut c) = (c_stem, c_stem, cfg.init_channels);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(cfg.layers);
        let space = DartsSpace::new(cfg.steps, primitives.iter().map(|p| p.name()).collect());
        for i in 0..cfg.layers {
            let reduction = is_reduction(i, cfg.layers);
            if reduction {
                c *= 2;
            }
            cells.push(SearchCell::new(
                &space,
                primitives,
                cfg.multiplier,
                c_pp,
                c_p,
                c,
                reduction,
                reduction_prev,
                vb.pp(format!("cells.{i}")),
            )?);
            (c_pp, c_p) = (c_p, cfg.multiplier * c);
            reduction_prev = reduction;
        }
        let classifier = Classifier::new(c_p, cfg.num_classes, vb.pp("classifier"))?;
        Ok(Self {
            stem,
            cells,
            classifier,
            num_edges: space.edges(false).len(),
            num_primitives: primitives.len(),
        })
    }

    /// Edges per cell = rows of each mixing-weight matrix (14 for 4 steps).
    pub fn num_edges(&self) -> usize {
        self.num_edges
    }

    /// weights_*: mixing weights [num_edges, primitives.len()] — softmax(alpha)
    /// for DARTS, Gumbel samples for SNAS. Returns logits [B, num_classes].
    pub fn forward_t(
        &self,
        x: &Tensor,
        weights_normal: &Tensor,
        weights_reduce: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_drop_path(x, weights_normal, weights_reduce, train, None)
    }

    /// [`Self::forward_t`] with drop path on every edge when `drop` is given
    /// and `train` is set (SNAS search).
    pub fn forward_drop_path(
        &self,
        x: &Tensor,
        weights_normal: &Tensor,
        weights_reduce: &Tensor,
        train: bool,
        mut drop: Option<&mut EdgeDropPath>,
    ) -> Result<Tensor> {
        if let Some(d) = drop.as_deref() {
            if !(0.0..1.0).contains(&d.prob) {
                bail!("SearchNetwork: drop path probability {} must be in [0, 1)", d.prob);
            }
        }
        let expected = (self.num_edges, self.num_primitives);
        for (which, w) in [
            ("weights_normal", weights_normal),
            ("weights_reduce", weights_reduce),
        ] {
            if w.dims() != [expected.0, expected.1] {
                bail!(
                    "SearchNetwork::forward_t: {which} has shape {:?}, expected [{}, {}] \
                     (edges per cell x candidate ops)",
                    w.dims(),
                    expected.0,
                    expected.1
                );
            }
        }
        let stem = self.stem.forward_t(x, train)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        for cell in &self.cells {
            let w = if cell.reduction {
                weights_reduce
            } else {
                weights_normal
            };
            let out = cell.forward_t(&s0, &s1, w, train, drop.as_deref_mut())?;
            (s0, s1) = (s1, out);
        }
        self.classifier.forward(&s1)
    }
}

fn validate(cfg: &SearchNetConfig, primitives: &[Primitive]) -> Result<()> {
    let fields = [
        ("in_channels", cfg.in_channels),
        ("num_classes", cfg.num_classes),
        ("init_channels", cfg.init_channels),
        ("layers", cfg.layers),
        ("steps", cfg.steps),
        ("multiplier", cfg.multiplier),
        ("stem_multiplier", cfg.stem_multiplier),
    ];
    for (name, value) in fields {
        if value == 0 {
            bail!("search network config: {name} must be at least 1");
        }
    }
    if cfg.multiplier > cfg.steps {
        bail!(
            "search network config: multiplier ({}) cannot exceed steps ({}): \
             the cell output concatenates the last `multiplier` nodes",
            cfg.multiplier,
            cfg.steps
        );
    }
    if !primitives.iter().any(|&p| p != Primitive::None) {
        bail!("search network: the candidate op list needs at least one op other than `none`");
    }
    for (i, p) in primitives.iter().enumerate() {
        if primitives[..i].contains(p) {
            bail!(
                "search network: candidate op `{}` is listed twice",
                p.name()
            );
        }
    }
    Ok(())
}
