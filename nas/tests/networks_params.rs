//! Parameter counts of the DARTS networks against the published numbers
//! (gradient-nas.md §5.2) and against an independent closed-form count built
//! from the op table of §1.2. Building the big nets is cheap; no forward.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork};
use nasflow_nas::darts::model_search::{SearchNetConfig, SearchNetwork};
use nasflow_nas::genotype::{Cell, Edge, Genotype};
use nasflow_nas::params::{count_params, trainable_vars};
use nasflow_ops::Primitive;

/// A DARTS-form cell: two (op, input) entries per node, concat [2, 3, 4, 5].
fn darts_cell(entries: &[(&str, usize)]) -> Cell {
    Cell {
        nodes: entries
            .chunks(2)
            .map(|pair| {
                pair.iter()
                    .map(|&(op, input)| Edge {
                        op: op.into(),
                        input,
                    })
                    .collect()
            })
            .collect(),
        concat: vec![2, 3, 4, 5],
    }
}

#[rustfmt::skip]
fn darts_v2() -> Genotype {
    Genotype {
        normal: darts_cell(&[
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
        ]),
        reduce: darts_cell(&[
            ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
        ]),
    }
}

#[rustfmt::skip]
fn darts_v1() -> Genotype {
    Genotype {
        normal: darts_cell(&[
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
        ]),
        reduce: darts_cell(&[
            ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0),
        ]),
    }
}

#[rustfmt::skip]
fn snas_mild() -> Genotype {
    Genotype {
        normal: darts_cell(&[
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_3x3", 1),
            ("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
        ]),
        reduce: darts_cell(&[
            ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 1), ("skip_connect", 2),
            ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("dil_conv_5x5", 2),
        ]),
    }
}

