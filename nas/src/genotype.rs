//! Genotypes: one type for DARTS-style cells (two inputs per node), SNAS's
//! `edge_all` cells (every predecessor listed, `none` for absent edges) and
//! general cells (several ops per edge, any in-degree, as BayesNAS needs).
//!
//! Forms read and written (spec §1.6, §4.9, §5.1, §6.2):
//! * the DARTS text form `Genotype(normal=[('sep_conv_3x3', 0), ...],
//!   normal_concat=range(2, 6), reduce=[...], reduce_concat=range(2, 6))`,
//!   see [`text`];
//! * the unified JSON form of spec §6.2, see [`json`].
//!
//! `none` edges are kept as ordinary edges with op `"none"`, so that SNAS
//! `edge_all` genotypes print back exactly as they were read. A network
//! builder should skip them (they contribute zeros): [`Cell::without_none`].

mod builtin;
mod derive;
mod json;
mod text;

pub use builtin::{builtin, builtin_names};
pub use derive::{derive_darts, derive_edge_all, try_derive_darts, try_derive_edge_all};

use serde::{Deserialize, Serialize};

/// More intermediate nodes than any cell has; larger counts in a text are
/// rejected as typos before anything is allocated for them.
pub const MAX_NODES: usize = 1000;

/// The op that marks an absent edge. Always accepted by [`Genotype::validate`].
pub const NONE_OP: &str = "none";

/// DARTS `PRIMITIVES`, in column order of α (spec §1.2).
pub const DARTS_PRIMITIVES: [&str; 8] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
];

/// Ops that only the NASNet / AmoebaNet genotypes use (spec §1.2).
pub const DARTS_EXTRA_OPS: [&str; 2] = ["sep_conv_7x7", "conv_7x1_1x7"];

/// The BayesNAS op family (spec §4.1), as named in its released cells.
pub const BAYESNAS_OPS: [&str; 7] = [
    "sep_3", "sep_5", "dil_3", "dil_5", "max_pool", "avg_pool", "ident",
];

/// One incoming edge of an intermediate node: an op applied to a state.
/// `input` indexes [c_{k-2}, c_{k-1}, n_0, n_1, ...].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub op: String,
    pub input: usize,
}

impl Edge {
    pub fn new(op: &str, input: usize) -> Edge {
        Edge {
            op: op.to_string(),
            input,
        }
    }
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

/// The usual concat of a cell with `steps` intermediate nodes: all of them,
/// i.e. `range(2, 2 + steps)`.
pub fn default_concat(steps: usize) -> Vec<usize> {
    (2..2 + steps).collect()
}

impl Cell {
    /// Number of intermediate nodes.
    pub fn steps(&self) -> usize {
        self.nodes.len()
    }

    /// Every node has exactly two edges (the DARTS form).
    pub fn is_pairs(&self) -> bool {
        self.nodes.iter().all(|n| n.len() == 2)
    }

