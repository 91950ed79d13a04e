//! Times one DARTS mixed edge (8 ops, softmax-weighted; search-time: affine=false, pools followed
//! by BN(affine=false)) forward + backward, plus its main components, and prints median ms.
//!
//!     cargo run --release -p nasflow-ops --example edge_bench
//!
//! Environment: RAYON_NUM_THREADS (threads), EDGE_BENCH_ITERS (timed iterations, default 12),
//! EDGE_BENCH_NO_TUNE (set: keep glibc's default malloc settings instead of calling
//! `nasflow_ops::tune_malloc()`; the allocator matters a lot on small VMs, see candle-notes.md).

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use nasflow_ops::*;
use rand::SeedableRng;

struct MixedEdge {
    ops: Vec<Op>,
    pool_bn: Vec<Option<BatchNorm>>,
}

impl MixedEdge {
    fn new(c: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let mut ops = Vec::new();
        let mut pool_bn = Vec::new();
        for (i, &p) in Primitive::DARTS.iter().enumerate() {
            let vb = vb.pp(i.to_string());
            ops.push(Op::new(p, c, stride, false, vb.clone())?);
            pool_bn.push(match p {
                Primitive::MaxPool3x3 | Primitive::AvgPool3x3 => Some(BatchNorm::new(c, false, vb.pp("bn"))?),
                _ => None,
            });
        }
        Ok(Self { ops, pool_bn })
    }

    fn forward(&self, x: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let mut acc: Option<Tensor> = None;
        for (k, (op, bn)) in self.ops.iter().zip(&self.pool_bn).enumerate() {
            let mut y = op.forward_t(x, true)?;
            if let Some(bn) = bn {
                y = bn.forward_t(&y, true)?;
            }
            let y = y.broadcast_mul(&weights.narrow(0, k, 1)?)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        Ok(acc.unwrap())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(t))
}

fn randn(shape: &[usize], rng: &mut impl rand::Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn main() -> Result<()> {
    let tuned = std::env::var("EDGE_BENCH_NO_TUNE").is_err() && tune_malloc();
    let iters: usize = std::env::var("EDGE_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    println!(
        "threads {}, iters {iters}, tune_malloc {tuned}, GLIBC_TUNABLES={}",
        rayon::current_num_threads(),
        std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "(unset)".into())
    );
    for &(b, c, hw, stride) in &[(64usize, 16usize, 32usize, 1usize), (32, 8, 28, 1), (64, 16, 32, 2)] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let edge = MixedEdge::new(c, stride, vb)?;
        init_pytorch_default(&vm, &mut rng)?;
        let alpha = Var::from_tensor(&(randn(&[8], &mut rng)? * 1e-3)?)?;
        let x = Var::from_tensor(&randn(&[b, c, hw, hw], &mut rng)?)?;
        let shape = format!("[{b},{c},{hw},{hw}] s{stride}");
        let fwd = time(iters, || {
            let w = candle_nn::ops::softmax(alpha.as_tensor(), D::Minus1)?;
            edge.forward(x.as_tensor(), &w)?;
            Ok(())
        })?;
        let fb = time(iters, || {
            let w = candle_nn::ops::softmax(alpha.as_tensor(), D::Minus1)?;
            let y = edge.forward(x.as_tensor(), &w)?;
            let g = y.sum_all()?.backward()?;
            assert!(g.get(alpha.as_tensor()).is_some());
            Ok(())
        })?;
        println!("mixed edge {shape:<22} fwd {fwd:8.1} ms   fwd+bwd {fb:8.1} ms");
    }
    // components on [64,16,32,32], fwd+bwd with loss = sum(y)
    let x = Var::from_tensor(&randn(&[64, 16, 32, 32], &mut rng)?)?;
    let w3 = Var::from_tensor(&(randn(&[16, 1, 3, 3], &mut rng)? * 0.3)?)?;
    let w5 = Var::from_tensor(&(randn(&[16, 1, 5, 5], &mut rng)? * 0.2)?)?;
    let w1 = Var::from_tensor(&(randn(&[16, 16, 1, 1], &mut rng)? * 0.25)?)?;
    let wd = Var::from_tensor(&(randn(&[16, 16, 3, 3], &mut rng)? * 0.1)?)?;
    let vm = VarMap::new();
    let bn = BatchNorm::new(16, false, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    type Component<'a> = (&'a str, Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>);
    let comps: Vec<Component> = vec![
        ("depthwise 3x3", Box::new(|x| depthwise_conv2d(x, w3.as_tensor(), 1, 1, 1))),
        ("depthwise 5x5", Box::new(|x| depthwise_conv2d(x, w5.as_tensor(), 1, 2, 1))),
        ("depthwise 3x3 dil 2", Box::new(|x| depthwise_conv2d(x, w3.as_tensor(), 1, 2, 2))),
        ("pointwise 1x1 16->16", Box::new(|x| conv2d(x, w1.as_tensor(), 1, 0))),
        ("dense 3x3 16->16", Box::new(|x| conv2d(x, wd.as_tensor(), 1, 1))),
        ("BN train affine=False", Box::new(|x| bn.forward_t(x, true))),
        ("max-pool 3x3 s1 p1", Box::new(|x| max_pool2d(x, 3, 1, 1))),
        ("avg-pool 3x3 s1 p1", Box::new(|x| avg_pool2d(x, 3, 1, 1, false))),
    ];
    for (name, f) in &comps {
        let fwd = time(iters, || {
            f(x.as_tensor())?;
            Ok(())
        })?;
        let fb = time(iters, || {
            f(x.as_tensor())?.sum_all()?.backward()?;
            Ok(())
        })?;
        println!("[64,16,32,32] {name:<24} fwd {fwd:7.2} ms   fwd+bwd {fb:7.2} ms");
    }
    Ok(())
}
