//! Published genotypes, written as data in the forms the spec prints them
//! (DARTS/SNAS: gradient-nas.md §5.1; BANANAS: predictor-nas.md §B9;
//! BayesNAS: gradient-nas.md §4.9, general multi-op cells).
//!
//! `SNAS_moderate_edge_all` and `SNAS_aggressive_edge_all` are not here: the
//! spec gives only their non-`none` entries, not where the `none` entries sit.

use super::Genotype;

const BUILTINS: [(&str, &str); 10] = [
    (
        "DARTS_V1",
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), \
         ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], \
         reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), \
         ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    ),
    (
        "DARTS_V2",
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), \
         ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], \
         reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), \
         ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    ),
    (
        "SNAS_mild",
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 1), \
         ('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('sep_conv_3x3', 1)], normal_concat=[2, 3, 4, 5], \
         reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 1), ('skip_connect', 2), \
         ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('dil_conv_5x5', 2)], reduce_concat=[2, 3, 4, 5])",
    ),
    (
        "SNAS_moderate",
        "Genotype(normal=[('dil_conv_5x5', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('skip_connect', 1), \
         ('skip_connect', 0), ('skip_connect', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 1)], normal_concat=[2, 3, 4, 5], \
         reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 0), ('dil_conv_5x5', 1), \
         ('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1)], reduce_concat=[2, 3, 4, 5])",
    ),
    (
        // Nodes 2 and 3 of the reduction cell are all-`none` (zero).
        "SNAS_aggressive",
        "Genotype(normal=[('sep_conv_5x5', 0), ('skip_connect', 1), ('skip_connect', 0), ('skip_connect', 1), \
         ('dil_conv_5x5', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_5x5', 1)], normal_concat=[2, 3, 4, 5], \
         reduce=[('sep_conv_5x5', 0), ('none', 1), ('sep_conv_5x5', 0), ('none', 1), \
         ('none', 1), ('none', 0), ('none', 1), ('none', 0)], reduce_concat=[2, 3, 4, 5])",
    ),
    (
        // The 14-entry form, exactly as the spec prints it (node blocks of 2, 3, 4, 5).
        "SNAS_mild_edge_all",
        "normal = [(sep_conv_3x3,0),(sep_conv_3x3,1) | (skip_connect,0),(dil_conv_3x3,1),(none,2) |
                   (skip_connect,0),(skip_connect,1),(none,3),(none,2) |
                   (skip_connect,0),(sep_conv_3x3,1),(none,4),(none,3),(none,2)]
         reduce = [(max_pool_3x3,0),(max_pool_3x3,1) | (none,0),(max_pool_3x3,1),(skip_connect,2) |
                   (none,0),(max_pool_3x3,1),(skip_connect,2),(none,3) |
                   (max_pool_3x3,0),(dil_conv_5x5,2),(none,1),(none,3),(none,4)]",
    ),
    (
        // naszilla/darts `genotypes.BANANAS` (spec predictor-nas.md §B9); note the `none` edge.
        "BANANAS",
        "normal = [(sep_conv_3x3,1),(skip_connect,0),(sep_conv_5x5,2),(sep_conv_5x5,0),
                   (skip_connect,0),(sep_conv_5x5,2),(sep_conv_3x3,0),(skip_connect,2)]
         reduce = [(sep_conv_3x3,1),(max_pool_3x3,0),(max_pool_3x3,0),(none,1),
                   (dil_conv_3x3,2),(sep_conv_5x5,3),(sep_conv_5x5,4),(sep_conv_3x3,1)]",
    ),
    (
        "BAYESNAS_0_005",
        "normal:
           * n0 ← (max_pool, 0), (avg_pool, 0), (ident, 0)
           * n1 ← (ident, 1), (sep_5, 0)
           * n2 ← (avg_pool, 1), (ident, 0), (max_pool, 0)
           * n3 ← (sep_5, 0), (max_pool, 2)
         reduce:
           * n0 ← (sep_3, 1), (sep_5, 1), (max_pool, 1), (avg_pool, 0), (max_pool, 0)
           * n1 ← (max_pool, 2), (avg_pool, 2), (ident, 2)
           * n2 ← (ident, 0), (max_pool, 0)
           * n3 ← (sep_3, 0), (max_pool, 0), (max_pool, 2)",
    ),
    (
        "BAYESNAS_0_007",
        "normal:
           * n0 ← (sep_3, 0), (ident, 0)
           * n1 ← (sep_3, 1), (ident, 1)
           * n2 ← (ident, 1), (sep_3, 0)
           * n3 ← (sep_5, 0), (max_pool, 0), (avg_pool, 0), (ident, 2)
         reduce:
           * n0 ← (sep_5, 1), (avg_pool, 1), (avg_pool, 0), (max_pool, 0), (ident, 0), (sep_5, 0)
           * n1 ← (avg_pool, 0), (ident, 2)
           * n2 ← (avg_pool, 0), (sep_5, 2), (ident, 2)
           * n3 ← (avg_pool, 2), (max_pool, 2)",
    ),
    (
        "BAYESNAS_0_01",
        "normal:
           * n0 ← (sep_5, 1), (sep_5, 0), (max_pool, 0), (avg_pool, 0), (ident, 0)
           * n1 ← (max_pool, 1), (ident, 1)
           * n2 ← (ident, 1), (max_pool, 0)
           * n3 ← (avg_pool, 2)
         reduce:
           * n0 ← (ident, 1), (sep_3, 0), (avg_pool, 0), (max_pool, 0), (sep_5, 0)
           * n1 ← (max_pool, 0), (avg_pool, 0)
           * n2 ← (sep_3, 0), (avg_pool, 0)
           * n3 ← (sep_5, 2)",
    ),
];

