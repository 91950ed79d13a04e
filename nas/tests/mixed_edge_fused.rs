//! The fused training forward of a mixed edge (one autograd node whose backward runs the
//! candidates' kernels on nasflow-ops' own tape) against candle's own graph of the same ops:
//! same output, same gradients for x, for the mixing weights and for every op weight, for all
//! eight DARTS ops at stride 1 and 2 (FactorizedReduce), and for a subset without weights.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model_search::MixedOp;
use nasflow_nas::rng::rng_for;
use nasflow_ops::{init_pytorch_default, Primitive};
mod common;
use common::{max_rel_diff, uniform};

struct Run {
    y: Tensor,
    gx: Tensor,
    gw: Tensor,
    gvars: Vec<(String, Tensor)>,
}

fn run(edge: &MixedOp, vm: &VarMap, x: &Var, w: &Var, r: &Tensor) -> Run {
    let y = edge.forward_t(x.as_tensor(), w.as_tensor(), true).unwrap();
    // a random projection, so every output element's gradient differs
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut gvars: Vec<(String, Tensor)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| !name.contains("running"))
        .map(|(name, v)| (name.clone(), grads.get(v.as_tensor()).cloned().unwrap_or_else(|| panic!("no gradient for {name}"))))
        .collect();
    gvars.sort_by(|a, b| a.0.cmp(&b.0));
    Run { y, gx: grads.get(x.as_tensor()).unwrap().clone(), gw: grads.get(w.as_tensor()).unwrap().clone(), gvars }
}

fn check(primitives: &[Primitive], stride: usize, hw: usize) {
    let mut rng = rng_for(7, stride as u64);
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let (b, c) = (3, 4);
    let mut edge = MixedOp::new(primitives, c, stride, vb).unwrap();
    init_pytorch_default(&vm, &mut rng).unwrap();
    let x = Var::from_tensor(&uniform(&[b, c, hw, hw], &mut rng)).unwrap();
    let w = Var::from_tensor(&uniform(&[primitives.len()], &mut rng)).unwrap();
    let ho = hw.div_ceil(stride);
    let r = uniform(&[b, c, ho, ho], &mut rng);

    let fused = run(&edge, &vm, &x, &w, &r);
    edge.set_fused(false);
    let plain = run(&edge, &vm, &x, &w, &r);

    let what = format!("{primitives:?} stride {stride} {hw}x{hw}");
    assert!(max_rel_diff(&fused.y, &plain.y) < 1e-5, "{what}: outputs differ");
    assert!(max_rel_diff(&fused.gx, &plain.gx) < 1e-4, "{what}: dx differs by {}", max_rel_diff(&fused.gx, &plain.gx));
    assert!(max_rel_diff(&fused.gw, &plain.gw) < 1e-4, "{what}: dw differs: {} vs {}", fused.gw, plain.gw);
    assert_eq!(fused.gvars.len(), plain.gvars.len());
    assert!(!fused.gvars.is_empty() || primitives.iter().all(|p| matches!(p, Primitive::None | Primitive::MaxPool3x3 | Primitive::AvgPool3x3 | Primitive::SkipConnect)));
    for ((name, a), (_, p)) in fused.gvars.iter().zip(&plain.gvars) {
        let d = max_rel_diff(a, p);
        assert!(d < 1e-4, "{what}: gradient of {name} differs by {d}");
        assert!(a.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{what}: gradient of {name} is all zero");
    }
}

#[test]
fn all_darts_ops_stride_1() {
    check(&Primitive::DARTS, 1, 8);
}

#[test]
fn all_darts_ops_stride_2() {
    check(&Primitive::DARTS, 2, 8);
    check(&Primitive::DARTS, 2, 6);
}

#[test]
fn ops_without_weights() {
    // pools and identity only: the fused node has no op weights to pass on
    check(&[Primitive::None, Primitive::MaxPool3x3, Primitive::AvgPool3x3, Primitive::SkipConnect], 1, 6);
}

#[test]
fn sep_conv_7x7_too() {
    check(&[Primitive::SepConv7x7, Primitive::SkipConnect], 1, 8);
}

/// The whole supernet with fused cells against candle's graph: logits, running statistics,
/// and the gradients of every weight and of both α matrices (through softmax), with and without
/// SNAS's per-edge drop path (same seeded masks).
fn check_network(drop_prob: f32) {
    use nasflow_nas::darts::model_search::{EdgeDropPath, SearchNetConfig, SearchNetwork};
    let cfg = SearchNetConfig { in_channels: 1, num_classes: 5, init_channels: 4, layers: 3, steps: 4, multiplier: 4, stem_multiplier: 3 };
    let mut rng = rng_for(3, 3);
    let x = uniform(&[3, 1, 12, 12], &mut rng);
    let an = uniform(&[14, 8], &mut rng);
    let ar = uniform(&[14, 8], &mut rng);
    let run = |fused: bool| {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mut net = SearchNetwork::new(&cfg, &Primitive::DARTS, vb).unwrap();
        net.set_fused(fused);
        init_pytorch_default(&vm, &mut rng_for(0, 1)).unwrap();
        let (an, ar) = (Var::from_tensor(&an).unwrap(), Var::from_tensor(&ar).unwrap());
        let wn = candle_nn::ops::softmax(an.as_tensor(), candle_core::D::Minus1).unwrap();
        let wr = candle_nn::ops::softmax(ar.as_tensor(), candle_core::D::Minus1).unwrap();
        let mut drop_rng = rng_for(5, 5);
        let mut drop = EdgeDropPath { prob: drop_prob, rng: &mut drop_rng };
        let logits = net.forward_drop_path(&x, &wn, &wr, true, (drop_prob > 0.0).then_some(&mut drop)).unwrap();
        let r = uniform(logits.dims(), &mut rng_for(9, 9));
        let grads = (&logits * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![("logits".to_string(), logits.clone())];
        out.push(("grad alpha_normal".into(), grads.get(an.as_tensor()).unwrap().clone()));
        out.push(("grad alpha_reduce".into(), grads.get(ar.as_tensor()).unwrap().clone()));
        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let t = data[name].as_tensor();
            if name.contains("running") {
                out.push((name.clone(), t.copy().unwrap()));
            } else {
                let g = grads.get(t).unwrap_or_else(|| panic!("no gradient for {name}"));
                out.push((format!("grad {name}"), g.clone()));
            }
        }
        out
    };
    let (fused, plain) = (run(true), run(false));
    assert_eq!(fused.len(), plain.len());
    for ((name, a), (_, p)) in fused.iter().zip(&plain) {
        let d = max_rel_diff(a, p);
        assert!(d < 2e-4, "supernet (drop path {drop_prob}): {name} differs by {d}");
    }
}

#[test]
fn whole_supernet_darts() {
    check_network(0.0);
}

#[test]
fn whole_supernet_snas_drop_path() {
    check_network(0.3);
}
