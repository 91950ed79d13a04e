//! SNAS's resource constraint (spec §3.6) and sampling (§3.3): cost tables
//! against hand-computed values, the three estimators' gradients against
//! finite differences, the Concrete density, the temperature schedule.

use candle_core::{Device, Tensor, Var};
use nasflow_nas::rng::rng_for;
use nasflow_nas::snas::gumbel::{gumbel_noise, relaxed_sample};
use nasflow_nas::snas::{
    cell_costs, concrete_log_density, network_costs, CellCosts, Estimator, Penalty,
    ResourceConfig, ResourceModel, Temperature,
};
use nasflow_ops::Primitive;

const OPS: [Primitive; 8] = Primitive::DARTS;

fn row(c: &CellCosts, e: usize) -> Vec<(f64, f64, f64)> {
    (0..8).map(|k| (c.size[e][k], c.flops[e][k], c.mac[e][k])).collect()
}

#[test]
fn normal_cell_costs_match_hand_computed_values() {
    // C = 4, side 8 (y² = 64), stride 1 everywhere.
    let c = cell_costs(&OPS, 4, 4, 8, false).unwrap();
    assert_eq!(c.size.len(), 14);
    #[rustfmt::skip]
    let expected = vec![
        (0.0, 0.0, 0.0),            // none
        (0.0, 2304.0, 512.0),       // max pool: 9·C·y², 2·C·y²
        (0.0, 2304.0, 512.0),       // avg pool
        (0.0, 0.0, 512.0),          // identity: 2·C·y²
        (104.0, 6656.0, 2152.0),    // sep 3x3: 2·4·9 + 2·16; y²·8C + size
        (232.0, 14848.0, 2280.0),   // sep 5x5
        (52.0, 3328.0, 1076.0),     // dil 3x3: 36 + 16; y²·4C + size
        (116.0, 7424.0, 1140.0),    // dil 5x5
    ];
    for e in 0..14 {
        assert_eq!(row(&c, e), expected, "edge {e}");
    }
}

#[test]
fn reduction_cell_costs_match_hand_computed_values() {
    // C = 8, inputs of side 8: output side 4 (y² = 16); edges 0, 1 (from the
    // cell inputs) have stride 2, edge 4 (from node 0) stride 1.
    let c = cell_costs(&OPS, 4, 8, 8, true).unwrap();
    #[rustfmt::skip]
    let stride2 = vec![
        (0.0, 0.0, 0.0),
        (0.0, 1152.0, 640.0),       // pool: 9·8·16, 5·8·16
        (0.0, 1152.0, 640.0),
        (64.0, 1024.0, 1216.0),     // factorized reduce: C², C²y², 2y²(4C + C/2) + C²
        (272.0, 4352.0, 1680.0),    // sep 3x3: 144 + 128; y²·11C + size
        (528.0, 8448.0, 1936.0),    // sep 5x5: 400 + 128
        (136.0, 2176.0, 1032.0),    // dil 3x3: 72 + 64; y²·7C + size
        (264.0, 4224.0, 1160.0),    // dil 5x5
    ];
    assert_eq!(row(&c, 0), stride2);
    assert_eq!(row(&c, 1), stride2);
    #[rustfmt::skip]
    let stride1 = vec![
        (0.0, 0.0, 0.0),
        (0.0, 1152.0, 256.0),
        (0.0, 1152.0, 256.0),
        (0.0, 0.0, 256.0),
        (272.0, 4352.0, 1296.0),
        (528.0, 8448.0, 1552.0),
        (136.0, 2176.0, 648.0),
        (264.0, 4224.0, 776.0),     // dil 5x5: y²·4C + size
    ];
    assert_eq!(row(&c, 4), stride1);
}

#[test]
fn network_costs_follow_the_macro_architecture() {
    // L = 8, C = 16, CIFAR: reductions at cells 2 and 5 (C 32 and 64).
    let cells = network_costs(&OPS, 4, 8, 16, 32).unwrap();
    let reductions: Vec<usize> = (0..8).filter(|&i| cells[i].reduction).collect();
    assert_eq!(reductions, vec![2, 5]);
    // sep 3x3 size = 2Ck² + 2C² with the cell's C; flops scale with the side².
    assert_eq!(cells[0].size[0][4], 2.0 * 16.0 * 9.0 + 2.0 * 256.0);
    assert_eq!(cells[0].flops[0][4], cells[0].size[0][4] * 1024.0);
    assert_eq!(cells[3].flops[0][4], cells[3].size[0][4] * 256.0);
    assert_eq!(cells[5].flops[0][4], cells[5].size[0][4] * 64.0);
    assert_eq!(cells[7].size[0][4], 2.0 * 64.0 * 9.0 + 2.0 * 64.0 * 64.0);
}

