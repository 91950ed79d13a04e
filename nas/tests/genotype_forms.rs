//! The public genotype API end to end: published forms in, canonical forms
//! out, derivation from weights, validation.

use nasflow_nas::genotype::{
    self, builtin, builtin_names, derive_darts, derive_edge_all, Genotype, DARTS_PRIMITIVES,
};
use nasflow_nas::rng::rng_for;
use rand::Rng as _;

#[test]
fn a_pasted_darts_log_line_reads_like_the_builtin() {
    let line = "10/12 09:41:07 PM genotype = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))";
    let g = Genotype::parse(line).unwrap();
    assert_eq!(g, builtin("DARTS_V2").unwrap());
    // What nasflow writes back is the log's own text, from "Genotype(" on.
    assert_eq!(g.to_darts_text(), &line[line.find("Genotype(").unwrap()..]);
}

#[test]
fn parse_picks_the_form_by_the_first_character() {
    for name in builtin_names() {
        let g = builtin(name).unwrap();
        assert_eq!(
            Genotype::parse(&format!("  \n{}", g.to_json())).unwrap(),
            g,
            "{name}"
        );
        assert_eq!(Genotype::parse(&g.to_darts_text()).unwrap(), g, "{name}");
    }
    let e = Genotype::parse("{ not json").unwrap_err();
    assert!(format!("{e:#}").contains("genotype JSON"), "{e:#}");
}

#[test]
fn json_is_stable_and_differs_when_the_genotype_does() {
    let a = builtin("DARTS_V1").unwrap();
    assert_eq!(a.to_json(), a.clone().to_json());
    let mut b = a.clone();
    // Order within a node is part of the genotype (DARTS rank order).
    b.normal.nodes[0].swap(0, 1);
    assert_ne!(a.to_json(), b.to_json());
    assert_eq!(Genotype::from_json(&b.to_json()).unwrap(), b);
}

/// Softmax rows of random logits: what a DARTS search hands to the derivation.
fn softmax_rows(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rng_for(seed, 0);
    (0..14)
        .map(|_| {
            let logits: Vec<f32> = (0..8).map(|_| rng.random_range(-2.0..2.0)).collect();
            let z: f32 = logits.iter().map(|l| l.exp()).sum();
            logits.iter().map(|l| l.exp() / z).collect()
        })
        .collect()
}

#[test]
fn derived_genotypes_are_valid_and_round_trip() {
    for seed in 0..20 {
        let (wn, wr) = (softmax_rows(seed), softmax_rows(seed + 100));
        let g = derive_darts(&wn, &wr, &DARTS_PRIMITIVES, 4);
        g.validate(&DARTS_PRIMITIVES).unwrap();
        assert!(g.normal.is_pairs() && g.reduce.is_pairs());
        assert!(g.normal.nodes.iter().flatten().all(|e| e.op != "none"));
        for node in g.normal.nodes.iter() {
            assert_ne!(node[0].input, node[1].input, "two distinct predecessors");
        }
        assert_eq!(Genotype::parse(&g.to_darts_text()).unwrap(), g);
        assert_eq!(Genotype::parse(&g.to_json()).unwrap(), g);

        let ea = derive_edge_all(&wn, &wr, &DARTS_PRIMITIVES, 4);
        ea.validate(&DARTS_PRIMITIVES).unwrap();
        assert!(ea.normal.is_edge_all());
        assert_eq!(Genotype::parse(&ea.to_darts_text()).unwrap(), ea);
        // edge_all lists every predecessor of a node exactly once.
        for (i, node) in ea.normal.nodes.iter().enumerate() {
            let mut inputs: Vec<usize> = node.iter().map(|e| e.input).collect();
            inputs.sort();
            assert_eq!(inputs, (0..i + 2).collect::<Vec<_>>());
        }
    }
}

#[test]
fn derive_matches_a_hand_computed_case() {
    // Node 0: row 0 best non-none 0.5 (sep_conv_5x5), row 1 best 0.6 (skip) -> ranked (skip,1),(sep5,0).
    let mut w = vec![vec![0.1f32; 8]; 14];
    w[0][5] = 0.5;
    w[1][3] = 0.6;
    w[1][0] = 0.99; // none is ignored
    let g = derive_darts(&w, &w, &DARTS_PRIMITIVES, 4);
    assert_eq!(
        g.normal.nodes[0],
        vec![
            genotype::Edge::new("skip_connect", 1),
            genotype::Edge::new("sep_conv_5x5", 0)
        ]
    );
    let ea = derive_edge_all(&w, &w, &DARTS_PRIMITIVES, 4);
    assert_eq!(
        ea.normal.nodes[0],
        vec![
            genotype::Edge::new("none", 1),
            genotype::Edge::new("sep_conv_5x5", 0)
        ]
    );
}

#[test]
fn bayesnas_cells_validate_against_their_own_ops_only() {
    let g = builtin("BAYESNAS_0_005").unwrap();
    g.validate(&genotype::BAYESNAS_OPS).unwrap();
    let e = g.validate(&DARTS_PRIMITIVES).unwrap_err().to_string();
    assert!(e.contains("unknown op 'max_pool'"), "{e}");
    assert!(e.contains("did you mean 'max_pool_3x3'"), "{e}");
}