#[rustfmt::skip]
fn snas_moderate() -> Genotype {
    Genotype {
        normal: darts_cell(&[
            ("dil_conv_5x5", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("skip_connect", 1),
            ("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 1),
        ]),
        reduce: darts_cell(&[
            ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_5x5", 0), ("dil_conv_5x5", 1),
            ("sep_conv_5x5", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1),
        ]),
    }
}

#[rustfmt::skip]
fn snas_aggressive() -> Genotype {
    Genotype {
        normal: darts_cell(&[
            ("sep_conv_5x5", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 1),
            ("dil_conv_5x5", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_5x5", 1),
        ]),
        reduce: darts_cell(&[
            ("sep_conv_5x5", 0), ("none", 1), ("sep_conv_5x5", 0), ("none", 1),
            ("none", 1), ("none", 0), ("none", 1), ("none", 0),
        ]),
    }
}

fn cifar_eval(auxiliary: bool) -> EvalNetConfig {
    EvalNetConfig {
        in_channels: 3,
        num_classes: 10,
        init_channels: 36,
        layers: 20,
        auxiliary,
        stem_multiplier: 3,
    }
}

fn build_eval(cfg: &EvalNetConfig, genotype: &Genotype) -> VarMap {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    EvalNetwork::new(cfg, genotype, vb).unwrap();
    varmap
}

// ------------------------------------------------ closed-form counts (§1.2, §1.3, §2.8)

/// Params of one op on C channels; `a` = 1 when BN is affine.
fn op_params(op: &str, c: usize, stride: usize, a: usize) -> usize {
    match (op, stride) {
        ("none" | "max_pool_3x3" | "avg_pool_3x3", _) | ("skip_connect", 1) => 0,
        ("skip_connect", _) => c * c + 2 * c * a, // FactorizedReduce(C -> C)
        ("sep_conv_3x3", _) => 2 * (9 * c + c * c) + 4 * c * a,
        ("sep_conv_5x5", _) => 2 * (25 * c + c * c) + 4 * c * a,
        ("dil_conv_3x3", _) => 9 * c + c * c + 2 * c * a,
        ("dil_conv_5x5", _) => 25 * c + c * c + 2 * c * a,
        _ => panic!("no formula for {op}"),
    }
}

/// Stem + cells + classifier of a network whose cell body is `cell_body`.
fn closed_form(
    in_ch: usize,
    classes: usize,
    c0: usize,
    layers: usize,
    a: usize,
    cell_body: impl Fn(usize, bool) -> usize,
) -> usize {
    let stem = in_ch * 3 * c0 * 9 + 2 * 3 * c0; // stem BN is affine in both nets
    let (mut c_pp, mut c_p, mut c) = (3 * c0, 3 * c0, c0);
    let mut total = stem;
    for i in 0..layers {
        let reduction = i == layers / 3 || i == 2 * layers / 3;
        if reduction {
            c *= 2;
        }
        // Both preprocess kinds (1x1 ReLUConvBN, FactorizedReduce) have Cin*C weights.
        total += c_pp * c + 2 * c * a + c_p * c + 2 * c * a + cell_body(c, reduction);
        (c_pp, c_p) = (c_p, 4 * c);
    }
    total + c_p * classes + classes
}

fn genotype_closed_form(g: &Genotype) -> usize {
    closed_form(3, 10, 36, 20, 1, |c, reduction| {
        let cell = if reduction { &g.reduce } else { &g.normal };
        cell.nodes
            .iter()
            .flatten()
            .map(|e| op_params(&e.op, c, if reduction && e.input < 2 { 2 } else { 1 }, 1))
            .sum()
    })
}

#[test]
fn supernet_c16_l8_matches_darts_param_size() {
    let cfg = SearchNetConfig {
        in_channels: 3,
        num_classes: 10,
        init_channels: 16,
        layers: 8,
        steps: 4,
        multiplier: 4,
        stem_multiplier: 3,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = SearchNetwork::new(&cfg, &Primitive::DARTS, vb).unwrap();
    assert_eq!(net.num_edges(), 14);

    let counted = count_params(&varmap, None);
    assert_eq!(
        counted, 1_930_618,
        "DARTS logs param size 1.930618 M for this supernet"
    );

    let formula = closed_form(3, 10, 16, 8, 0, |c, reduction| {
        (0..4)
            .flat_map(|i| 0..i + 2)
            .map(|j| {
                let stride = if reduction && j < 2 { 2 } else { 1 };
                Primitive::DARTS
                    .iter()
                    .map(|p| op_params(p.name(), c, stride, 0))
                    .sum::<usize>()
            })
            .sum()
    });
    assert_eq!(counted, formula);
}

#[test]
fn darts_v2_eval_net_matches_paper_count() {
    let varmap = build_eval(&cifar_eval(true), &darts_v2());
    let without_aux = count_params(&varmap, Some("auxiliary"));
    assert_eq!(
        without_aux, 3_349_342,
        "DARTS_V2 at C=36, L=20 has 3.349342 M params"
    );
    assert_eq!(without_aux, genotype_closed_form(&darts_v2()));

    // The aux head (§2.8) on 576 channels: conv1x1 576->128, BN, conv2x2 128->768, BN, linear.
    let aux = count_params(&varmap, None) - without_aux;
    let aux_formula = 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10;
    assert_eq!(aux, aux_formula);
    println!("DARTS aux head (C=36, L=20): {aux} params");

    // Without the head the network is the same size and has no aux vars.
    let plain = build_eval(&cifar_eval(false), &darts_v2());
    assert_eq!(count_params(&plain, None), without_aux);
}

#[test]
fn darts_v1_eval_net_matches_closed_form() {
    let varmap = build_eval(&cifar_eval(false), &darts_v1());
    let counted = count_params(&varmap, None);
    assert_eq!(counted, genotype_closed_form(&darts_v1()));
    println!("DARTS_V1 (C=36, L=20, no aux): {counted} params");
}

#[test]
fn trainable_vars_are_sorted_and_exclude_running_stats() {
    let varmap = build_eval(
        &EvalNetConfig {
            init_channels: 4,
            layers: 3,
            ..cifar_eval(true)
        },
        &darts_v2(),
    );
    let vars = trainable_vars(&varmap);
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.iter().all(|n| !n.contains("running_")));
    let all = varmap.data().lock().unwrap();
    let stats = all
        .keys()
        .filter(|n| n.ends_with("running_mean") || n.ends_with("running_var"));
    assert_eq!(stats.count() + vars.len(), all.len());
    assert!(names.contains(&"stem.conv.weight"));
    assert!(names.iter().any(|n| n.starts_with("auxiliary.")));
}

#[test]
fn snas_eval_nets_match_closed_form() {
    // DARTS-style retrain ops (no BN after pools; SNAS's own retrain adds ~2k
    // affine BN params there, gradient-nas.md §5.2).
    for (name, g) in [
        ("SNAS_mild", snas_mild()),
        ("SNAS_moderate", snas_moderate()),
        ("SNAS_aggressive", snas_aggressive()),
    ] {
        let counted = count_params(&build_eval(&cifar_eval(false), &g), None);
        assert_eq!(counted, genotype_closed_form(&g), "{name}");
        println!("{name} (C=36, L=20, no aux): {counted} params");
        if name == "SNAS_mild" {
            assert_eq!((counted + 500) / 1000, 2661, "§5.2: SNAS_mild is 2.661 M");
        }
    }
}