/// A tiny two-cell model: steps = 1 (2 edges), one normal and one reduction cell.
fn tiny_model() -> ResourceModel {
    let cells = vec![
        cell_costs(&OPS, 1, 2, 4, false).unwrap(),
        cell_costs(&OPS, 1, 4, 4, true).unwrap(),
    ];
    ResourceModel::new(&cells, &Device::Cpu).unwrap()
}

fn log_alphas() -> [Var; 2] {
    let mut rng = rng_for(3, 0);
    let mut make = || {
        let noise = gumbel_noise(&mut rng, 2, 8, &Device::Cpu).unwrap();
        Var::from_tensor(&(noise * 0.5).unwrap()).unwrap()
    };
    [make(), make()]
}

/// Autograd gradient of `f` at the two logit matrices vs central differences.
fn check_gradient(f: impl Fn(&[Tensor; 2]) -> Tensor, alphas: &[Var; 2], what: &str) {
    let value = f(&[alphas[0].as_tensor().clone(), alphas[1].as_tensor().clone()]);
    let grads = value.backward().unwrap();
    let eps = 1e-2f32;
    for t in 0..2 {
        let g: Vec<Vec<f32>> = grads.get(alphas[t].as_tensor()).unwrap().to_vec2().unwrap();
        let base: Vec<Vec<f32>> = alphas[t].as_tensor().to_vec2().unwrap();
        for e in 0..2 {
            for k in 0..8 {
                let eval = |delta: f32| -> f64 {
                    let mut m = base.clone();
                    m[e][k] += delta;
                    let moved = Tensor::new(m, &Device::Cpu).unwrap();
                    let other = alphas[1 - t].as_tensor().detach();
                    let pair = if t == 0 { [moved, other] } else { [other, moved] };
                    f(&pair).to_scalar::<f32>().unwrap() as f64
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps as f64);
                let ad = g[e][k] as f64;
                let tol = 2e-3 + 2e-2 * fd.abs().max(ad.abs());
                assert!((fd - ad).abs() <= tol, "{what}: cell type {t}, edge {e}, op {k}: autograd {ad} vs finite difference {fd}");
            }
        }
    }
}

fn config(estimator: Estimator, penalty: Penalty) -> ResourceConfig {
    ResourceConfig { lambda: 1.0, estimator, penalty, minus_baseline: false, reduce_ratio: 1.0 }
}

#[test]
fn reparametrization_gradient_matches_finite_differences() {
    let model = tiny_model();
    let alphas = log_alphas();
    let mut rng = rng_for(4, 0);
    let noise = [
        gumbel_noise(&mut rng, 2, 8, &Device::Cpu).unwrap(),
        gumbel_noise(&mut rng, 2, 8, &Device::Cpu).unwrap(),
    ];
    let temp = 0.7;
    for penalty in [Penalty::Linear, Penalty::Log] {
        let cfg = config(Estimator::Reparametrization, penalty);
        let f = |a: &[Tensor; 2]| {
            let z0 = relaxed_sample(&a[0], &noise[0], temp).unwrap();
            let z1 = relaxed_sample(&a[1], &noise[1], temp).unwrap();
            model.penalty(&cfg, [&z0, &z1], [&a[0], &a[1]], temp).unwrap()
        };
        check_gradient(f, &alphas, &format!("reparametrization {penalty:?}"));
    }
}

