//! The BayesNAS search space (spec §4.2, §6.1) as a [`SearchSpace`]: its
//! fixed 8-edge normal and reduction cells, 7 ops and the switch names the
//! artifacts use.

use crate::genotype::BAYESNAS_OPS;
pub use crate::space::{EdgeSpec, SearchSpace};

/// BayesNAS (spec §4.2): 8 fixed edges, 7 ops, no `none`.
///
/// BayesNAS names the preprocessed c_{k-1} `x_in0` (state 1) and c_{k-2}
/// `x_in1` (state 0); `sel_0_m` carries node 0 into node m. `in1_3` reads
/// c_{k-2} as the Hessian pass and every released cell intend (the
/// reference search forward feeds it c_{k-1}, a defect, spec §9).
pub struct BayesNasSpace;

/// Edge names in artifact order (the reference pickles' keys).
pub const NORMAL_EDGES: [&str; 8] = ["in0_0", "in0_1", "in0_2", "in1_0", "in1_1", "in1_2", "in1_3", "sel_0_3"];
pub const REDUCE_EDGES: [&str; 8] = ["in0_0", "in1_0", "in1_1", "in1_2", "in1_3", "sel_0_1", "sel_0_2", "sel_0_3"];

/// Switch names: the edge ("origin") switch first, then one per op.
pub const SWITCHES: [&str; 8] = [
    "switch_all",
    "switch_sep_3",
    "switch_sep_5",
    "switch_dil_3",
    "switch_dil_5",
    "switch_max_pool",
    "switch_avg_pool",
    "switch_ident",
];

/// (input state, node) of a BayesNAS edge name.
fn bayesnas_edge(name: &str) -> (usize, usize) {
    let node = name.as_bytes()[name.len() - 1] - b'0';
    let input = if name.starts_with("in0") {
        1
    } else if name.starts_with("in1") {
        0
    } else {
        2 // sel_0_m: from node 0
    };
    (input, node as usize)
}

impl SearchSpace for BayesNasSpace {
    fn name(&self) -> &'static str {
        "bayesnas"
    }
    fn ops(&self) -> &[&'static str] {
        &BAYESNAS_OPS
    }
    fn nodes(&self) -> usize {
        4
    }
    fn edges(&self, reduction: bool) -> Vec<EdgeSpec> {
        let names = if reduction { REDUCE_EDGES } else { NORMAL_EDGES };
        names
            .iter()
            .map(|n| {
                let (input, node) = bayesnas_edge(n);
                EdgeSpec { name: n.to_string(), input, node }
            })
            .collect()
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_match_spec() {
        let n: Vec<(usize, usize)> = BayesNasSpace.edges(false).iter().map(|e| (e.input, e.node)).collect();
        // n0..n2 <- {c_{k-1}, c_{k-2}}, n3 <- {c_{k-2}, n0}
        assert_eq!(n, vec![(1, 0), (1, 1), (1, 2), (0, 0), (0, 1), (0, 2), (0, 3), (2, 3)]);
        let r: Vec<(usize, usize)> = BayesNasSpace.edges(true).iter().map(|e| (e.input, e.node)).collect();
        // n0 <- both inputs, n1..n3 <- {c_{k-2}, n0}
        assert_eq!(r, vec![(1, 0), (0, 0), (0, 1), (0, 2), (0, 3), (2, 1), (2, 2), (2, 3)]);
        assert_eq!(BayesNasSpace.stride(true, 0), 2);
        assert_eq!(BayesNasSpace.stride(true, 2), 1);
        assert_eq!(BayesNasSpace.stride(false, 1), 1);
    }
}
