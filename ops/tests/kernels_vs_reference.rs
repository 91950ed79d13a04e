//! The custom kernels against the stock-candle reference implementations on random data, over
//! more shapes and configurations than the PyTorch fixtures (odd sizes, stride 2/3, large kernels).

use candle_core::{DType, Device, Result, Tensor, Var};
use nasflow_ops::{avg_pool2d, depthwise_conv2d, max_pool2d, reference, subsample};
use rand::{Rng, SeedableRng};

fn rand_tensor(rng: &mut impl Rng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Compares y, grad x and the grads of `params` of two implementations, loss = sum(y * a).
fn compare(what: &str, x: &Tensor, params: &[&Var], f: impl Fn(&Tensor) -> Result<Tensor>, g: impl Fn(&Tensor) -> Result<Tensor>, rng: &mut impl Rng) -> Result<()> {
    let xv = Var::from_tensor(x)?;
    let y1 = f(xv.as_tensor())?;
    let y2 = g(xv.as_tensor())?;
    assert!(max_diff(&y1, &y2) < 1e-4, "{what}: y differs by {}", max_diff(&y1, &y2));
    let a = rand_tensor(rng, y1.dims())?;
    let g1 = (y1 * &a)?.sum_all()?.backward()?;
    let g2 = (y2 * &a)?.sum_all()?.backward()?;
    let d = max_diff(g1.get(xv.as_tensor()).unwrap(), g2.get(xv.as_tensor()).unwrap());
    assert!(d < 1e-4, "{what}: grad x differs by {d}");
    for (i, p) in params.iter().enumerate() {
        let d = max_diff(g1.get(p.as_tensor()).unwrap(), g2.get(p.as_tensor()).unwrap());
        assert!(d < 1e-3, "{what}: grad param {i} differs by {d}");
    }
    Ok(())
}

#[test]
fn depthwise_matches_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for &(h, w) in &[(9usize, 11usize), (12, 12), (5, 8), (16, 15)] {
        for &k in &[1usize, 3, 5, 7] {
            for &s in &[1usize, 2, 3] {
                for &d in &[1usize, 2] {
                    for &p in &[0usize, d * (k - 1) / 2] {
                        if h + 2 * p < d * (k - 1) + 1 || w + 2 * p < d * (k - 1) + 1 {
                            continue;
                        }
                        let x = rand_tensor(&mut rng, &[3, 5, h, w])?;
                        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[5, 1, k, k])?)?;
                        let what = format!("dw {h}x{w} k{k} s{s} p{p} d{d}");
                        compare(&what, &x, &[&wv], |x| depthwise_conv2d(x, wv.as_tensor(), s, p, d), |x| reference::depthwise_conv2d(x, wv.as_tensor(), s, p, d), &mut rng)?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn pools_match_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    for &(h, w) in &[(9usize, 11usize), (12, 12), (5, 8), (7, 7)] {
        for &k in &[2usize, 3, 5] {
            for &s in &[1usize, 2, 3] {
                for p in 0..=k / 2 {
                    if h + 2 * p < k || w + 2 * p < k {
                        continue;
                    }
                    let x = rand_tensor(&mut rng, &[2, 3, h, w])?;
                    let what = format!("{h}x{w} k{k} s{s} p{p}");
                    compare(&format!("max {what}"), &x, &[], |x| max_pool2d(x, k, s, p), |x| reference::max_pool2d(x, k, s, p), &mut rng)?;
                    for cip in [false, true] {
                        compare(&format!("avg cip={cip} {what}"), &x, &[], |x| avg_pool2d(x, k, s, p, cip), |x| reference::avg_pool2d(x, k, s, p, cip), &mut rng)?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn subsample_matches_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for &(h, w) in &[(9usize, 11usize), (8, 8), (1, 3)] {
        for s in 1..4 {
            let x = rand_tensor(&mut rng, &[2, 3, h, w])?;
            compare(&format!("subsample {h}x{w} s{s}"), &x, &[], |x| subsample(x, s), |x| reference::subsample(x, s), &mut rng)?;
        }
    }
    Ok(())
}

#[test]
fn batch_norm_kernel_matches_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
    for &shape in &[[3usize, 5, 9, 11], [8, 2, 4, 4], [1, 3, 1, 17]] {
        let c = shape[1];
        let x = (rand_tensor(&mut rng, &shape)? * 3.0)?.affine(1.0, 0.7)?;
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[c])?)?;
        let b = Var::from_tensor(&rand_tensor(&mut rng, &[c])?)?;
        let refr = |x: &Tensor| {
            let (m, v) = reference::batch_stats(x)?;
            reference::bn_apply(x, &m, &v, Some((w.as_tensor(), b.as_tensor())), 1e-5)
        };
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let bn = nasflow_ops::BatchNorm::new(c, true, vb)?;
        // load w, b into the module's vars
        {
            let data = vm.data().lock().unwrap();
            data["weight"].set(w.as_tensor())?;
            data["bias"].set(b.as_tensor())?;
        }
        let xv = Var::from_tensor(&x)?;
        let y1 = candle_nn::ModuleT::forward_t(&bn, xv.as_tensor(), true)?;
        let y2 = refr(xv.as_tensor())?;
        assert!(max_diff(&y1, &y2) < 1e-4);
        let a = rand_tensor(&mut rng, y1.dims())?;
        let g1 = (&y1 * &a)?.sum_all()?.backward()?;
        let g2 = (&y2 * &a)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(xv.as_tensor()).unwrap(), g2.get(xv.as_tensor()).unwrap()) < 1e-4, "bn {shape:?} grad x");
        assert!(max_diff(g1.get(bn.weight().unwrap()).unwrap(), g2.get(w.as_tensor()).unwrap()) < 1e-3, "bn {shape:?} grad w");
        assert!(max_diff(g1.get(bn.bias().unwrap()).unwrap(), g2.get(b.as_tensor()).unwrap()) < 1e-3, "bn {shape:?} grad b");
    }
    Ok(())
}

#[test]
fn fused_relu_depthwise_matches_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for &(h, w, k, s, p, d) in &[(9usize, 11usize, 3usize, 1usize, 1usize, 1usize), (8, 8, 5, 2, 2, 1), (7, 10, 3, 2, 2, 2), (6, 6, 5, 1, 4, 2)] {
        let x = rand_tensor(&mut rng, &[3, 4, h, w])?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[4, 1, k, k])?)?;
        compare(
            &format!("relu+dw {h}x{w} k{k} s{s} p{p} d{d}"),
            &x,
            &[&wv],
            |x| nasflow_ops::relu_depthwise_conv2d(x, wv.as_tensor(), s, p, d),
            |x| reference::depthwise_conv2d(&x.relu()?, wv.as_tensor(), s, p, d),
            &mut rng,
        )?;
    }
    Ok(())
}