/// Names accepted by [`builtin`] (matching ignores case; `DARTS` means `DARTS_V2`).
pub fn builtin_names() -> &'static [&'static str] {
    const NAMES: [&str; BUILTINS.len()] = {
        let mut names = [""; BUILTINS.len()];
        let mut i = 0;
        while i < BUILTINS.len() {
            names[i] = BUILTINS[i].0;
            i += 1;
        }
        names
    };
    &NAMES
}

/// A published genotype by name, e.g. `builtin("DARTS_V2")`.
pub fn builtin(name: &str) -> Option<Genotype> {
    let name = if name.eq_ignore_ascii_case("DARTS") {
        "DARTS_V2"
    } else {
        name
    };
    let (_, text) = BUILTINS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    // The texts are fixed data; the tests check that every one parses.
    Genotype::parse_darts_text(text).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{BAYESNAS_OPS, DARTS_PRIMITIVES};
    use super::*;

    #[test]
    fn every_builtin_parses_validates_and_round_trips() {
        for name in builtin_names() {
            let g = builtin(name).unwrap_or_else(|| panic!("{name} does not parse"));
            let ops: &[&str] = if name.starts_with("BAYESNAS") {
                &BAYESNAS_OPS
            } else {
                &DARTS_PRIMITIVES
            };
            g.validate(ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(g.normal.steps(), 4, "{name}");
            assert_eq!(g.normal.concat, vec![2, 3, 4, 5], "{name}");
            let text = g.to_darts_text();
            assert_eq!(
                Genotype::parse_darts_text(&text).unwrap(),
                g,
                "{name} text: {text}"
            );
            assert_eq!(Genotype::from_json(&g.to_json()).unwrap(), g, "{name} json");
            assert_eq!(
                Genotype::parse(&g.to_json()).unwrap(),
                g,
                "{name} parse(json)"
            );
        }
    }

    #[test]
    fn lookup_ignores_case_and_knows_the_darts_alias() {
        assert_eq!(builtin("darts"), builtin("DARTS_V2"));
        assert_eq!(builtin("snas_MILD"), builtin("SNAS_mild"));
        assert!(builtin("NASNet_v9").is_none());
    }

    #[test]
    fn builtin_data_matches_the_spec_where_spot_checked() {
        let v1 = builtin("DARTS_V1").unwrap();
        assert_eq!(v1.normal.nodes[3][1].op, "skip_connect");
        assert_eq!(v1.normal.nodes[3][1].input, 2);
        assert_eq!(v1.reduce.nodes[3][1].op, "avg_pool_3x3");
        // SNAS_mild_edge_all without its none entries is SNAS_mild up to order within a node.
        let ea = builtin("SNAS_mild_edge_all").unwrap();
        assert!(ea.normal.is_edge_all() && ea.reduce.is_edge_all());
        let mild = builtin("SNAS_mild").unwrap();
        for (a, b) in ea
            .without_none()
            .normal
            .nodes
            .iter()
            .zip(&mild.normal.nodes)
        {
            let mut a = a.clone();
            let mut b = b.clone();
            a.sort_by_key(|e| e.input);
            b.sort_by_key(|e| e.input);
            assert_eq!(a, b);
        }
        let b01 = builtin("BAYESNAS_0_01").unwrap();
        let sizes: Vec<usize> = b01.normal.nodes.iter().map(|n| n.len()).collect();
        assert_eq!(sizes, vec![5, 2, 2, 1]);
        assert_eq!(
            b01.reduce.nodes[3],
            vec![super::super::Edge::new("sep_5", 2)]
        );
    }
}
