//! The evaluation network on tiny inputs: general cells (DARTS, SNAS edge_all
//! with `none`, several ops per edge), drop path reproducibility, eval mode,
//! the auxiliary head, and gradients.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork};
use nasflow_nas::genotype::{Cell, Edge, Genotype};
use nasflow_nas::params::trainable_vars;
use nasflow_nas::rng::rng_for;
use nasflow_ops::init_pytorch_default;
use rand::Rng as _;

fn edge(op: &str, input: usize) -> Edge {
    Edge {
        op: op.into(),
        input,
    }
}

fn darts_v2() -> Genotype {
    nasflow_nas::genotype::builtin("DARTS_V2").unwrap()
}

fn cfg(in_channels: usize, layers: usize, auxiliary: bool) -> EvalNetConfig {
    EvalNetConfig {
        in_channels,
        num_classes: 5,
        init_channels: 4,
        layers,
        auxiliary,
        stem_multiplier: 3,
    }
}

fn build(cfg: &EvalNetConfig, g: &Genotype) -> (VarMap, EvalNetwork) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = EvalNetwork::new(cfg, g, vb).unwrap();
    init_pytorch_default(&varmap, &mut rng_for(0, 1)).unwrap();
    (varmap, net)
}

fn input(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rng_for(seed, 9);
    let v: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn forward_backward_with_aux_and_drop_path() {
    for (in_ch, side, layers) in [(1, 12, 3), (3, 8, 5)] {
        let (varmap, net) = build(&cfg(in_ch, layers, true), &darts_v2());
        let x = input(&[2, in_ch, side, side], 1);
        let (logits, aux) = net.forward_t(&x, true, 0.2, &mut rng_for(1, 0)).unwrap();
        let aux = aux.expect("aux logits in training with auxiliary = true");
        assert_eq!(logits.dims(), &[2, 5]);
        assert_eq!(aux.dims(), &[2, 5]);
        assert!(values(&logits)
            .iter()
            .chain(values(&aux).iter())
            .all(|v| v.is_finite()));

        let labels = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
        let loss = (candle_nn::loss::cross_entropy(&logits, &labels).unwrap()
            + (candle_nn::loss::cross_entropy(&aux, &labels).unwrap() * 0.4).unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in trainable_vars(&varmap) {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(values(g).iter().all(|v| v.is_finite()), "{name}");
        }
    }
}

#[test]
fn drop_path_is_deterministic_for_a_seed() {
    let (_, net) = build(&cfg(1, 3, false), &darts_v2());
    let x = input(&[4, 1, 12, 12], 2);
    let run = |seed: u64, p: f32| net.forward_t(&x, true, p, &mut rng_for(seed, 0)).unwrap().0;
    let a = run(7, 0.3);
    assert_eq!(
        values(&a),
        values(&run(7, 0.3)),
        "same seed, same masks, same logits"
    );
    assert!(
        max_abs_diff(&a, &run(8, 0.3)) > 0.0,
        "another seed draws other masks"
    );
    assert!(
        max_abs_diff(&a, &run(7, 0.0)) > 0.0,
        "drop path changes the output"
    );
    // drop_prob = 0 draws nothing from the rng.
    let mut rng = rng_for(7, 0);
    net.forward_t(&x, true, 0.0, &mut rng).unwrap();
    assert_eq!(rng.random::<u64>(), rng_for(7, 0).random::<u64>());
}

#[test]
fn eval_mode_ignores_drop_path_and_aux() {
    let (_, net) = build(&cfg(1, 3, true), &darts_v2());
    let x = input(&[2, 1, 12, 12], 3);
    // A training pass first, so that the running stats are not the initial ones.
    net.forward_t(&x, true, 0.0, &mut rng_for(0, 0)).unwrap();
    let mut rng = rng_for(11, 0);
    let (a, aux_a) = net.forward_t(&x, false, 0.5, &mut rng).unwrap();
    let (b, aux_b) = net.forward_t(&x, false, 0.0, &mut rng_for(12, 0)).unwrap();
    assert!(aux_a.is_none() && aux_b.is_none());
    assert_eq!(values(&a), values(&b));
    assert_eq!(
        rng.random::<u64>(),
        rng_for(11, 0).random::<u64>(),
        "eval drew from the rng"
    );
    // Eval (running stats) differs from train (batch stats).
    let (t, _) = net.forward_t(&x, true, 0.0, &mut rng_for(0, 0)).unwrap();
    assert!(max_abs_diff(&a, &t) > 0.0);
}

#[test]
fn general_cells_edge_all_none_nodes_and_multi_op_edges() {
    // SNAS edge_all normal cell: every predecessor listed, `none` for absent edges.
    let normal = Cell {
        nodes: vec![
            vec![edge("sep_conv_3x3", 0), edge("sep_conv_3x3", 1)],
            vec![
                edge("skip_connect", 0),
                edge("dil_conv_3x3", 1),
                edge("none", 2),
            ],
            vec![
                edge("skip_connect", 0),
                edge("skip_connect", 1),
                edge("none", 3),
                edge("none", 2),
            ],
            vec![
                edge("skip_connect", 0),
                edge("sep_conv_3x3", 1),
                edge("none", 4),
                edge("none", 3),
                edge("none", 2),
            ],
        ],
        concat: vec![2, 3, 4, 5],
    };
    // SNAS_aggressive-style reduce cell: nodes 2 and 3 are all `none` (zero),
    // plus a BayesNAS-style node with two ops on the same input and 3 in-edges.
    let reduce = Cell {
        nodes: vec![
            vec![
                edge("sep_conv_5x5", 0),
                edge("max_pool_3x3", 0),
                edge("avg_pool_3x3", 1),
            ],
            vec![edge("sep_conv_5x5", 0), edge("none", 1)],
            vec![edge("none", 1), edge("none", 0)],
            vec![edge("none", 1), edge("none", 0)],
        ],
        concat: vec![2, 3, 4, 5],
    };
    let g = Genotype { normal, reduce };
    let (varmap, net) = build(&cfg(1, 3, true), &g);
    let x = input(&[2, 1, 12, 12], 4);
    let (logits, aux) = net.forward_t(&x, true, 0.1, &mut rng_for(2, 0)).unwrap();
    assert_eq!(logits.dims(), &[2, 5]);
    assert_eq!(aux.unwrap().dims(), &[2, 5]);
    let names: Vec<String> = trainable_vars(&varmap)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("cells.1.nodes.0.edges.0.")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("cells.1.nodes.2.")),
        "none edges have no vars"
    );

    // A cell concatenating 3 of 5 nodes: the next cell's input channels follow.
    let mut five = darts_v2();
    five.normal
        .nodes
        .push(vec![edge("sep_conv_3x3", 5), edge("skip_connect", 2)]);
    five.normal.concat = vec![3, 5, 6];
    let (_, net) = build(&cfg(3, 5, false), &five);
    let (logits, _) = net
        .forward_t(&input(&[2, 3, 8, 8], 5), true, 0.0, &mut rng_for(0, 0))
        .unwrap();
    assert_eq!(logits.dims(), &[2, 5]);
}

