//! The DARTS supernet on tiny inputs: shapes, finite values, and gradients for
//! every trainable var and for both mixing-weight matrices.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model_search::{is_reduction, SearchNetConfig, SearchNetwork};
use nasflow_nas::params::trainable_vars;
use nasflow_nas::rng::rng_for;
use nasflow_ops::{init_pytorch_default, Primitive};
use rand::Rng as _;

fn tiny(in_channels: usize, layers: usize) -> SearchNetConfig {
    SearchNetConfig {
        in_channels,
        num_classes: 5,
        init_channels: 4,
        layers,
        steps: 4,
        multiplier: 4,
        stem_multiplier: 3,
    }
}

fn uniform(shape: &[usize], rng: &mut nasflow_nas::rng::Rng) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn build(cfg: &SearchNetConfig, primitives: &[Primitive]) -> (VarMap, SearchNetwork) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = SearchNetwork::new(cfg, primitives, vb).unwrap();
    init_pytorch_default(&varmap, &mut rng_for(0, 1)).unwrap();
    (varmap, net)
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}

/// One training step's forward + backward; checks every gradient.
fn check_forward_backward(in_channels: usize, side: usize, layers: usize) {
    let cfg = tiny(in_channels, layers);
    let (varmap, net) = build(&cfg, &Primitive::DARTS);
    let mut rng = rng_for(3, 0);
    let e = net.num_edges();
    assert_eq!(e, 14);
    let alpha_normal = Var::from_tensor(&(uniform(&[e, 8], &mut rng) * 1e-3).unwrap()).unwrap();
    let alpha_reduce = Var::from_tensor(&(uniform(&[e, 8], &mut rng) * 1e-3).unwrap()).unwrap();
    let wn = candle_nn::ops::softmax(alpha_normal.as_tensor(), D::Minus1).unwrap();
    let wr = candle_nn::ops::softmax(alpha_reduce.as_tensor(), D::Minus1).unwrap();

    let x = uniform(&[2, in_channels, side, side], &mut rng);
    let labels = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
    let logits = net.forward_t(&x, &wn, &wr, true).unwrap();
    assert_eq!(logits.dims(), &[2, 5]);
    assert!(all_finite(&logits));

    let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();
    let vars = trainable_vars(&varmap);
    assert!(!vars.is_empty());
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.dims(), var.dims(), "{name}");
        assert!(all_finite(g), "non-finite gradient for {name}");
    }
    for (name, alpha) in [
        ("alpha_normal", &alpha_normal),
        ("alpha_reduce", &alpha_reduce),
    ] {
        let g = grads
            .get(alpha.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.dims(), &[e, 8]);
        let v = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}");
        assert!(v.iter().any(|&x| x != 0.0), "{name} gradient is all zero");
    }

    // Eval mode (running stats) works on the same net and gives finite logits.
    let logits_eval = net.forward_t(&x, &wn, &wr, false).unwrap();
    assert_eq!(logits_eval.dims(), &[2, 5]);
    assert!(all_finite(&logits_eval));
}

#[test]
fn supernet_mnist_like_12x12_l3() {
    check_forward_backward(1, 12, 3);
}

#[test]
fn supernet_cifar_like_8x8_l5() {
    check_forward_backward(3, 8, 5);
}

#[test]
fn supernet_handles_28_14_7() {
    // MNIST resolution: two reductions give 28 -> 14 -> 7 (no backward, just shapes).
    let cfg = SearchNetConfig {
        init_channels: 2,
        ..tiny(1, 3)
    };
    let (_, net) = build(&cfg, &Primitive::DARTS);
    let w = Tensor::full(1.0f32 / 8.0, (14, 8), &Device::Cpu).unwrap();
    let x = uniform(&[2, 1, 28, 28], &mut rng_for(5, 0));
    let logits = net.forward_t(&x, &w, &w, true).unwrap();
    assert_eq!(logits.dims(), &[2, 5]);
    assert!(all_finite(&logits));
}

