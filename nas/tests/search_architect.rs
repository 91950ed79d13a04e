//! The DARTS second-order architecture gradient against a direct computation:
//! central finite differences of the unrolled validation loss
//! f(α) = L_val(w − η(μ·buf + ∇_w L_tr(w, α) + λ·w), α), on a tiny smooth
//! network in f64.

use candle_core::{Device, Tensor, Var, D};
use nasflow_nas::darts::architect::{first_order, second_order, Batch, MixedNet, NetVars};
use nasflow_nas::train::optim::Sgd;
use rand::{Rng, SeedableRng};

const IN: usize = 3;
const HIDDEN: usize = 4;
const CLASSES: usize = 3;
const OPS: usize = 3;

/// x → tanh(x·W1) → edge 0 (normal row 0) → edge 1 (normal row 1) → edge 2
/// (reduce row 0) → ·W2. Each edge mixes three ops: tanh(h·A_e), h ⊙ s_e, h.
struct Tiny {
    w1: Var,
    w2: Var,
    a: Vec<Var>,
    s: Vec<Var>,
}

impl Tiny {
    fn edge(&self, e: usize, h: &Tensor, mix_row: &Tensor) -> candle_core::Result<Tensor> {
        let ops = [
            h.matmul(self.a[e].as_tensor())?.tanh()?,
            h.broadcast_mul(self.s[e].as_tensor())?,
            h.clone(),
        ];
        let mut out = h.zeros_like()?;
        for (k, o) in ops.iter().enumerate() {
            out = (out + o.broadcast_mul(&mix_row.narrow(0, k, 1)?)?)?;
        }
        Ok(out)
    }

