//! The network options SNAS adds to the shared DARTS networks: the affine BN
//! after pools in the retrain net (spec §3.1, §5.2) and drop path on every
//! edge of the supernet (§3.5). DARTS's defaults stay as they were.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork, EvalOptions};
use nasflow_nas::darts::model_search::{EdgeDropPath, SearchNetConfig, SearchNetwork};
use nasflow_nas::genotype::builtin;
use nasflow_nas::params::count_params;
use nasflow_nas::rng::rng_for;
use nasflow_ops::Primitive;

/// A deterministic [batch, 1, 8, 8] input (candle's own RNG is not seeded).
fn input(batch: usize) -> Tensor {
    let n = batch * 64;
    let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    Tensor::from_vec(v, (batch, 1, 8, 8), &Device::Cpu).unwrap()
}

fn cifar_params(name: &str, pool_bn_affine: bool) -> usize {
    let cfg = EvalNetConfig {
        in_channels: 3,
        num_classes: 10,
        init_channels: 36,
        layers: 20,
        auxiliary: false,
        stem_multiplier: 3,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let genotype = builtin(name).unwrap();
    EvalNetwork::new_with(&cfg, &genotype, &EvalOptions { pool_bn_affine }, vb).unwrap();
    count_params(&varmap, None)
}

#[test]
fn snas_retrain_pools_add_an_affine_bn() {
    // Pools only sit in the reduction cells (C = 72 and 144 at C=36, L=20):
    // each adds 2C. SNAS_mild: 5 pools per reduction cell; moderate: 2; aggressive: 0.
    let extra = |pools: usize| pools * 2 * (72 + 144);
    for (name, pools) in [
        ("SNAS_mild", 5),
        ("SNAS_mild_edge_all", 5),
        ("SNAS_moderate", 2),
        ("SNAS_aggressive", 0),
        ("DARTS_V2", 5),
    ] {
        let (darts, snas) = (cifar_params(name, false), cifar_params(name, true));
        assert_eq!(snas - darts, extra(pools), "{name}: {darts} -> {snas}");
    }
    let mild = cifar_params("SNAS_mild", false);
    assert_eq!((mild + 500) / 1000, 2661, "§5.2: SNAS_mild is 2.661 M without pool BN");
    assert_eq!(cifar_params("SNAS_mild", true), mild + 2160, "+ ~2 k with SNAS's pool BN");
    // The edge_all form has the same parameters as the 8-entry form.
    assert_eq!(cifar_params("SNAS_mild_edge_all", true), cifar_params("SNAS_mild", true));
    // The default is DARTS's net.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = EvalNetConfig {
        in_channels: 3,
        num_classes: 10,
        init_channels: 36,
        layers: 20,
        auxiliary: false,
        stem_multiplier: 3,
    };
    EvalNetwork::new(&cfg, &builtin("DARTS_V2").unwrap(), vb).unwrap();
    assert_eq!(count_params(&varmap, None), 3_349_342);
}

#[test]
fn snas_pool_bn_runs_forward_in_both_modes() {
    let cfg = EvalNetConfig {
        in_channels: 1,
        num_classes: 3,
        init_channels: 4,
        layers: 3,
        auxiliary: false,
        stem_multiplier: 3,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = EvalNetwork::new_with(
        &cfg,
        &builtin("SNAS_mild_edge_all").unwrap(),
        &EvalOptions { pool_bn_affine: true },
        vb,
    )
    .unwrap();
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(1, 0)).unwrap();
    let x = input(2);
    for train in [true, false] {
        let (logits, _) = net.forward_t(&x, train, 0.0, &mut rng_for(1, 1)).unwrap();
        assert_eq!(logits.dims(), [2, 3]);
    }
}

#[test]
fn supernet_edge_drop_path_is_seeded_and_train_only() {
    let cfg = SearchNetConfig {
        in_channels: 1,
        num_classes: 3,
        init_channels: 4,
        layers: 2,
        steps: 2,
        multiplier: 2,
        stem_multiplier: 3,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = SearchNetwork::new(&cfg, &Primitive::DARTS, vb).unwrap();
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(1, 0)).unwrap();
    let x = input(4);
    let w = (Tensor::ones((5, 8), DType::F32, &Device::Cpu).unwrap() / 8.0).unwrap();
    let logits = |train: bool, prob: f32, seed: u64| -> Vec<Vec<f32>> {
        let mut rng = rng_for(seed, 3);
        let mut drop = EdgeDropPath { prob, rng: &mut rng };
        net.forward_drop_path(&x, &w, &w, train, Some(&mut drop))
            .unwrap()
            .to_vec2()
            .unwrap()
    };
    let plain_eval: Vec<Vec<f32>> = net.forward_t(&x, &w, &w, false).unwrap().to_vec2().unwrap();
    // Eval mode ignores drop path.
    assert_eq!(logits(false, 0.5, 1), plain_eval);
    // Train mode: the same seed gives the same masks, another seed others.
    assert_eq!(logits(true, 0.5, 1), logits(true, 0.5, 1));
    assert_ne!(logits(true, 0.5, 1), logits(true, 0.5, 2));
    // Probability 0 is the plain forward.
    let plain_train: Vec<Vec<f32>> = net.forward_t(&x, &w, &w, true).unwrap().to_vec2().unwrap();
    assert_eq!(logits(true, 0.0, 1), plain_train);
    // Out of range is an error, not a panic.
    let mut rng = rng_for(1, 3);
    let mut drop = EdgeDropPath { prob: 1.0, rng: &mut rng };
    assert!(net.forward_drop_path(&x, &w, &w, true, Some(&mut drop)).is_err());
}
