//! Genotype diff, node by node and edge by edge, for both cells. States are
//! named as the cell drawings name them (`c_{k-2}`, `c_{k-1}`, `0`, `1`, ...,
//! output `c_{k}`). Two genotypes whose nodes list the same (op, input)
//! entries in another order are the same architecture and are reported as
//! identical.

use nasflow_nas::genotype::{Cell, Genotype};
use serde::Serialize;
use std::collections::BTreeMap;

/// The drawing's name of state `j` of a cell.
pub fn state_name(j: usize) -> String {
    match j {
        0 => "c_{k-2}".into(),
        1 => "c_{k-1}".into(),
        _ => (j - 2).to_string(),
    }
}

/// One (op, input) entry of a node.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeRef {
    pub from: String,
    pub op: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeDiff {
    pub node: String,
    /// Entries both genotypes have (counted with multiplicity).
    pub common: Vec<EdgeRef>,
    pub only_a: Vec<EdgeRef>,
    pub only_b: Vec<EdgeRef>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CellDiff {
    pub cell: String,
    pub identical: bool,
    pub nodes: Vec<NodeDiff>,
    /// States concatenated into `c_{k}`, sorted.
    pub concat_a: Vec<String>,
    pub concat_b: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GenotypeDiff {
    pub identical: bool,
    pub cells: Vec<CellDiff>,
}

pub fn diff(a: &Genotype, b: &Genotype) -> GenotypeDiff {
    let cells = vec![diff_cell("normal", &a.normal, &b.normal), diff_cell("reduce", &a.reduce, &b.reduce)];
    GenotypeDiff { identical: cells.iter().all(|c| c.identical), cells }
}

fn entries(node: Option<&Vec<nasflow_nas::genotype::Edge>>) -> BTreeMap<EdgeRef, usize> {
    let mut m = BTreeMap::new();
    for e in node.into_iter().flatten() {
        *m.entry(EdgeRef { from: state_name(e.input), op: e.op.clone() }).or_insert(0) += 1;
    }
    m
}

fn sorted_concat(c: &Cell) -> Vec<String> {
    let mut v = c.concat.clone();
    v.sort_unstable();
    v.into_iter().map(state_name).collect()
}

fn diff_cell(name: &str, a: &Cell, b: &Cell) -> CellDiff {
    let n = a.nodes.len().max(b.nodes.len());
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let (ea, eb) = (entries(a.nodes.get(i)), entries(b.nodes.get(i)));
        let mut d = NodeDiff { node: state_name(i + 2), common: Vec::new(), only_a: Vec::new(), only_b: Vec::new() };
        for (e, &ca) in &ea {
            let cb = eb.get(e).copied().unwrap_or(0);
            d.common.extend(std::iter::repeat_n(e.clone(), ca.min(cb)));
            d.only_a.extend(std::iter::repeat_n(e.clone(), ca.saturating_sub(cb)));
        }
        for (e, &cb) in &eb {
            let ca = ea.get(e).copied().unwrap_or(0);
            d.only_b.extend(std::iter::repeat_n(e.clone(), cb.saturating_sub(ca)));
        }
        nodes.push(d);
    }
    let (concat_a, concat_b) = (sorted_concat(a), sorted_concat(b));
    let identical = a.nodes.len() == b.nodes.len() && concat_a == concat_b && nodes.iter().all(|d| d.only_a.is_empty() && d.only_b.is_empty());
    CellDiff { cell: name.to_string(), identical, nodes, concat_a, concat_b }
}

/// The diff as text, one line per node that differs.
pub fn text(d: &GenotypeDiff, label_a: &str, label_b: &str) -> String {
    if d.identical {
        return "identical (same entries on every node of both cells)\n".into();
    }
    let mut s = String::new();
    let show = |v: &[EdgeRef]| if v.is_empty() { "-".to_string() } else { v.iter().map(|e| format!("{} <- {}", e.op, e.from)).collect::<Vec<_>>().join(", ") };
    for c in &d.cells {
        if c.identical {
            s += &format!("  {} cell: identical\n", c.cell);
            continue;
        }
        s += &format!("  {} cell:\n", c.cell);
        for n in c.nodes.iter().filter(|n| !n.only_a.is_empty() || !n.only_b.is_empty()) {
            s += &format!("    node {}: {label_a}: {}   {label_b}: {}   (both: {})\n", n.node, show(&n.only_a), show(&n.only_b), show(&n.common));
        }
        if c.concat_a != c.concat_b {
            s += &format!("    c_{{k}} concat: {label_a}: [{}]   {label_b}: [{}]\n", c.concat_a.join(", "), c.concat_b.join(", "));
        }
    }
    s
}
