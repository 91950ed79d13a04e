//! The CUDA kernels (feature `cuda`) against the CPU kernels on random data: every op forward
//! and backward (gradients through candle's backprop on `Var`s), then whole DARTS ops.
//!
//! Only built with `--features cuda`; needs a CUDA GPU. Without one every test FAILS (with a
//! message saying so) instead of passing silently: whoever asks for these tests wants a GPU
//! answer. Run: `cargo test -p nasflow-ops --features cuda --test cuda` (see docs/cuda.md).
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use nasflow_ops::{avg_pool2d, depthwise_conv2d, init_pytorch_default, max_pool2d, relu, relu_depthwise_conv2d, subsample, BatchNorm, FactorizedReduce, Op, Primitive, ReLUConvBN};
use rand::{Rng, SeedableRng};

type Rng8 = rand_chacha::ChaCha8Rng;

/// Single ops: max |gpu - cpu| <= RTOL * max(1, max |cpu|).
const RTOL: f32 = 1e-4;
/// Whole DARTS ops (conv chains with batch norms and candle's cuBLAS matmuls in between).
const MODULE_RTOL: f32 = 1e-3;

fn gpu() -> Device {
    match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => panic!(
            "ops/tests/cuda.rs needs a CUDA GPU: Device::new_cuda(0) failed ({e}). These tests only build with \
             --features cuda and are meant for a GPU machine (bench/gpu-check.sh); they do not pass without one."
        ),
    }
}

