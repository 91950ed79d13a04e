//! The BayesNAS retrain network: parameter counts of the three released cells
//! equal an independent analytic count from the op table of spec §4.1, and a
//! forward pass with channel dropout gives logits of the right shape.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::bayesnas::network::{is_bayesnas_genotype, BayesNasNetwork, BayesNetConfig};
use nasflow_nas::genotype::{builtin, Genotype};
use nasflow_nas::rng::rng_for;

fn op_params(op: &str, c: usize, stride: usize) -> usize {
    match op {
        "sep_3" => 2 * c * c + 22 * c,
        "sep_5" => 2 * c * c + 54 * c,
        "dil_3" => 10 * c * c + 2 * c,
        "dil_5" => 26 * c * c + 2 * c,
        "ident" if stride == 2 => c * c + 2 * c,
        _ => 0,
    }
}

/// Spec §4.1/§4.8 by hand: stem 3→3C (no BN), CReduct pairs, ops, BN + linear head.
fn analytic(g: &Genotype, c0: usize, layers: usize, classes: usize) -> usize {
    let mut total = 3 * 3 * c0 * 9;
    let (mut c_pp, mut c_p, mut c) = (3 * c0, 3 * c0, c0);
    let mut red_prev = false;
    for i in 0..layers {
        let red = i == layers / 3 || i == 2 * layers / 3;
        if red {
            c *= 2;
        }
        total += if red_prev { c_pp * c_pp } else { 0 } + 2 * c_pp + c_pp * c;
        total += 2 * c_p + c_p * c;
        let cell = if red { &g.reduce } else { &g.normal };
        for e in cell.nodes.iter().flatten() {
            total += op_params(&e.op, c, if red && e.input < 2 { 2 } else { 1 });
        }
        (c_pp, c_p, red_prev) = (c_p, 4 * c, red);
    }
    total + 2 * c_p + c_p * classes + classes
}

#[test]
fn released_cells_count_as_the_op_table_says() {
    for name in ["BAYESNAS_0_005", "BAYESNAS_0_007", "BAYESNAS_0_01"] {
        let g = builtin(name).unwrap();
        assert!(is_bayesnas_genotype(&g));
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = BayesNetConfig { in_channels: 3, num_classes: 10, init_channels: 36, layers: 20 };
        BayesNasNetwork::new(&cfg, &g, vb).unwrap();
        assert_eq!(nasflow_nas::params::count_params(&vm, None), analytic(&g, 36, 20, 10), "{name}");
    }
    assert!(!is_bayesnas_genotype(&builtin("DARTS_V2").unwrap()));
}

#[test]
fn forward_with_channel_dropout_and_a_darts_op_is_refused() {
    let g = builtin("BAYESNAS_0_007").unwrap();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let cfg = BayesNetConfig { in_channels: 1, num_classes: 4, init_channels: 2, layers: 3 };
    let net = BayesNasNetwork::new(&cfg, &g, vb).unwrap();
    let x = Tensor::ones((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let y = net.forward_t(&x, true, 0.3, &mut rng_for(0, 0)).unwrap();
    assert_eq!(y.dims(), [2, 4]);
    let mut bad = g.clone();
    bad.normal.nodes[0][0].op = "sep_conv_3x3".into();
    let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu);
    let err = BayesNasNetwork::new(&cfg, &bad, vb).err().unwrap();
    assert!(format!("{err:#}").contains("`sep_conv_3x3` is not a BayesNAS op"), "{err:#}");
}
