//! Cells from gammas (spec §4.7): the step the reference code leaves manual.
//!
//! γ is a switch's prior variance (ARD): γ → 0 marks a switch the data does
//! not need. An op (edge e, op t) is kept when its edge switch survives,
//! γ[e][switch_all] ≥ τ, and its own γ[e][t] ≥ τ; all surviving ops of an
//! edge are kept (multi-op edges, as in the released cells), and an edge
//! whose edge switch is pruned loses all of its ops.
//!
//! Default τ = [`DEFAULT_THRESHOLD`] = 1e-3, the value the spec proposes:
//! switches start at 1 and the first round starts from γ = 1, so a kept
//! switch has γ of order 1 (γ ≈ ‖s‖/ω with ω ≈ √cells when the data term is
//! curved); 1e-3 is three orders of magnitude below that, i.e. only the
//! switches the group lasso drove to (near) zero are pruned. It is a param:
//! log and tune it on validation accuracy, as the spec advises.

use anyhow::{bail, Result};

use super::space::{BayesNasSpace, SearchSpace, SWITCHES};
use super::supernet::{EDGES, NUM_SWITCHES};
use crate::genotype::{default_concat, Cell, Edge, Genotype, BAYESNAS_OPS};

pub const DEFAULT_THRESHOLD: f64 = 1e-3;

/// What was kept and pruned, for the derivation record.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Derivation {
    pub threshold: f64,
    pub kept_ops: usize,
    pub pruned_ops: usize,
    /// Edges whose edge switch fell below the threshold, as "normal.in1_3".
    pub pruned_edges: Vec<String>,
}

/// One cell from the shared γ `[8 edges][8 switches]` of its type.
pub fn derive_cell(gamma: &[Vec<f32>], reduction: bool, threshold: f64, record: &mut Derivation) -> Result<Cell> {
    if gamma.len() != EDGES || gamma.iter().any(|r| r.len() != NUM_SWITCHES) {
        bail!("gammas must be {EDGES} edges x {NUM_SWITCHES} switches ({}), got {} rows", SWITCHES.join(", "), gamma.len());
    }
    if let Some(v) = gamma.iter().flatten().find(|v| !v.is_finite() || **v < 0.0) {
        bail!("gammas must be finite and non-negative, found {v}");
    }
    let space = BayesNasSpace;
    let mut nodes: Vec<Vec<Edge>> = vec![Vec::new(); space.nodes()];
    for (e, spec) in space.edges(reduction).iter().enumerate() {
        if (gamma[e][0] as f64) < threshold {
            record.pruned_edges.push(format!("{}.{}", if reduction { "reduce" } else { "normal" }, spec.name));
            record.pruned_ops += NUM_SWITCHES - 1;
            continue;
        }
        for (k, op) in BAYESNAS_OPS.iter().enumerate() {
            if (gamma[e][k + 1] as f64) >= threshold {
                nodes[spec.node].push(Edge::new(op, spec.input));
                record.kept_ops += 1;
            } else {
                record.pruned_ops += 1;
            }
        }
    }
    Ok(Cell { nodes, concat: default_concat(space.nodes()) })
}

/// The genotype from the γ of normal and reduction cells.
pub fn derive(gamma_normal: &[Vec<f32>], gamma_reduce: &[Vec<f32>], threshold: f64) -> Result<(Genotype, Derivation)> {
    if !(threshold.is_finite() && threshold >= 0.0) {
        bail!("bayesnas.derive: threshold must be a non-negative number, got {threshold}");
    }
    let mut record = Derivation { threshold, ..Default::default() };
    let normal = derive_cell(gamma_normal, false, threshold, &mut record)?;
    let reduce = derive_cell(gamma_reduce, true, threshold, &mut record)?;
    Ok((Genotype { normal, reduce }, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruned_edge_switch_removes_all_its_ops() {
        let mut g = vec![vec![1.0f32; 8]; 8];
        g[6][0] = 1e-5; // in1_3 edge switch
        g[0][3] = 1e-5; // in0_0: dil_3 off
        let r = vec![vec![1.0f32; 8]; 8];
        let (geno, rec) = derive(&g, &r, 1e-3).unwrap();
        // node 3 in the normal cell: only sel_0_3's 7 ops, from node 0 (state 2)
        assert_eq!(geno.normal.nodes[3].len(), 7);
        assert!(geno.normal.nodes[3].iter().all(|e| e.input == 2));
        // node 0: in0_0 (6 ops, state 1) + in1_0 (7 ops, state 0)
        assert_eq!(geno.normal.nodes[0].len(), 13);
        assert!(!geno.normal.nodes[0].iter().any(|e| e.op == "dil_3" && e.input == 1));
        assert_eq!(rec.pruned_edges, vec!["normal.in1_3".to_string()]);
        assert_eq!(rec.pruned_ops, 8);
        geno.validate(&BAYESNAS_OPS).unwrap();
    }
}