#[test]
#[allow(clippy::needless_range_loop)]
fn discrete_gradient_matches_finite_differences() {
    let model = tiny_model();
    let alphas = log_alphas();
    // The sample must not matter: pass one without any dependence on alpha.
    let z = Tensor::ones((2, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    for penalty in [Penalty::Linear, Penalty::Log] {
        let cfg = config(Estimator::Discrete, penalty);
        let f = |a: &[Tensor; 2]| model.penalty(&cfg, [&z, &z], [&a[0], &a[1]], 1.0).unwrap();
        check_gradient(f, &alphas, &format!("discrete {penalty:?}"));
    }
    // Discrete penalty = penalty of the exact probabilities (hand check, linear, normal cell only).
    let a = alphas[0].as_tensor();
    let p = candle_nn::ops::softmax(a, 1).unwrap();
    let cfg = config(Estimator::Discrete, Penalty::Linear);
    let single = ResourceModel::new(&[cell_costs(&OPS, 1, 2, 4, false).unwrap()], &Device::Cpu).unwrap();
    let got = single.penalty(&cfg, [&z, &z], [a, a], 1.0).unwrap().to_scalar::<f32>().unwrap() as f64;
    let c = cell_costs(&OPS, 1, 2, 4, false).unwrap();
    let p: Vec<Vec<f32>> = p.to_vec2().unwrap();
    let mut want = 0.0;
    for e in 0..2 {
        for k in 0..8 {
            want += p[e][k] as f64 * 0.43 * (2.0 * c.size[e][k] + c.flops[e][k] / 4000.0 + c.mac[e][k] / 100.0);
        }
    }
    assert!((got - want).abs() < 1e-4 * want, "discrete linear penalty {got} vs hand {want}");
}

#[test]
fn policy_gradient_matches_finite_differences_of_the_score_term() {
    let model = tiny_model();
    let alphas = log_alphas();
    let mut rng = rng_for(5, 0);
    let temp = 0.5;
    let z: Vec<Tensor> = alphas
        .iter()
        .map(|a| {
            let g = gumbel_noise(&mut rng, 2, 8, &Device::Cpu).unwrap();
            relaxed_sample(a.as_tensor(), &g, temp).unwrap().detach()
        })
        .collect();
    for (penalty, baseline) in [(Penalty::Linear, false), (Penalty::Log, false), (Penalty::Log, true)] {
        let cfg = ResourceConfig { minus_baseline: baseline, ..config(Estimator::PolicyGradient, penalty) };
        let f = |a: &[Tensor; 2]| model.penalty(&cfg, [&z[0], &z[1]], [&a[0], &a[1]], temp).unwrap();
        check_gradient(f, &alphas, &format!("policy gradient {penalty:?} baseline {baseline}"));
    }
}

#[test]
fn concrete_density_integrates_to_one_for_two_categories() {
    // With n = 2, z = (u, 1 - u); the density of u is q(z) on (0, 1).
    let (la, temp) = ([0.3f32, -0.4f32], 0.8);
    let steps = 20000;
    let mut us = Vec::with_capacity(steps * 2);
    for i in 0..steps {
        let u = (i as f32 + 0.5) / steps as f32;
        us.extend([u, 1.0 - u]);
    }
    let z = Tensor::from_vec(us, (steps, 2), &Device::Cpu).unwrap();
    let a = Tensor::new(&la, &Device::Cpu).unwrap().broadcast_as((steps, 2)).unwrap().contiguous().unwrap();
    let logq: Vec<f32> = concrete_log_density(&z, &a, temp).unwrap().to_vec1().unwrap();
    let integral: f64 = logq.iter().map(|&l| (l as f64).exp() / steps as f64).sum();
    assert!((integral - 1.0).abs() < 2e-2, "integral of the Concrete density is {integral}");
}

#[test]
fn temperature_schedule_is_linear_over_the_horizon() {
    let t = Temperature::default();
    // The code: epoch e uses λ(e+1), horizon 150, 1 → 0.03.
    assert!((t.for_epoch(0) - (1.0 - (1.0 / 150.0) * 0.97)).abs() < 1e-12);
    assert!((t.for_epoch(149) - 0.03).abs() < 1e-12);
    assert_eq!(t.for_epoch(400), 0.03);
    let paper = Temperature { step_at_start: false, horizon: 10, ..t };
    assert_eq!(paper.for_epoch(0), 1.0);
    assert!((paper.for_epoch(5) - 0.515).abs() < 1e-12);
    assert!(Temperature { minimum: 0.0, ..t }.validate().is_err());
}

#[test]
fn gumbel_samples_are_seeded_distributions() {
    let a = Tensor::zeros((14, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let draw = |seed| {
        let g = gumbel_noise(&mut rng_for(seed, 9), 14, 8, &Device::Cpu).unwrap();
        relaxed_sample(&a, &g, 0.5).unwrap().to_vec2::<f32>().unwrap()
    };
    let (x, y) = (draw(1), draw(1));
    assert_eq!(x, y);
    assert_ne!(x, draw(2));
    for r in &x {
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(r.iter().all(|v| *v >= 0.0));
    }
}
