//! Optimiser maths against hand-computed PyTorch values (plain-Python
//! re-computation of torch.optim.SGD / Adam / clip_grad_norm_ formulas).

use candle_core::{Device, Tensor, Var};
use nasflow_nas::train::optim::{clip_grad_norm, cosine_lr, Adam, Sgd};

fn var(values: &[f32]) -> Var {
    Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
}

/// A loss whose gradient w.r.t. `w` is exactly `g`: sum(w * g).
fn grads_equal_to(w: &Var, g: &[f32]) -> candle_core::backprop::GradStore {
    let g = Tensor::new(g, &Device::Cpu).unwrap();
    (w.as_tensor() * g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor().to_vec1().unwrap()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

const G1: [f32; 2] = [0.5, 0.25];
const G2: [f32; 2] = [-1.0, 2.0];

#[test]
fn sgd_two_steps_with_momentum_and_weight_decay() {
    let w = var(&[1.0, -2.0]);
    let untouched = var(&[3.0]);
    let mut sgd = Sgd::new(
        vec![("a".into(), w.clone()), ("b".into(), untouched.clone())],
        0.1,
        0.9,
        0.01,
    );
    sgd.step(&grads_equal_to(&w, &G1)).unwrap();
    // d = g + wd·w = [0.51, 0.23]; first buf = d; w -= 0.1·d
    assert_close(&values(&w), &[0.949, -2.023], 1e-6);
    sgd.step(&grads_equal_to(&w, &G2)).unwrap();
    assert_close(&values(&w), &[1.002151, -2.241677], 1e-6);
    assert_close(
        &sgd.momentum_buffer("a").unwrap().to_vec1::<f32>().unwrap(),
        &[-0.53151, 2.18677],
        1e-6,
    );
    // A var without a gradient is skipped and gets no buffer, as in PyTorch.
    assert_eq!(values(&untouched), vec![3.0]);
    assert!(sgd.momentum_buffer("b").is_none());
}

#[test]
fn adam_two_steps_with_coupled_weight_decay() {
    let w = var(&[1.0, -2.0]);
    let mut adam = Adam::new(vec![("a".into(), w.clone())], 0.1, (0.9, 0.999), 1e-8, 0.01);
    adam.step(&grads_equal_to(&w, &G1)).unwrap();
    // The first bias-corrected Adam step moves each element by ~lr against the sign of g.
    assert_close(&values(&w), &[0.9, -2.1], 1e-5);
    adam.step(&grads_equal_to(&w, &G2)).unwrap();
    assert_close(
        &values(&w),
        &[0.9355236415321513, -2.1816482003071522],
        1e-5,
    );
}

#[test]
fn optimiser_state_round_trip_continues_identically() {
    let w = var(&[1.0, -2.0]);
    let mut sgd = Sgd::new(vec![("a".into(), w.clone())], 0.1, 0.9, 0.01);
    let mut adam_w = var(&[0.5, 0.5]);
    let mut adam = Adam::new(
        vec![("a".into(), adam_w.clone())],
        0.1,
        (0.5, 0.999),
        1e-8,
        1e-3,
    );
    sgd.step(&grads_equal_to(&w, &G1)).unwrap();
    adam.step(&grads_equal_to(&adam_w, &G1)).unwrap();

    // Copies of the variables, with fresh optimisers loaded from the state.
    let w2 = var(&values(&w));
    let mut sgd2 = Sgd::new(vec![("a".into(), w2.clone())], 0.1, 0.9, 0.01);
    sgd2.load_state(&sgd.state()).unwrap();
    let adam_w2 = var(&values(&adam_w));
    let mut adam2 = Adam::new(
        vec![("a".into(), adam_w2.clone())],
        0.1,
        (0.5, 0.999),
        1e-8,
        1e-3,
    );
    adam2.load_state(&adam.state()).unwrap();

    sgd.step(&grads_equal_to(&w, &G2)).unwrap();
    sgd2.step(&grads_equal_to(&w2, &G2)).unwrap();
    assert_eq!(values(&w), values(&w2));
    adam.step(&grads_equal_to(&adam_w, &G2)).unwrap();
    adam2.step(&grads_equal_to(&adam_w2, &G2)).unwrap();
    assert_eq!(values(&adam_w), values(&adam_w2));
    adam_w = adam_w2;
    assert_eq!(adam_w.as_tensor().dims(), &[2]);

    // State for a var the optimiser does not have is refused.
    let mut other = Sgd::new(vec![("z".into(), var(&[0.0, 0.0]))], 0.1, 0.9, 0.0);
    assert!(other.load_state(&sgd.state()).is_err());
}

#[test]
fn clip_grad_norm_scales_to_max_norm() {
    let a = var(&[1.0, 1.0]);
    let b = var(&[1.0]);
    let loss = ((a.as_tensor() * Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        + (b.as_tensor() * 12.0).unwrap().sum_all().unwrap())
    .unwrap();
    let mut grads = loss.backward().unwrap();
    let vars = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    let norm = clip_grad_norm(&mut grads, &vars, 6.5).unwrap();
    assert!((norm - 13.0).abs() < 1e-6);
    let coef = 6.5 / (13.0 + 1e-6);
    let ga: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
    let gb: Vec<f32> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
    assert_close(&ga, &[3.0 * coef, 4.0 * coef], 1e-6);
    assert_close(&gb, &[12.0 * coef], 1e-6);

    // Below the threshold nothing changes.
    let norm = clip_grad_norm(&mut grads, &vars, 100.0).unwrap();
    assert!((norm - 6.5).abs() < 1e-5);
    assert_close(
        &grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
        &[12.0 * coef],
        1e-6,
    );
}

#[test]
fn cosine_schedule_matches_pytorch() {
    let want = [
        (0, 0.025),
        (1, 0.02497632074113926),
        (25, 0.013),
        (49, 0.0010236792588607412),
        (50, 0.001),
    ];
    for (epoch, lr) in want {
        assert!(
            (cosine_lr(0.025, 0.001, epoch, 50) - lr).abs() < 1e-12,
            "epoch {epoch}"
        );
    }
}
