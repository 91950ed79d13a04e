//! The switch-Hessian estimators against exact second derivatives.
//!
//! 1. A tiny smooth network (switch-gated linear layer + softmax CE), whose
//!    Hessian diagonal has a closed form: both estimators must match it.
//! 2. The tiny one-shot supernet (C=2, 3 cells, 8×8 images): ReLU and max-pool
//!    kinks make its loss only piecewise smooth (no closed form; finite
//!    differences there measure curvature smoothed over ±eps): the estimate
//!    must be finite and leave switches and BN statistics as it found them.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::bayesnas::hessian::{exact_diag, hutchinson_diag};
use nasflow_nas::bayesnas::network::BayesNetConfig;
use nasflow_nas::bayesnas::search::{switch_hessian, HessianMethod};
use nasflow_nas::bayesnas::supernet::Supernet;
use nasflow_nas::rng::rng_for;

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let n = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    n(&mut a.iter().zip(b).map(|(x, y)| (x - y) as f64)) / n(&mut b.iter().map(|&y| y as f64))
}

#[test]
fn estimators_match_the_closed_form_on_a_smooth_gated_network() {
    // logits_b = F_b s (B=5 samples, K=3 classes, n=6 switches), L = Σ_b CE
    let (b, k, n) = (5usize, 3usize, 6usize);
    let f: Vec<f32> = (0..b * k * n).map(|i| ((i * 37 % 23) as f32 / 23.0 - 0.5) * 2.0).collect();
    let labels = [0u32, 2, 1, 1, 0];
    let ft = Tensor::from_vec(f.clone(), (b, k, n), &Device::Cpu).unwrap();
    let yt = Tensor::new(&labels, &Device::Cpu).unwrap();
    let s = Var::ones(n, DType::F32, &Device::Cpu).unwrap();
    let s0: Vec<f32> = (0..n).map(|i| 0.5 + 0.2 * i as f32).collect();
    let mut grad = |v: &[f32]| -> anyhow::Result<Vec<f32>> {
        s.set(&Tensor::from_slice(v, n, &Device::Cpu)?)?;
        let z = ft.matmul(&s.as_tensor().reshape((1, n, 1))?.broadcast_as((b, n, 1))?.contiguous()?)?.reshape((b, k))?;
        let loss = (candle_nn::loss::cross_entropy(&z, &yt)? * b as f64)?;
        Ok(loss.backward()?.get(s.as_tensor()).unwrap().to_vec1::<f32>()?)
    };
    // closed form: diag_i = Σ_b Σ_kl F[b,k,i] (diag p_b − p_b p_bᵀ)_kl F[b,l,i]
    let mut want = vec![0f64; n];
    for bi in 0..b {
        let z: Vec<f64> = (0..k).map(|ki| (0..n).map(|i| f[(bi * k + ki) * n + i] as f64 * s0[i] as f64).sum()).collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
        for i in 0..n {
            for ka in 0..k {
                for kb in 0..k {
                    let a = if ka == kb { p[ka] } else { 0.0 } - p[ka] * p[kb];
                    want[i] += f[(bi * k + ka) * n + i] as f64 * a * f[(bi * k + kb) * n + i] as f64;
                }
            }
        }
    }
    let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    let exact = exact_diag(&mut grad, &s0, 1e-2).unwrap();
    assert!(rel_err(&exact, &want) < 1e-2, "coordinate {exact:?} vs closed form {want:?}");
    let hutch = hutchinson_diag(&mut grad, &s0, 4000, 1e-2, &mut rng_for(1, 0)).unwrap();
    let r = rel_err(&hutch, &want);
    assert!(r < 0.1, "Hutchinson {hutch:?} vs closed form {want:?}: {r}");
}

fn setup() -> (Supernet, VarMap, Tensor, Tensor) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = BayesNetConfig { in_channels: 3, num_classes: 3, init_channels: 2, layers: 3 };
    let net = Supernet::new(&cfg, vb).unwrap();
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(3, 0)).unwrap();
    let s: Vec<f32> = (0..net.switch_values().unwrap().len()).map(|i| 0.6 + 0.05 * (i % 9) as f32).collect();
    net.set_switch_values(&s).unwrap();
    let x = Tensor::from_vec((0..6 * 3 * 64).map(|i| ((i * 29 % 31) as f32 / 31.0 - 0.5) * 3.0).collect(), (6, 3, 8, 8), &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &Device::Cpu).unwrap();
    (net, varmap, x, y)
}

#[test]
fn supernet_switch_hessian_restores_state() {
    let (net, varmap, x, y) = setup();
    let s0 = net.switch_values().unwrap();
    let logits_before = net.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let eps = 0.05f32;
    let mut rng = rng_for(0, 0);
    let h = switch_hessian(&net, &varmap, &x, &y, HessianMethod::Hutchinson, 4, eps, &mut rng).unwrap();
    assert_eq!(net.switch_values().unwrap(), s0, "the estimator must restore the switches");
    // eval-mode output depends on the BN running statistics: restored too
    let logits_after = net.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(logits_before, logits_after, "the estimator must restore the BN running statistics");
    assert_eq!(h.len(), 3 * 64);
    assert!(h.iter().all(|v| v.is_finite()));
    assert!(h.iter().any(|v| v.abs() > 1e-3), "degenerate: Hessian ~0");
}
