//! From architecture weights to a genotype.
//!
//! Weights are softmax rows, one per edge, in DARTS edge order (node 0: rows
//! 0-1, node 1: rows 2-4, node 2: rows 5-8, ...; within a node, predecessor
//! order c_{k-2}, c_{k-1}, n_0, ...), one column per primitive.

use super::{default_concat, Cell, Edge, Genotype, MAX_NODES, NONE_OP};
use crate::space::{DartsSpace, SearchSpace};
use anyhow::{bail, Result};

/// The DARTS rule (spec §2.7): per node keep the two predecessors whose best
/// non-`none` weight is largest (stable descending sort: ties go to the lower
/// index), strongest first, each with its best non-`none` op (ties: the first).
///
/// # Panics
/// When the weights do not have `steps·(steps+3)/2` rows of
/// `primitives.len()` finite values, or no op besides `none`. Use
/// [`try_derive_darts`] for weights read from a file.
pub fn derive_darts(
    weights_normal: &[Vec<f32>],
    weights_reduce: &[Vec<f32>],
    primitives: &[&str],
    steps: usize,
) -> Genotype {
    match try_derive_darts(weights_normal, weights_reduce, primitives, steps) {
        Ok(g) => g,
        Err(e) => panic!("derive_darts: {e:#}"),
    }
}

/// [`derive_darts`] that reports malformed weights as an error.
pub fn try_derive_darts(
    weights_normal: &[Vec<f32>],
    weights_reduce: &[Vec<f32>],
    primitives: &[&str],
    steps: usize,
) -> Result<Genotype> {
    if !primitives.iter().any(|p| *p != NONE_OP) {
        bail!("cannot derive a DARTS genotype: the primitives {primitives:?} have no op besides 'none'");
    }
    Ok(Genotype {
        normal: derive_cell(weights_normal, primitives, steps, "normal", Rule::Darts)?,
        reduce: derive_cell(weights_reduce, primitives, steps, "reduce", Rule::Darts)?,
    })
}

/// The SNAS rule (spec §3.7): every edge is kept with its argmax op over all
/// primitives, `none` included (ties: the first); within a node the edges
/// are listed by descending max weight (stable: ties keep predecessor order).
///
/// # Panics
/// As [`derive_darts`]; use [`try_derive_edge_all`] for weights from a file.
pub fn derive_edge_all(
    weights_normal: &[Vec<f32>],
    weights_reduce: &[Vec<f32>],
    primitives: &[&str],
    steps: usize,
) -> Genotype {
    match try_derive_edge_all(weights_normal, weights_reduce, primitives, steps) {
        Ok(g) => g,
        Err(e) => panic!("derive_edge_all: {e:#}"),
    }
}

