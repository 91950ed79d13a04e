//! Genotypes: one type for DARTS-style cells (two inputs per node), SNAS's
//! `edge_all` cells (every predecessor listed, `none` for absent edges) and
//! general cells (several ops per edge, any in-degree, as BayesNAS needs).

use serde::{Deserialize, Serialize};

/// One incoming edge of an intermediate node: an op applied to a state.
/// `input` indexes [c_{k-2}, c_{k-1}, n_0, n_1, ...].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub op: String,
    pub input: usize,
}

/// A cell: for each intermediate node, its incoming edges; and which states
/// are concatenated into the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub nodes: Vec<Vec<Edge>>,
    pub concat: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genotype {
    pub normal: Cell,
    pub reduce: Cell,
}