#[test]
fn mixing_weights_select_ops() {
    // With a one-hot weight on `none` for every edge, all nodes are zero, so the
    // network output is independent of the input: the classifier sees zeros.
    let cfg = tiny(1, 3);
    let (_, net) = build(&cfg, &Primitive::DARTS);
    let none_col = Primitive::DARTS
        .iter()
        .position(|&p| p == Primitive::None)
        .unwrap();
    let mut onehot = vec![0f32; 14 * 8];
    for e in 0..14 {
        onehot[e * 8 + none_col] = 1.0;
    }
    let w = Tensor::from_vec(onehot, (14, 8), &Device::Cpu).unwrap();
    let mut rng = rng_for(6, 0);
    let a = net
        .forward_t(&uniform(&[2, 1, 12, 12], &mut rng), &w, &w, true)
        .unwrap();
    let b = net
        .forward_t(&uniform(&[2, 1, 12, 12], &mut rng), &w, &w, true)
        .unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn reduction_positions_and_bad_inputs() {
    assert_eq!(
        (0..8).filter(|&i| is_reduction(i, 8)).collect::<Vec<_>>(),
        vec![2, 5]
    );
    assert_eq!(
        (0..20).filter(|&i| is_reduction(i, 20)).collect::<Vec<_>>(),
        vec![6, 13]
    );

    let (_, net) = build(&tiny(1, 3), &Primitive::DARTS);
    let x = uniform(&[2, 1, 12, 12], &mut rng_for(1, 0));
    let wrong = Tensor::zeros((14, 7), DType::F32, &Device::Cpu).unwrap();
    let right = Tensor::zeros((14, 8), DType::F32, &Device::Cpu).unwrap();
    let err = net
        .forward_t(&x, &wrong, &right, true)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("weights_normal") && err.contains("[14, 8]"),
        "{err}"
    );

    let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu);
    assert!(SearchNetwork::new(&tiny(1, 3), &[Primitive::None], vb.clone()).is_err());
    let bad = SearchNetConfig {
        multiplier: 5,
        ..tiny(1, 3)
    };
    assert!(SearchNetwork::new(&bad, &Primitive::DARTS, vb).is_err());
}

#[test]
fn subset_of_primitives_uses_its_own_columns() {
    // A 3-op space: weights have 3 columns and only those ops get vars.
    let ops = [
        Primitive::SkipConnect,
        Primitive::MaxPool3x3,
        Primitive::SepConv3x3,
    ];
    let (varmap, net) = build(&tiny(1, 3), &ops);
    let w = Tensor::full(1.0f32 / 3.0, (14, 3), &Device::Cpu).unwrap();
    let x = uniform(&[2, 1, 12, 12], &mut rng_for(2, 0));
    assert_eq!(net.forward_t(&x, &w, &w, true).unwrap().dims(), &[2, 5]);
    let names: Vec<String> = trainable_vars(&varmap)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.iter().any(|n| n.contains(".sep_conv_3x3.")));
    assert!(!names.iter().any(|n| n.contains("dil_conv")));
}

/// Timing probe (run with `--ignored --nocapture`): one forward+backward of
/// the supernet at batch 32, C=8, L=5 on 1x28x28.
#[test]
#[ignore]
fn time_supernet_step_b32_c8_l5_28x28() {
    let cfg = SearchNetConfig {
        init_channels: 8,
        layers: 5,
        num_classes: 10,
        ..tiny(1, 5)
    };
    let (_, net) = build(&cfg, &Primitive::DARTS);
    let mut rng = rng_for(4, 0);
    let alpha = Var::from_tensor(&(uniform(&[14, 8], &mut rng) * 1e-3).unwrap()).unwrap();
    let w = candle_nn::ops::softmax(alpha.as_tensor(), D::Minus1).unwrap();
    let x = uniform(&[32, 1, 28, 28], &mut rng);
    let labels = Tensor::from_vec((0..32u32).map(|i| i % 10).collect(), 32, &Device::Cpu).unwrap();
    for i in 0..3 {
        let t0 = std::time::Instant::now();
        let logits = net.forward_t(&x, &w, &w, true).unwrap();
        let t1 = std::time::Instant::now();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        let _grads = loss.backward().unwrap();
        let t2 = std::time::Instant::now();
        println!(
            "iter {i}: forward {:.3}s backward {:.3}s total {:.3}s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t2 - t0).as_secs_f64()
        );
    }
}
