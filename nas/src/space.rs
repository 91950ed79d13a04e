//! Search spaces as data: which edges a cell has (input state → node), which
//! candidate ops sit on each, and the stride rule. DARTS's 14-edge DAG
//! ([`DartsSpace`], also SNAS's) and BayesNAS's fixed 8-edge cells
//! ([`crate::bayesnas::BayesNasSpace`], spec §6.1) are two values of one
//! trait: both supernets build their edges from it and run their cells with
//! [`run_cell`], and derivation and cost tables read the topology from here
//! rather than hard-coding it. A new space is one more `impl SearchSpace`.
//!
//! States are numbered as in genotypes: 0 = c_{k-2}, 1 = c_{k-1}, 2 + i =
//! intermediate node i.

use candle_core::{bail, Result, Tensor};

use crate::genotype::DARTS_PRIMITIVES;

/// One edge of a cell: `op(state[input])` flows into node `node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeSpec {
    /// The name artifacts use (BayesNAS: `in0_0`, ..., `sel_0_3`; DARTS: `e{k}`).
    pub name: String,
    pub input: usize,
    pub node: usize,
}

pub trait SearchSpace {
    fn name(&self) -> &'static str;
    /// Candidate ops of every edge, in column order.
    fn ops(&self) -> &[&'static str];
    /// Intermediate nodes per cell (all concatenated into the output).
    fn nodes(&self) -> usize;
    /// The edges of a normal (`reduction == false`) or reduction cell.
    fn edges(&self, reduction: bool) -> Vec<EdgeSpec>;
    /// Ops reading a cell input of a reduction cell halve the resolution.
    fn stride(&self, reduction: bool, input: usize) -> usize {
        if reduction && input < 2 {
            2
        } else {
            1
        }
    }
}

/// DARTS (and SNAS): node i reads every earlier state (the two cell inputs
/// and nodes 0..i), so `steps` nodes have `steps * (steps + 3) / 2` edges
/// (14 for 4), in DARTS order: node 0's edges, then node 1's, ...
#[derive(Clone, Debug, PartialEq)]
pub struct DartsSpace {
    pub steps: usize,
    pub ops: Vec<&'static str>,
}

impl DartsSpace {
    /// `steps` nodes, each edge carrying `ops` (in mixing-weight column order).
    pub fn new(steps: usize, ops: Vec<&'static str>) -> Self {
        Self { steps, ops }
    }
}

impl Default for DartsSpace {
    /// The paper's space: 4 nodes, the 8 DARTS primitives.
    fn default() -> Self {
        Self::new(4, DARTS_PRIMITIVES.to_vec())
    }
}

impl SearchSpace for DartsSpace {
    fn name(&self) -> &'static str {
        "darts"
    }
    fn ops(&self) -> &[&'static str] {
        &self.ops
    }
    fn nodes(&self) -> usize {
        self.steps
    }
    fn edges(&self, _reduction: bool) -> Vec<EdgeSpec> {
        let mut out = Vec::new();
        for node in 0..self.steps {
            for input in 0..node + 2 {
                out.push(EdgeSpec { name: format!("e{}", out.len()), input, node });
            }
        }
        out
    }
}

/// Runs one cell's DAG: `states` starts as the two preprocessed inputs; node
/// i is the sum, in edge order, of `edge(e, states[edges[e].input])` over its
/// edges. Returns all states (inputs first), for the caller's concat.
pub fn run_cell(edges: &[EdgeSpec], nodes: usize, mut states: Vec<Tensor>, mut edge: impl FnMut(usize, &Tensor) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    for node in 0..nodes {
        let mut sum: Option<Tensor> = None;
        for (e, spec) in edges.iter().enumerate().filter(|(_, s)| s.node == node) {
            let Some(x) = states.get(spec.input) else {
                bail!("cell edge {} reads state {} before it exists", spec.name, spec.input);
            };
            let y = edge(e, x)?;
            sum = Some(match sum {
                None => y,
                // recordable: inside a fused cell the sum is on nasflow-ops' tape
                Some(s) => nasflow_ops::tape::add(&s, &y)?,
            });
        }
        match sum {
            Some(s) => states.push(s),
            None => bail!("cell node {node} has no incoming edge"),
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_match_spec() {
        let darts = DartsSpace::default().edges(false);
        assert_eq!(darts.len(), 14);
        assert_eq!(darts.iter().filter(|e| e.node == 3).map(|e| e.input).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(DartsSpace::default().stride(true, 1), 2);
        assert_eq!(DartsSpace::default().stride(true, 2), 1);
    }

    #[test]
    fn run_cell_sums_each_nodes_edges_over_earlier_states() {
        let dev = candle_core::Device::Cpu;
        let space = DartsSpace::new(2, Vec::new());
        let edges = space.edges(false);
        let inputs = vec![Tensor::new(&[1f32], &dev).unwrap(), Tensor::new(&[10f32], &dev).unwrap()];
        // edge e scales its input by e + 1
        let states = run_cell(&edges, space.nodes(), inputs, |e, x| x.affine(e as f64 + 1.0, 0.0)).unwrap();
        let v: Vec<f32> = states.iter().map(|t| t.to_vec1::<f32>().unwrap()[0]).collect();
        // n0 = 1*1 + 2*10 = 21; n1 = 3*1 + 4*10 + 5*21 = 148
        assert_eq!(v, vec![1.0, 10.0, 21.0, 148.0]);
        // an edge that reads a later state is an error, not a panic
        let bad = vec![EdgeSpec { name: "x".into(), input: 5, node: 0 }];
        assert!(run_cell(&bad, 1, vec![], |_, x| Ok(x.clone())).is_err());
    }
}