#[test]
fn relu_and_conv1x1_match_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let x = rand_tensor(&mut rng, &[3, 4, 5, 7])?;
    compare("relu", &x, &[], nasflow_ops::relu, |x| x.relu(), &mut rng)?;
    for &(b, cin, cout, h, w, s) in &[(20usize, 24usize, 40usize, 5usize, 7usize, 1usize), (3, 7, 5, 9, 9, 2), (1, 3, 2, 4, 6, 2), (2, 3, 4, 11, 10, 2), (17, 16, 16, 8, 8, 1)] {
        let x = rand_tensor(&mut rng, &[b, cin, h, w])?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[cout, cin, 1, 1])?)?;
        compare(
            &format!("conv1x1 b{b} {cin}->{cout} {h}x{w} s{s}"),
            &x,
            &[&wv],
            |x| nasflow_ops::conv2d(x, wv.as_tensor(), s, 0),
            |x| reference::conv2d_candle(x, wv.as_tensor(), s, 0),
            &mut rng,
        )?;
    }
    Ok(())
}

#[test]
fn dense_conv_matches_reference() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for &(b, cin, cout, h, w, k, s, p) in &[
        (2usize, 3usize, 5usize, 9usize, 11usize, 3usize, 1usize, 1usize),
        (20, 4, 6, 7, 6, 3, 2, 1),
        (3, 2, 3, 8, 8, 5, 2, 2),
        (2, 3, 4, 10, 9, 3, 3, 0),
        (1, 1, 2, 5, 5, 2, 1, 0),
    ] {
        let x = rand_tensor(&mut rng, &[b, cin, h, w])?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[cout, cin, k, k])?)?;
        let what = format!("conv b{b} {cin}->{cout} {h}x{w} k{k} s{s} p{p}");
        compare(&what, &x, &[&wv], |x| nasflow_ops::conv2d(x, wv.as_tensor(), s, p), |x| reference::conv2d_candle(x, wv.as_tensor(), s, p), &mut rng)?;
    }
    Ok(())
}

