//! The evaluation network's fused cells (each cell one autograd node, its backward on
//! nasflow-ops' tape) against candle's own graph of the same cells: same logits, same auxiliary
//! logits, same running statistics and the same gradient for every trainable var, with drop
//! path on (same seeded masks), for DARTS_V2, for a SNAS genotype with affine pool BNs, and for a
//! hand-made cell with `none` edges and a node fed by several ops of one input.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork, EvalOptions};
use nasflow_nas::genotype::{builtin, Cell, Edge, Genotype};
use nasflow_nas::params::trainable_vars;
use nasflow_nas::rng::rng_for;
use nasflow_ops::init_pytorch_default;
mod common;
use common::{max_rel_diff, uniform};

fn input(shape: &[usize], seed: u64) -> Tensor {
    uniform(shape, &mut rng_for(seed, 9))
}

/// Logits, aux logits, running stats and trainable-var gradients (by name) of one step.
fn step(net: &EvalNetwork, vm: &VarMap, x: &Tensor, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = rng_for(seed, 3);
    let (logits, aux) = net.forward_t(x, true, 0.3, &mut rng).unwrap();
    let r = input(logits.dims(), 11);
    let mut loss = (&logits * &r).unwrap().sum_all().unwrap();
    if let Some(aux) = &aux {
        loss = (loss + (aux * 0.4).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut out = vec![("logits".to_string(), logits.clone())];
    out.extend(aux.map(|a| ("aux".to_string(), a)));
    {
        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().filter(|n| n.contains("running")).collect();
        names.sort();
        for name in names {
            out.push((name.clone(), data[name].as_tensor().copy().unwrap()));
        }
    }
    for (name, v) in trainable_vars(vm) {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        out.push((format!("grad {name}"), g.clone()));
    }
    out
}

fn check(g: &Genotype, options: EvalOptions, in_channels: usize, hw: usize, layers: usize) {
    let cfg = EvalNetConfig { in_channels, num_classes: 5, init_channels: 4, layers, auxiliary: true, stem_multiplier: 3 };
    let x = input(&[3, in_channels, hw, hw], 5);
    let run = |fused: bool| {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mut net = EvalNetwork::new_with(&cfg, g, &options, vb).unwrap();
        net.set_fused(fused);
        init_pytorch_default(&vm, &mut rng_for(0, 1)).unwrap();
        step(&net, &vm, &x, 21)
    };
    let (fused, plain) = (run(true), run(false));
    assert_eq!(fused.len(), plain.len());
    assert!(fused.len() > 10);
    for ((name, a), (name_p, p)) in fused.iter().zip(&plain) {
        assert_eq!(name, name_p);
        let d = max_rel_diff(a, p);
        assert!(d < 2e-4, "{name}: fused and candle's graph differ by {d} (relative to the largest value)");
    }
}

#[test]
fn darts_v2_with_drop_path_and_aux_head() {
    check(&builtin("DARTS_V2").unwrap(), EvalOptions::default(), 3, 12, 5);
}

#[test]
fn snas_genotype_with_affine_pool_bn() {
    check(&builtin("SNAS_mild").unwrap(), EvalOptions { pool_bn_affine: true }, 1, 12, 4);
}

#[test]
fn none_edges_and_several_ops_per_input() {
    let e = |op: &str, input: usize| Edge { op: op.into(), input };
    let cell = Cell {
        nodes: vec![
            vec![e("sep_conv_3x3", 0), e("max_pool_3x3", 0), e("none", 1)],
            vec![e("skip_connect", 1), e("dil_conv_5x5", 2), e("avg_pool_3x3", 0)],
            vec![e("none", 0), e("none", 1)],
        ],
        concat: vec![2, 3, 4],
    };
    let g = Genotype { normal: cell.clone(), reduce: cell };
    check(&g, EvalOptions::default(), 1, 12, 3);
}

#[test]
fn cells_with_conv_7x1_1x7_fall_back_to_candles_graph() {
    // conv_7x1_1x7 uses candle's own conv, which the tape cannot record: such a cell must not
    // be fused (a recorded cell would lose the gradient through it)
    let e = |op: &str, input: usize| Edge { op: op.into(), input };
    let cell = Cell {
        nodes: vec![vec![e("conv_7x1_1x7", 0), e("sep_conv_3x3", 1)], vec![e("conv_7x1_1x7", 2), e("skip_connect", 0)]],
        concat: vec![2, 3],
    };
    let g = Genotype { normal: cell.clone(), reduce: cell };
    check(&g, EvalOptions::default(), 1, 12, 3);
}