/// [`derive_edge_all`] that reports malformed weights as an error.
pub fn try_derive_edge_all(
    weights_normal: &[Vec<f32>],
    weights_reduce: &[Vec<f32>],
    primitives: &[&str],
    steps: usize,
) -> Result<Genotype> {
    if primitives.is_empty() {
        bail!("cannot derive a genotype: the list of primitives is empty");
    }
    Ok(Genotype {
        normal: derive_cell(weights_normal, primitives, steps, "normal", Rule::EdgeAll)?,
        reduce: derive_cell(weights_reduce, primitives, steps, "reduce", Rule::EdgeAll)?,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Rule {
    Darts,
    EdgeAll,
}

fn check(w: &[Vec<f32>], primitives: &[&str], steps: usize, which: &str) -> Result<()> {
    if steps > MAX_NODES {
        bail!("cannot derive the {which} cell: {steps} steps is implausibly many (at most {MAX_NODES})");
    }
    let rows = steps * (steps + 3) / 2;
    if w.len() != rows {
        bail!(
            "cannot derive the {which} cell: expected {rows} weight rows (one per edge of {steps} nodes), found {}",
            w.len()
        );
    }
    for (r, row) in w.iter().enumerate() {
        if row.len() != primitives.len() {
            bail!(
                "cannot derive the {which} cell: weight row {r} has {} values, expected {} (one per primitive: {})",
                row.len(),
                primitives.len(),
                primitives.join(", ")
            );
        }
        if let Some(c) = row.iter().position(|x| !x.is_finite()) {
            bail!(
                "cannot derive the {which} cell: weight row {r}, column {c} ({}) is {}; the search diverged",
                primitives[c],
                row[c]
            );
        }
    }
    Ok(())
}

/// Index of the largest value among the allowed columns; the first wins ties
/// (DARTS compares with a strict '>').
fn argmax(row: &[f32], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (k, &x) in row.iter().enumerate() {
        if allowed(k) && best.is_none_or(|b| x > row[b]) {
            best = Some(k);
        }
    }
    best
}

fn derive_cell(
    w: &[Vec<f32>],
    primitives: &[&str],
    steps: usize,
    which: &str,
    rule: Rule,
) -> Result<Cell> {
    check(w, primitives, steps, which)?;
    let allowed = |k: usize| rule == Rule::EdgeAll || primitives[k] != NONE_OP;
    // The DARTS DAG: row e of `w` is edge e of the space (same order as the supernet).
    let specs = DartsSpace::new(steps, Vec::new()).edges(false);
    let mut nodes = Vec::with_capacity(steps);
    for i in 0..steps {
        // (edge, predecessor, best op) per incoming edge; `check` guarantees an op exists.
        let mut best: Vec<(usize, usize, usize)> = Vec::with_capacity(i + 2);
        for (e, spec) in specs.iter().enumerate().filter(|(_, s)| s.node == i) {
            match argmax(&w[e], allowed) {
                Some(k) => best.push((e, spec.input, k)),
                None => bail!("cannot derive the {which} cell: no op to choose for edge {e}"),
            }
        }
        // Stable sort, descending by the chosen op's weight: ties keep the lower predecessor first.
        best.sort_by(|a, b| w[b.0][b.2].total_cmp(&w[a.0][a.2]));
        if rule == Rule::Darts {
            best.truncate(2);
        }
        nodes.push(best.into_iter().map(|(_, j, k)| Edge::new(primitives[k], j)).collect());
    }
    Ok(Cell {
        nodes,
        concat: default_concat(steps),
    })
}

#[cfg(test)]
mod tests {
    use super::super::DARTS_PRIMITIVES;
    use super::*;

    /// A 14 x 8 matrix filled with a uniform-ish base, edited per test.
    fn base() -> Vec<Vec<f32>> {
        vec![vec![0.125; 8]; 14]
    }

    fn set(w: &mut [Vec<f32>], row: usize, op: &str, v: f32) {
        let k = DARTS_PRIMITIVES.iter().position(|p| *p == op).unwrap();
        w[row][k] = v;
    }

    #[test]
    fn darts_rule_ranks_strongest_first_and_ignores_none() {
        let mut w = base();
        // Node 0 (rows 0, 1): row 1 is stronger, so it comes first.
        set(&mut w, 0, "sep_conv_3x3", 0.3);
        set(&mut w, 1, "skip_connect", 0.5);
        // Node 1 (rows 2-4): `none` is huge on row 2 but must not count.
        set(&mut w, 2, "none", 0.9);
        set(&mut w, 3, "max_pool_3x3", 0.2);
        set(&mut w, 4, "dil_conv_5x5", 0.4);
        let g = derive_darts(&w, &base(), &DARTS_PRIMITIVES, 4);
        assert_eq!(
            g.normal.nodes[0],
            vec![Edge::new("skip_connect", 1), Edge::new("sep_conv_3x3", 0)]
        );
        assert_eq!(
            g.normal.nodes[1],
            vec![Edge::new("dil_conv_5x5", 2), Edge::new("max_pool_3x3", 1)]
        );
        assert_eq!(g.normal.concat, vec![2, 3, 4, 5]);
    }

    #[test]
    fn darts_ties_go_to_lower_index_and_first_op() {
        // All equal: node i keeps predecessors 0 and 1, op = first non-none.
        let g = derive_darts(&base(), &base(), &DARTS_PRIMITIVES, 4);
        for node in &g.reduce.nodes {
            assert_eq!(
                node,
                &vec![Edge::new("max_pool_3x3", 0), Edge::new("max_pool_3x3", 1)]
            );
        }
        // A tie between predecessors 3 and 1 of node 3 (rows 9-13): 1 wins the tie.
        let mut w = base();
        set(&mut w, 10, "sep_conv_5x5", 0.6);
        set(&mut w, 12, "sep_conv_5x5", 0.6);
        set(&mut w, 12, "avg_pool_3x3", 0.6); // op tie inside row 12: avg (index 2) beats sep_5 (5)
        set(&mut w, 13, "skip_connect", 0.5);
        let g = derive_darts(&w, &base(), &DARTS_PRIMITIVES, 4);
        assert_eq!(
            g.normal.nodes[3],
            vec![Edge::new("sep_conv_5x5", 1), Edge::new("avg_pool_3x3", 3)]
        );
    }

    #[test]
    fn edge_all_keeps_every_edge_with_none() {
        let mut w = base();
        set(&mut w, 0, "none", 0.9);
        set(&mut w, 1, "sep_conv_3x3", 0.4);
        set(&mut w, 3, "skip_connect", 0.7);
        set(&mut w, 4, "none", 0.8);
        let g = derive_edge_all(&w, &base(), &DARTS_PRIMITIVES, 4);
        assert!(g.normal.is_edge_all());
        assert_eq!(
            g.normal.nodes[0],
            vec![Edge::new("none", 0), Edge::new("sep_conv_3x3", 1)]
        );
        // Node 1: row 4 (none, 0.8) > row 3 (skip, 0.7) > row 2 (tie: first op = none).
        assert_eq!(
            g.normal.nodes[1],
            vec![
                Edge::new("none", 2),
                Edge::new("skip_connect", 1),
                Edge::new("none", 0)
            ]
        );
        // Round trip through text keeps the none edges and the order.
        assert_eq!(Genotype::parse_darts_text(&g.to_darts_text()).unwrap(), g);
    }

    #[test]
    fn malformed_weights_are_errors() {
        let mut w = base();
        w.pop();
        let e = try_derive_darts(&w, &base(), &DARTS_PRIMITIVES, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 14 weight rows"), "{e}");
        let mut w = base();
        w[3][2] = f32::NAN;
        let e = try_derive_darts(&w, &base(), &DARTS_PRIMITIVES, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 3, column 2 (avg_pool_3x3) is NaN"), "{e}");
        let e = try_derive_edge_all(&base(), &base(), &DARTS_PRIMITIVES[..7], 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 8 values, expected 7"), "{e}");
        assert!(try_derive_darts(
            &[vec![1.0], vec![1.0]],
            &[vec![1.0], vec![1.0]],
            &["none"],
            1
        )
        .is_err());
    }

    #[test]
    #[should_panic(expected = "derive_darts")]
    fn plain_derive_panics_on_wrong_shape() {
        derive_darts(&[], &[], &DARTS_PRIMITIVES, 4);
    }
}