fn rand_vec(rng: &mut Rng8, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn rand_cpu(rng: &mut Rng8, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Tensor::from_vec(rand_vec(rng, n), shape, &Device::Cpu)
}

/// Asserts max |gpu - cpu| <= RTOL * max(1, max |cpu|).
fn assert_close(what: &str, gpu: &Tensor, cpu: &Tensor) -> Result<()> {
    assert_close_tol(what, gpu, cpu, RTOL)
}

fn assert_close_tol(what: &str, gpu: &Tensor, cpu: &Tensor, rtol: f32) -> Result<()> {
    assert_eq!(gpu.dims(), cpu.dims(), "{what}: shapes differ");
    let a = gpu.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let b = cpu.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let mut worst = (0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = if x.is_nan() || y.is_nan() { if x.is_nan() && y.is_nan() { 0.0 } else { f32::INFINITY } } else { (x - y).abs() };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(worst.0 <= rtol * scale, "{what}: max diff {} at {} (gpu {}, cpu {}), allowed {}", worst.0, worst.1, a[worst.1], b[worst.1], rtol * scale);
    Ok(())
}

/// Runs `f(x, params)` on the CPU and on the GPU from the same data, with loss sum(y * a) for a
/// random `a`, and compares y, grad x and every grad param.
fn compare(what: &str, rng: &mut Rng8, x: &Tensor, params: &[Tensor], f: impl Fn(&Tensor, &[Tensor]) -> Result<Tensor>) -> Result<()> {
    let dev = gpu();
    let run = |d: &Device, a: Option<&Tensor>| -> Result<(Tensor, Vec<Tensor>)> {
        let xv = Var::from_tensor(&x.to_device(d)?)?;
        let ps = params.iter().map(|p| Var::from_tensor(&p.to_device(d)?)).collect::<Result<Vec<_>>>()?;
        let pt: Vec<Tensor> = ps.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(xv.as_tensor(), &pt)?;
        let Some(a) = a else { return Ok((y, vec![])) };
        let gs = (&y * a.to_device(d)?)?.sum_all()?.backward()?;
        let mut grads = vec![gs.get(xv.as_tensor()).expect("no grad x").clone()];
        for p in &pt {
            grads.push(gs.get(p).expect("no grad param").clone());
        }
        Ok((y, grads))
    };
    let (y0, _) = run(&Device::Cpu, None)?;
    let a = rand_cpu(rng, y0.dims())?;
    let (yc, gc) = run(&Device::Cpu, Some(&a))?;
    let (yg, gg) = run(&dev, Some(&a))?;
    assert!(yg.device().is_cuda(), "{what}: output not on the GPU");
    assert_close(&format!("{what}: y"), &yg, &yc)?;
    assert_close(&format!("{what}: grad x"), &gg[0], &gc[0])?;
    for i in 1..gc.len() {
        assert_close(&format!("{what}: grad param {}", i - 1), &gg[i], &gc[i])?;
    }
    Ok(())
}

/// (h, w) pairs: odd, even, and mixed parity with H != W.
const SIZES: [(usize, usize); 4] = [(9, 9), (12, 12), (11, 8), (8, 13)];

#[test]
fn cuda_device_is_there() {
    let d = gpu();
    assert!(d.is_cuda());
}

#[test]
fn depthwise_matches_cpu() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(11);
    for (h, w) in SIZES {
        for k in [3usize, 5] {
            for s in [1usize, 2] {
                for d in [1usize, 2] {
                    for relu_in in [false, true] {
                        let p = d * (k - 1) / 2;
                        let x = rand_cpu(&mut rng, &[2, 3, h, w])?;
                        let wt = rand_cpu(&mut rng, &[3, 1, k, k])?;
                        let what = format!("dw {h}x{w} k{k} s{s} p{p} d{d} relu={relu_in}");
                        compare(&what, &mut rng, &x, &[wt], |x, ps| {
                            if relu_in {
                                relu_depthwise_conv2d(x, &ps[0], s, p, d)
                            } else {
                                depthwise_conv2d(x, &ps[0], s, p, d)
                            }
                        })?;
                    }
                }
            }
        }
    }
    // no padding, and a padding larger than the "same" one
    let x = rand_cpu(&mut rng, &[2, 4, 10, 7])?;
    let wt = rand_cpu(&mut rng, &[4, 1, 3, 3])?;
    for p in [0usize, 2] {
        compare(&format!("dw 10x7 k3 s2 p{p}"), &mut rng, &x, std::slice::from_ref(&wt), |x, ps| depthwise_conv2d(x, &ps[0], 2, p, 1))?;
    }
    Ok(())
}

#[test]
fn pools_match_cpu() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(12);
    for (h, w) in SIZES {
        for k in [2usize, 3, 5] {
            for s in [1usize, 2] {
                for p in 0..=k / 2 {
                    let x = rand_cpu(&mut rng, &[2, 3, h, w])?;
                    let what = format!("{h}x{w} k{k} s{s} p{p}");
                    compare(&format!("max {what}"), &mut rng, &x, &[], |x, _| max_pool2d(x, k, s, p))?;
                    for cip in [false, true] {
                        compare(&format!("avg cip={cip} {what}"), &mut rng, &x, &[], |x, _| avg_pool2d(x, k, s, p, cip))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Ties: the gradient must go to the first maximum of each window (row-major), as on the CPU.
#[test]
fn max_pool_ties_go_to_first_max() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(13);
    let v: Vec<f32> = (0..2 * 3 * 9 * 10).map(|_| rng.random_range(0..3) as f32).collect();
    let x = Tensor::from_vec(v, (2, 3, 9, 10), &Device::Cpu)?;
    for s in [1usize, 2] {
        compare(&format!("max ties s{s}"), &mut rng, &x, &[], |x, _| max_pool2d(x, 3, s, 1))?;
    }
    let x = Tensor::full(-1f32, (1, 2, 6, 7), &Device::Cpu)?;
    compare("max all equal", &mut rng, &x, &[], |x, _| max_pool2d(x, 3, 2, 1))?;
    Ok(())
}

#[test]
fn subsample_and_relu_match_cpu() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(14);
    for (h, w) in SIZES {
        let x = rand_cpu(&mut rng, &[2, 3, h, w])?;
        for s in [1usize, 2, 3] {
            compare(&format!("subsample {h}x{w} s{s}"), &mut rng, &x, &[], |x, _| subsample(x, s))?;
        }
        compare(&format!("relu {h}x{w}"), &mut rng, &x, &[], |x, _| relu(x))?;
    }
    Ok(())
}

/// Copies every var of `src` into the same-named var of `dst` (other device).
fn copy_vars(src: &VarMap, dst: &VarMap) -> Result<()> {
    let s = src.data().lock().unwrap();
    let d = dst.data().lock().unwrap();
    assert_eq!(s.len(), d.len());
    for (name, v) in s.iter() {
        let t = d.get(name).unwrap_or_else(|| panic!("var {name} missing"));
        t.set(&v.as_tensor().to_device(t.device())?)?;
    }
    Ok(())
}

/// Builds a module on the CPU and on the GPU with the same (random) vars, runs forward_t in
/// training or eval mode, and compares y, grad x, the grad of every var and the vars afterwards
/// (BN running statistics).
fn compare_module<M: ModuleT>(what: &str, rng: &mut Rng8, x: &Tensor, train: bool, rtol: f32, build: impl Fn(VarBuilder) -> Result<M>) -> Result<()> {
    let dev = gpu();
    let (vc, vg) = (VarMap::new(), VarMap::new());
    let mc = build(VarBuilder::from_varmap(&vc, DType::F32, &Device::Cpu))?;
    let mg = build(VarBuilder::from_varmap(&vg, DType::F32, &dev))?;
    init_pytorch_default(&vc, &mut Rng8::seed_from_u64(rng.random()))?;
    {
        // random affine BN parameters and running statistics too, not just 1 / 0
        let data = vc.data().lock().unwrap();
        for (name, v) in data.iter() {
            if name.ends_with("bn.weight") || name.ends_with("bn.bias") || name.ends_with("running_mean") {
                v.set(&rand_cpu(rng, v.dims())?)?;
            } else if name.ends_with("running_var") {
                v.set(&(rand_cpu(rng, v.dims())?.abs()? + 0.5)?)?;
            }
        }
    }
    copy_vars(&vc, &vg)?;
    let xc = Var::from_tensor(x)?;
    let xg = Var::from_tensor(&x.to_device(&dev)?)?;
    let yc = mc.forward_t(xc.as_tensor(), train)?;
    let yg = mg.forward_t(xg.as_tensor(), train)?;
    assert_close_tol(&format!("{what}: y"), &yg, &yc, rtol)?;
    let a = rand_cpu(rng, yc.dims())?;
    let gc = (&yc * &a)?.sum_all()?.backward()?;
    let gg = (&yg * a.to_device(&dev)?)?.sum_all()?.backward()?;
    assert_close_tol(&format!("{what}: grad x"), gg.get(xg.as_tensor()).unwrap(), gc.get(xc.as_tensor()).unwrap(), rtol)?;
    let (dc, dg) = (vc.data().lock().unwrap(), vg.data().lock().unwrap());
    let mut names: Vec<&String> = dc.keys().collect();
    names.sort();
    for name in names {
        let (pc, pg) = (dc[name].as_tensor(), dg[name].as_tensor());
        assert_close_tol(&format!("{what}: var {name} after the step"), pg, pc, rtol)?;
        match (gc.get(pc), gg.get(pg)) {
            (Some(c), Some(g)) => assert_close_tol(&format!("{what}: grad {name}"), g, c, rtol)?,
            (None, None) => {}
            (c, g) => panic!("{what}: grad {name} on cpu: {}, on gpu: {}", c.is_some(), g.is_some()),
        }
    }
    Ok(())
}

#[test]
fn batch_norm_matches_cpu() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(15);
    for (h, w) in SIZES {
        // shifted and scaled inputs, so that the statistics matter
        let x = ((rand_cpu(&mut rng, &[4, 5, h, w])? * 3.0)? + 1.5)?;
        for affine in [false, true] {
            for train in [true, false] {
                compare_module(&format!("bn {h}x{w} affine={affine} train={train}"), &mut rng, &x, train, RTOL, |vb| BatchNorm::new(5, affine, vb))?;
            }
        }
    }
    Ok(())
}

#[test]
fn darts_ops_match_cpu() -> Result<()> {
    let mut rng = Rng8::seed_from_u64(16);
    // FactorizedReduce (skip_connect at stride 2) needs even sizes, so odd ones only at stride 1
    for (h, w, strides) in [(8usize, 8usize, &[1usize, 2][..]), (10, 6, &[1, 2]), (9, 7, &[1])] {
        let x = rand_cpu(&mut rng, &[3, 6, h, w])?;
        for &stride in strides {
            for &p in Primitive::all() {
                if p == Primitive::None {
                    continue;
                }
                for affine in [false, true] {
                    compare_module(&format!("{p} {h}x{w} stride {stride} affine={affine}"), &mut rng, &x, true, MODULE_RTOL, |vb| Op::new(p, 6, stride, affine, vb))?;
                }
            }
        }
        compare_module(&format!("relu_conv_bn 1x1 s2 {h}x{w}"), &mut rng, &x, true, MODULE_RTOL, |vb| ReLUConvBN::new(6, 4, 1, 2, 0, true, vb))?;
        compare_module(&format!("relu_conv_bn 3x3 {h}x{w}"), &mut rng, &x, true, MODULE_RTOL, |vb| ReLUConvBN::new(6, 4, 3, 1, 1, false, vb))?;
        if h % 2 == 0 && w % 2 == 0 {
            compare_module(&format!("factorized_reduce {h}x{w}"), &mut rng, &x, true, MODULE_RTOL, |vb| FactorizedReduce::new(6, 8, true, vb))?;
        }
    }
    Ok(())
}

/// No float atomics: two identical backward passes give bit-identical gradients.
#[test]
fn gradients_are_deterministic() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng8::seed_from_u64(17);
    let x = rand_cpu(&mut rng, &[8, 16, 17, 15])?.to_device(&dev)?;
    let wt = rand_cpu(&mut rng, &[16, 1, 5, 5])?.to_device(&dev)?;
    let a = rand_cpu(&mut rng, &[8, 16, 9, 8])?.to_device(&dev)?;
    let grads = || -> Result<(Vec<f32>, Vec<f32>)> {
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&wt)?);
        let y = relu_depthwise_conv2d(xv.as_tensor(), wv.as_tensor(), 2, 4, 2)?;
        let y = max_pool2d(&y, 3, 1, 1)?;
        let g = (y * &a)?.sum_all()?.backward()?;
        Ok((g.get(xv.as_tensor()).unwrap().flatten_all()?.to_vec1()?, g.get(wv.as_tensor()).unwrap().flatten_all()?.to_vec1()?))
    };
    let (gx1, gw1) = grads()?;
    let (gx2, gw2) = grads()?;
    assert!(gx1.iter().zip(&gx2).all(|(a, b)| a.to_bits() == b.to_bits()), "grad x differs between runs");
    assert!(gw1.iter().zip(&gw2).all(|(a, b)| a.to_bits() == b.to_bits()), "grad w differs between runs");
    Ok(())
}