    fn weights(&self) -> Vec<(String, Var)> {
        let mut v = vec![
            ("w1".to_string(), self.w1.clone()),
            ("w2".to_string(), self.w2.clone()),
        ];
        for e in 0..3 {
            v.push((format!("a{e}"), self.a[e].clone()));
            v.push((format!("s{e}"), self.s[e].clone()));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl MixedNet for Tiny {
    fn logits(
        &self,
        x: &Tensor,
        normal: &Tensor,
        reduce: &Tensor,
        _train: bool,
    ) -> candle_core::Result<Tensor> {
        let h = x.matmul(self.w1.as_tensor())?.tanh()?;
        let h = self.edge(0, &h, &normal.get(0)?)?;
        let h = self.edge(1, &h, &normal.get(1)?)?;
        let h = self.edge(2, &h, &reduce.get(0)?)?;
        h.matmul(self.w2.as_tensor())
    }
}

fn randn(rng: &mut impl Rng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn var(t: Tensor) -> Var {
    Var::from_tensor(&t).unwrap()
}

fn ce(net: &Tiny, alphas: &[Var; 2], x: &Tensor, y: &Tensor) -> Tensor {
    let n = candle_nn::ops::softmax(alphas[0].as_tensor(), D::Minus1).unwrap();
    let r = candle_nn::ops::softmax(alphas[1].as_tensor(), D::Minus1).unwrap();
    candle_nn::loss::cross_entropy(&net.logits(x, &n, &r, true).unwrap(), y).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn second_order_gradient_matches_finite_differences_of_unrolled_loss() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let net = Tiny {
        w1: var(randn(&mut rng, &[IN, HIDDEN], 0.8)),
        w2: var(randn(&mut rng, &[HIDDEN, CLASSES], 0.8)),
        a: (0..3)
            .map(|_| var(randn(&mut rng, &[HIDDEN, HIDDEN], 0.8)))
            .collect(),
        s: (0..3)
            .map(|_| var(randn(&mut rng, &[HIDDEN], 1.0)))
            .collect(),
    };
    let alphas = [
        var(randn(&mut rng, &[2, OPS], 0.5)),
        var(randn(&mut rng, &[1, OPS], 0.5)),
    ];
    let xt = randn(&mut rng, &[6, IN], 1.0);
    let yt = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &Device::Cpu).unwrap();
    let xv = randn(&mut rng, &[5, IN], 1.0);
    let yv = Tensor::new(&[2u32, 1, 0, 0, 2], &Device::Cpu).unwrap();

    let weights = net.weights();
    let (lr, mu, wd) = (0.5, 0.9, 0.01);
    let mut sgd = Sgd::new(weights.clone(), lr, mu, wd);
    // One real weight step so that the momentum buffers are non-zero.
    sgd.step(&ce(&net, &alphas, &xt, &yt).backward().unwrap())
        .unwrap();

    let netvars = NetVars {
        net: &net,
        weights: &weights,
        buffers: &[],
    };
    let before: Vec<Vec<f64>> = weights.iter().map(|(_, w)| f64s(w.as_tensor())).collect();
    let (grads, _) = second_order(
        &netvars,
        &alphas,
        Batch { x: &xt, y: &yt },
        Batch { x: &xv, y: &yv },
        &sgd,
    )
    .unwrap();
    let after: Vec<Vec<f64>> = weights.iter().map(|(_, w)| f64s(w.as_tensor())).collect();
    assert_eq!(before, after, "weights must be restored exactly");

    // Direct computation of f(α), independent of the architect code.
    let unrolled_loss = |alphas: &[Var; 2]| -> f64 {
        let g = ce(&net, alphas, &xt, &yt).backward().unwrap();
        let saved: Vec<Tensor> = weights
            .iter()
            .map(|(_, w)| w.as_tensor().copy().unwrap())
            .collect();
        for (name, w) in &weights {
            let buf = sgd.momentum_buffer(name).unwrap();
            let d = ((buf * mu).unwrap() + g.get(w.as_tensor()).unwrap()).unwrap();
            let d = (d + (w.as_tensor() * wd).unwrap()).unwrap();
            w.set(&(w.as_tensor() - (d * lr).unwrap()).unwrap())
                .unwrap();
        }
        let value = ce(&net, alphas, &xv, &yv).to_scalar::<f64>().unwrap();
        for ((_, w), s) in weights.iter().zip(&saved) {
            w.set(s).unwrap();
        }
        value
    };
    let h = 1e-5;
    let mut max_err: f64 = 0.0;
    let mut max_ref: f64 = 0.0;
    let mut max_first_order_err: f64 = 0.0;
    let (first, _) = first_order(&netvars, &alphas, Batch { x: &xv, y: &yv }).unwrap();
    for which in 0..2 {
        let base = f64s(alphas[which].as_tensor());
        let analytic = f64s(&grads[which]);
        let first = f64s(&first[which]);
        for i in 0..base.len() {
            let mut plus = base.clone();
            plus[i] += h;
            let mut minus = base.clone();
            minus[i] -= h;
            let shape = alphas[which].shape().clone();
            alphas[which]
                .set(&Tensor::from_vec(plus, &shape, &Device::Cpu).unwrap())
                .unwrap();
            let fp = unrolled_loss(&alphas);
            alphas[which]
                .set(&Tensor::from_vec(minus, &shape, &Device::Cpu).unwrap())
                .unwrap();
            let fm = unrolled_loss(&alphas);
            alphas[which]
                .set(&Tensor::from_vec(base.clone(), &shape, &Device::Cpu).unwrap())
                .unwrap();
            let numeric = (fp - fm) / (2.0 * h);
            max_err = max_err.max((analytic[i] - numeric).abs());
            max_first_order_err = max_first_order_err.max((first[i] - numeric).abs());
            max_ref = max_ref.max(numeric.abs());
        }
    }
    assert!(max_ref > 1e-3, "degenerate test: gradient {max_ref}");
    assert!(
        max_err <= 2e-3 * max_ref,
        "second-order gradient off by {max_err} (scale {max_ref})"
    );
    // The check can tell: the first-order gradient misses the implicit term.
    assert!(
        max_first_order_err > 20.0 * max_err,
        "first order {max_first_order_err} vs second {max_err}"
    );
}
