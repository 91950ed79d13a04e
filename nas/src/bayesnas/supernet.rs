//! The BayesNAS one-shot network (spec §4.2): every edge of the fixed 8-edge
//! cell carries all 7 ops and 8 scalar switches,
//! `edge(x) = Σ_o s_o · op_o(s_all · x)` — a plain weighted sum, no softmax.
//!
//! Switches are one Var `[8 edges, 8 switches]` per cell (column 0 the edge
//! switch `switch_all`, then `switch_sep_3` .. `switch_ident`), kept apart
//! from the weight VarMap so the two optimisers never share a variable.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder};

use super::network::{BayesNetConfig, Head, Stem};
use super::ops::{BayesOp, BayesOpModule, CReduct};
use super::space::{BayesNasSpace, SWITCHES};
use crate::space::{run_cell, EdgeSpec, SearchSpace};

/// Edges per cell and switches per edge.
pub const EDGES: usize = 8;
pub const NUM_SWITCHES: usize = SWITCHES.len();

struct SwitchEdge {
    ops: Vec<BayesOpModule>,
}

impl SwitchEdge {
    /// `row`: this edge's 8 switches.
    fn forward_t(&self, x: &Tensor, row: &Tensor, train: bool) -> Result<Tensor> {
        let s_all = row.narrow(0, 0, 1)?.reshape((1, 1, 1, 1))?;
        let x = x.broadcast_mul(&s_all)?;
        let mut outs = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            outs.push(op.forward_t(&x, train)?);
        }
        let shape = outs[0].shape().clone();
        let k = outs.len();
        // one [1,K] x [K,N] matmul instead of K scaled adds (as the DARTS MixedOp)
        let s_ops = row.narrow(0, 1, k)?.reshape((1, k))?;
        s_ops.matmul(&Tensor::stack(&outs, 0)?.reshape((k, shape.elem_count()))?)?.reshape(shape)
    }
}

struct SwitchCell {
    reduction: bool,
    pre0: CReduct,
    pre1: CReduct,
    /// The space's edges of this cell type, and their modules in the same order.
    specs: Vec<EdgeSpec>,
    edges: Vec<SwitchEdge>,
}

impl SwitchCell {
    fn forward_t(&self, s0: &Tensor, s1: &Tensor, switches: &Tensor, train: bool) -> Result<Tensor> {
        let inputs = vec![self.pre0.forward_t(s0, train)?, self.pre1.forward_t(s1, train)?];
        let states = run_cell(&self.specs, BayesNasSpace.nodes(), inputs, |e, x| self.edges[e].forward_t(x, &switches.get(e)?, train))?;
        Tensor::cat(&states[2..], 1)
    }
}

/// The one-shot network with its switches.
pub struct Supernet {
    stem: Stem,
    cells: Vec<SwitchCell>,
    head: Head,
    switches: Vec<Var>,
}

impl Supernet {
    /// Weights go to `vb` (`stem`, `cells.{i}.{pre0,pre1}`,
    /// `cells.{i}.edges.{edge name}.{op name}`, `head`); switches start at 1.
    pub fn new(cfg: &BayesNetConfig, vb: VarBuilder) -> anyhow::Result<Self> {
        cfg.validate()?;
        let stem = Stem::new(cfg.in_channels, 3 * cfg.init_channels, vb.pp("stem"))?;
        let mut cells = Vec::new();
        let mut switches = Vec::new();
        for (i, (c_pp, c_p, c, reduction, reduction_prev)) in cfg.cell_shapes().into_iter().enumerate() {
            let vb_cell = vb.pp(format!("cells.{i}"));
            let specs = BayesNasSpace.edges(reduction);
            let mut edges = Vec::new();
            for spec in &specs {
                let stride = BayesNasSpace.stride(reduction, spec.input);
                let vb_edge = vb_cell.pp(format!("edges.{}", spec.name));
                let ops = BayesOp::ALL
                    .iter()
                    .map(|&o| BayesOpModule::new(o, c, stride, vb_edge.pp(o.name())))
                    .collect::<Result<Vec<_>>>()?;
                edges.push(SwitchEdge { ops });
            }
            cells.push(SwitchCell {
                reduction,
                pre0: CReduct::new(c_pp, c, reduction_prev, vb_cell.pp("pre0"))?,
                pre1: CReduct::new(c_p, c, false, vb_cell.pp("pre1"))?,
                specs,
                edges,
            });
            switches.push(Var::ones((EDGES, NUM_SWITCHES), DType::F32, vb.device())?);
        }
        let head = Head::new(cfg.final_channels(), cfg.num_classes, vb.pp("head"))?;
        Ok(Self { stem, cells, head, switches })
    }

    /// Logits `[B, classes]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let stem = self.stem.forward(x)?;
        let (mut s0, mut s1) = (stem.clone(), stem);
        for (cell, sw) in self.cells.iter().zip(&self.switches) {
            let out = cell.forward_t(&s0, &s1, sw.as_tensor(), train)?;
            (s0, s1) = (s1, out);
        }
        self.head.forward_t(&s1, train)
    }

    /// One `[8, 8]` switch Var per cell, in cell order.
    pub fn switches(&self) -> &[Var] {
        &self.switches
    }

    /// Whether each cell is a reduction cell.
    pub fn reductions(&self) -> Vec<bool> {
        self.cells.iter().map(|c| c.reduction).collect()
    }

    /// Indices of the normal (`false`) or reduction (`true`) cells.
    pub fn cells_of(&self, reduction: bool) -> Vec<usize> {
        (0..self.cells.len()).filter(|&i| self.cells[i].reduction == reduction).collect()
    }

    /// All switch values flattened, cell by cell (row-major `[cells, 8, 8]`).
    pub fn switch_values(&self) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for s in &self.switches {
            out.extend(s.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Sets every switch from a flat vector (the layout of [`Self::switch_values`]).
    pub fn set_switch_values(&self, values: &[f32]) -> Result<()> {
        let n = EDGES * NUM_SWITCHES;
        if values.len() != n * self.switches.len() {
            candle_core::bail!("{} switch values for {} cells", values.len(), self.switches.len());
        }
        for (i, s) in self.switches.iter().enumerate() {
            s.set(&Tensor::from_slice(&values[i * n..(i + 1) * n], (EDGES, NUM_SWITCHES), s.device())?)?;
        }
        Ok(())
    }

    /// The switch gradient from a backward pass, flattened like [`Self::switch_values`].
    pub fn switch_grads(&self, grads: &candle_core::backprop::GradStore) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for s in &self.switches {
            match grads.get(s.as_tensor()) {
                Some(g) => out.extend(g.flatten_all()?.to_vec1::<f32>()?),
                None => out.extend(std::iter::repeat_n(0.0, EDGES * NUM_SWITCHES)),
            }
        }
        Ok(out)
    }
}