#[test]
fn aux_head_on_mnist_resolution() {
    // 28 -> 14 -> 7: the aux head taps a 7x7 map (smaller than CIFAR's 8x8).
    let (_, net) = build(
        &EvalNetConfig {
            init_channels: 2,
            ..cfg(1, 3, true)
        },
        &darts_v2(),
    );
    let (logits, aux) = net
        .forward_t(&input(&[2, 1, 28, 28], 6), true, 0.0, &mut rng_for(0, 0))
        .unwrap();
    assert_eq!(logits.dims(), &[2, 5]);
    assert_eq!(aux.unwrap().dims(), &[2, 5]);
}

#[test]
fn bad_genotypes_are_clear_errors() {
    let vb = || VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu);
    let mut g = darts_v2();
    g.normal.nodes[1][0].op = "sep_conv_4x4".into();
    let err = format!(
        "{:#}",
        EvalNetwork::new(&cfg(1, 3, false), &g, vb()).err().unwrap()
    );
    assert!(
        err.contains("sep_conv_4x4") && err.contains("normal") && err.contains("node 1"),
        "{err}"
    );
    assert!(err.contains("sep_conv_3x3"), "lists the known ops: {err}");

    let mut g = darts_v2();
    g.reduce.nodes[0][1].input = 2; // node 0 cannot read itself
    let err = format!(
        "{:#}",
        EvalNetwork::new(&cfg(1, 3, false), &g, vb()).err().unwrap()
    );
    assert!(err.contains("reduce") && err.contains("input 2"), "{err}");

    let mut g = darts_v2();
    g.normal.concat = vec![2, 9];
    assert!(EvalNetwork::new(&cfg(1, 3, false), &g, vb()).is_err());
}

#[test]
fn drop_path_spares_identity_ops() {
    // Normal cells of stride-1 skips (Identity) only; reduction cells of `none`
    // and skips between nodes (also Identity). No op is droppable, so a large
    // drop_prob changes nothing and draws nothing from the rng.
    let skips = |inputs: [usize; 8]| Cell {
        nodes: inputs
            .chunks(2)
            .map(|p| p.iter().map(|&i| edge("skip_connect", i)).collect())
            .collect(),
        concat: vec![2, 3, 4, 5],
    };
    let mut reduce = skips([0, 0, 2, 2, 3, 2, 4, 3]);
    reduce.nodes[0] = vec![edge("none", 0), edge("none", 1)];
    let g = Genotype { normal: skips([0, 1, 0, 2, 1, 3, 4, 0]), reduce };
    let (_, net) = build(&cfg(1, 3, false), &g);
    let x = input(&[4, 1, 12, 12], 8);
    let mut rng = rng_for(9, 0);
    let (dropped, _) = net.forward_t(&x, true, 0.5, &mut rng).unwrap();
    let (plain, _) = net.forward_t(&x, true, 0.0, &mut rng_for(9, 0)).unwrap();
    assert_eq!(values(&dropped), values(&plain));
    assert_eq!(rng.random::<u64>(), rng_for(9, 0).random::<u64>());
}