/// An input that is plain data (no Var behind it) gets no gradient; the weight grad is unchanged.
#[test]
fn conv_on_data_input_skips_grad_input() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    for k in [1usize, 3] {
        let x = rand_tensor(&mut rng, &[4, 3, 8, 8])?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[5, 3, k, k])?)?;
        let a = rand_tensor(&mut rng, &[4, 5, 8, 8])?;
        let g1 = (nasflow_ops::conv2d(&x, wv.as_tensor(), 1, k / 2)? * &a)?.sum_all()?.backward()?;
        let g2 = (reference::conv2d_candle(&x, wv.as_tensor(), 1, k / 2)? * &a)?.sum_all()?.backward()?;
        assert!(g1.get(&x).is_none());
        assert!(max_diff(g1.get(wv.as_tensor()).unwrap(), g2.get(wv.as_tensor()).unwrap()) < 1e-3);
    }
    Ok(())
}

/// candle 0.11's conv2d backward breaks for stride 2 when H and W differ in parity (its
/// output_padding comes from H alone; candle-notes.md). nasflow's CPU convs never call it, and
/// the reference path (used on other devices, CUDA included) pads the input to equal parity.
/// The first assertion is a canary: when a candle upgrade fixes the bug it fails, and the
/// workaround in `reference::conv2d_candle_ext` can go.
#[test]
fn candle_stride2_mixed_parity_conv_backward_is_avoided() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    for (k, p) in [(1usize, 0usize), (3, 1)] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[2, 3, 11, 10])?)?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[4, 3, k, k])?)?;
        let raw = x.as_tensor().conv2d(wv.as_tensor(), p, 2, 1, 1)?.sum_all()?.backward();
        assert!(raw.is_err(), "k{k}: candle's stride-2 mixed-parity conv backward works now; drop the padding workaround in reference::conv2d_candle_ext");
        // the paths nasflow uses run, and agree with each other
        let what = format!("stride-2 conv k{k} on 11x10");
        compare(&what, x.as_tensor(), &[&wv], |x| nasflow_ops::conv2d(x, wv.as_tensor(), 2, p), |x| reference::conv2d_candle(x, wv.as_tensor(), 2, p), &mut rng)?;
    }
    Ok(())
}