    /// Node i has exactly i + 2 edges (the SNAS `edge_all` form).
    pub fn is_edge_all(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, n)| n.len() == i + 2)
    }

    /// The same cell with the `none` edges removed (what a network builds).
    pub fn without_none(&self) -> Cell {
        Cell {
            nodes: self
                .nodes
                .iter()
                .map(|n| n.iter().filter(|e| e.op != NONE_OP).cloned().collect())
                .collect(),
            concat: self.concat.clone(),
        }
    }

    /// Problems of this cell, each a line naming the cell, node and edge.
    fn problems(&self, which: &str, known_ops: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        if self.nodes.is_empty() {
            out.push(format!("{which} cell: it has no intermediate nodes"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for (k, edge) in node.iter().enumerate() {
                if edge.input >= i + 2 {
                    out.push(format!(
                        "{which} cell, node {i}, edge {k}: input {} is not an earlier state; \
                         node {i} may read 0 (c_{{k-2}}), 1 (c_{{k-1}}){}",
                        edge.input,
                        match i {
                            0 => String::new(),
                            1 => ", 2 (node 0)".to_string(),
                            _ => format!(", 2..={} (nodes 0..={})", i + 1, i - 1),
                        }
                    ));
                }
                if edge.op != NONE_OP && !known_ops.contains(&edge.op.as_str()) {
                    let hint = match did_you_mean(&edge.op, known_ops) {
                        Some(s) => format!(" (did you mean '{s}'?)"),
                        None => String::new(),
                    };
                    out.push(format!(
                        "{which} cell, node {i}, edge {k}: unknown op '{}'{hint}",
                        edge.op
                    ));
                }
            }
        }
        if self.concat.is_empty() {
            out.push(format!(
                "{which} cell: concat is empty; it must list the states that form the output"
            ));
        }
        let n_states = self.nodes.len() + 2;
        for (k, &c) in self.concat.iter().enumerate() {
            if c >= n_states {
                out.push(format!(
                    "{which} cell: concat entry {c} is out of range; the cell has states 0..{} \
                     (2 inputs and {} nodes)",
                    n_states - 1,
                    self.nodes.len()
                ));
            }
            if self.concat[..k].contains(&c) {
                out.push(format!("{which} cell: concat lists state {c} twice"));
            }
        }
        out
    }
}

impl Genotype {
    /// Checks that every input indexes an earlier state, every op is in
    /// `known_ops` (or is `none`), and every concat entry is a state of the
    /// cell. All problems are reported at once.
    pub fn validate(&self, known_ops: &[&str]) -> anyhow::Result<()> {
        let mut problems = self.normal.problems("normal", known_ops);
        problems.extend(self.reduce.problems("reduce", known_ops));
        if problems.iter().any(|p| p.contains("unknown op")) {
            problems.push(format!(
                "known ops: {} (and 'none' for an absent edge)",
                known_ops.join(", ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid genotype:\n  {}", problems.join("\n  "))
        }
    }

    /// The same genotype with all `none` edges removed.
    pub fn without_none(&self) -> Genotype {
        Genotype {
            normal: self.normal.without_none(),
            reduce: self.reduce.without_none(),
        }
    }

    /// The DARTS text form (one line, as DARTS logs it).
    pub fn to_darts_text(&self) -> String {
        text::write(self)
    }

    /// Reads the DARTS text form and the variants listed in [`text`].
    pub fn parse_darts_text(s: &str) -> anyhow::Result<Genotype> {
        text::parse(s)
    }

    /// The canonical JSON form (spec §6.2): pretty, stable, one edge per line.
    pub fn to_json(&self) -> String {
        json::write(self)
    }

    /// Reads the JSON forms listed in [`json`].
    pub fn from_json(s: &str) -> anyhow::Result<Genotype> {
        json::parse(s)
    }

    /// Reads either form: JSON when the first non-space character is `{`,
    /// else the DARTS text form.
    pub fn parse(s: &str) -> anyhow::Result<Genotype> {
        if s.trim_start().starts_with('{') {
            Self::from_json(s)
        } else {
            Self::parse_darts_text(s)
        }
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough to
/// be a plausible typo.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // A shortened name ("max_pool" for "max_pool_3x3") is a plausible slip too.
    let lower = name.to_lowercase();
    if lower.len() >= 3 {
        if let Some(c) = candidates
            .iter()
            .find(|c| c.to_lowercase().starts_with(&lower))
        {
            return Some(c);
        }
    }
    let (best, dist) = candidates
        .iter()
        .map(|c| (*c, edit_distance(&name.to_lowercase(), &c.to_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    (dist <= (name.chars().count().max(3) / 3).max(1) + 1).then_some(best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn darts_ops() -> Vec<&'static str> {
        DARTS_PRIMITIVES.to_vec()
    }

    #[test]
    fn validate_accepts_published_darts() {
        let g = builtin("DARTS_V2").unwrap();
        g.validate(&darts_ops()).unwrap();
    }

    #[test]
    fn validate_reports_bad_input_op_and_concat() {
        let mut g = builtin("DARTS_V2").unwrap();
        g.normal.nodes[0][1].input = 2; // node 0 can read only 0 and 1
        g.reduce.nodes[3][0].op = "sep_conv_3x33".into();
        g.reduce.concat.push(9);
        let err = g.validate(&darts_ops()).unwrap_err().to_string();
        assert!(
            err.contains("normal cell, node 0, edge 1: input 2"),
            "{err}"
        );
        assert!(err.contains("did you mean 'sep_conv_3x3'"), "{err}");
        assert!(err.contains("concat entry 9 is out of range"), "{err}");
    }

    #[test]
    fn validate_rejects_duplicate_concat_and_far_op_without_hint() {
        let mut g = builtin("DARTS_V1").unwrap();
        g.normal.concat = vec![2, 2, 3];
        g.normal.nodes[1][0].op = "transformer".into();
        let err = g.validate(&darts_ops()).unwrap_err().to_string();
        assert!(err.contains("concat lists state 2 twice"), "{err}");
        assert!(err.contains("unknown op 'transformer'\n"), "{err}");
        assert!(err.ends_with("known ops: none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5 (and 'none' for an absent edge)"), "{err}");
    }

    #[test]
    fn without_none_drops_only_none_edges() {
        let g = builtin("SNAS_aggressive").unwrap().without_none();
        let sizes: Vec<usize> = g.reduce.nodes.iter().map(|n| n.len()).collect();
        assert_eq!(sizes, vec![1, 1, 0, 0]);
        assert!(g.normal.is_pairs());
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(
            did_you_mean("max_pool_3x", &DARTS_PRIMITIVES),
            Some("max_pool_3x3")
        );
        assert_eq!(
            did_you_mean("Skip_Connect", &DARTS_PRIMITIVES),
            Some("skip_connect")
        );
        assert_eq!(did_you_mean("lstm", &DARTS_PRIMITIVES), None);
    }
}