/// drop_path (its own op, no gradient for the mask) gives exactly what x · mask as a broadcast
/// product gives, values and gradients, zeros in the mask included.
#[test]
fn drop_path_matches_broadcast_mul_exactly() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    for shape in [[4usize, 3, 5, 7], [1, 2, 3, 3], [6, 1, 1, 1]] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &shape)?)?;
        let mask: Vec<f32> = (0..shape[0]).map(|i| (i % 3 != 1) as u8 as f32).collect();
        let keep = 0.7f32;
        let y1 = nasflow_ops::drop_path(x.as_tensor(), &mask, keep)?;
        let scaled: Vec<f32> = mask.iter().map(|m| m / keep).collect();
        let m = Tensor::from_vec(scaled, (shape[0], 1, 1, 1), &Device::Cpu)?;
        let y2 = x.as_tensor().broadcast_mul(&m)?;
        assert_eq!(y1.flatten_all()?.to_vec1::<f32>()?, y2.flatten_all()?.to_vec1::<f32>()?, "{shape:?}: values");
        let a = rand_tensor(&mut rng, &shape)?;
        let g1 = (y1 * &a)?.sum_all()?.backward()?;
        let g2 = (y2 * &a)?.sum_all()?.backward()?;
        let (g1, g2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert_eq!(g1.flatten_all()?.to_vec1::<f32>()?, g2.flatten_all()?.to_vec1::<f32>()?, "{shape:?}: grads");
    }
    Ok(())
}

/// Per-plane scaling (channel dropout's mask) is exactly x · mask[b, c, 1, 1].
#[test]
fn per_plane_scaling_matches_broadcast_mul_exactly() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let x = Var::from_tensor(&rand_tensor(&mut rng, &[3, 4, 5, 6])?)?;
    let mask: Vec<f32> = (0..12).map(|i| if i % 4 == 2 { 0.0 } else { 1.0 / 0.8 }).collect();
    let y1 = nasflow_ops::scale_leading(x.as_tensor(), &mask, 2)?;
    let y2 = x.as_tensor().broadcast_mul(&Tensor::from_vec(mask.clone(), (3, 4, 1, 1), &Device::Cpu)?)?;
    assert_eq!(y1.flatten_all()?.to_vec1::<f32>()?, y2.flatten_all()?.to_vec1::<f32>()?);
    let a = rand_tensor(&mut rng, &[3, 4, 5, 6])?;
    let g1 = (y1 * &a)?.sum_all()?.backward()?;
    let g2 = (y2 * &a)?.sum_all()?.backward()?;
    assert_eq!(g1.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?, g2.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f32>()?);
    // a mask that does not fit the leading dims is an error, not a panic
    assert!(nasflow_ops::scale_leading(x.as_tensor(), &mask[..5], 2).is_err());
    assert!(nasflow_ops::scale_leading(x.as_tensor(), &mask, 0).is_err());
    Ok(())
}

/// ReLUConvBN's stride-1 1x1 conv with the ReLU inside the op gives exactly what relu then the
/// 1x1 conv give (values, grad x, grad w), NaN and zero inputs included.
#[test]
fn relu_fused_conv1x1_matches_relu_then_conv_exactly() -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
    for &(b, cin, cout, h, w) in &[(3usize, 5usize, 4usize, 6usize, 7usize), (20, 8, 6, 4, 4), (1, 3, 2, 1, 1)] {
        let mut xv = rand_tensor(&mut rng, &[b, cin, h, w])?.flatten_all()?.to_vec1::<f32>()?;
        xv[0] = 0.0;
        xv[1] = f32::NAN;
        let x = Var::from_tensor(&Tensor::from_vec(xv, (b, cin, h, w), &Device::Cpu)?)?;
        let wv = Var::from_tensor(&rand_tensor(&mut rng, &[cout, cin, 1, 1])?)?;
        let y1 = nasflow_ops::relu_conv1x1(x.as_tensor(), wv.as_tensor())?;
        let y2 = nasflow_ops::conv2d(&nasflow_ops::relu(x.as_tensor())?, wv.as_tensor(), 1, 0)?;
        let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(&y1), bits(&y2), "values");
        let a = rand_tensor(&mut rng, y1.dims())?;
        let g1 = (y1 * &a)?.sum_all()?.backward()?;
        let g2 = (y2 * &a)?.sum_all()?.backward()?;
        for (what, v) in [("x", x.as_tensor()), ("w", wv.as_tensor())] {
            assert_eq!(bits(g1.get(v).unwrap()), bits(g2.get(v).unwrap()), "grad {what}");
        }
    }
    Ok(())
}
