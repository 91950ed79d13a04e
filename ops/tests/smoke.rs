//! Shapes and gradients flow through every op (no fixtures needed).

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use nasflow_ops::*;
use rand::SeedableRng;

#[test]
fn every_op_runs_forward_and_backward() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for &stride in &[1usize, 2] {
        for &p in Primitive::all() {
            for &affine in &[false, true] {
                let vm = VarMap::new();
                let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
                let op = Op::new(p, 4, stride, affine, vb.pp("op"))?;
                init_pytorch_default(&vm, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1))?;
                let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (2, 4, 8, 6), &dev)?)?;
                let y = op.forward_t(x.as_tensor(), true)?;
                assert_eq!(y.dims(), &[2, 4, 8 / stride, 6 / stride], "{p} stride {stride}");
                let y2 = op.forward_t(x.as_tensor(), false)?;
                assert_eq!(y2.dims(), y.dims());
                if !op.is_zero() {
                    let g = y.sqr()?.sum_all()?.backward()?;
                    assert!(g.get(x.as_tensor()).is_some(), "{p} stride {stride}: no grad");
                }
                assert_eq!(op.is_identity(), p == Primitive::SkipConnect && stride == 1);
            }
        }
    }
    Ok(())
}

#[test]
fn names_round_trip() {
    for &p in Primitive::all() {
        assert_eq!(Primitive::from_name(p.name()), Some(p));
    }
    assert_eq!(Primitive::DARTS[3], Primitive::SkipConnect);
    assert_eq!(Primitive::DARTS.iter().map(|p| p.name()).collect::<Vec<_>>(), [
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"
    ]);
    assert_eq!(Primitive::from_name("nope"), None);
}

#[test]
fn drop_path_scales_and_masks() -> candle_core::Result<()> {
    let x = Tensor::ones((2, 1, 2, 2), DType::F32, &Device::Cpu)?;
    let y = drop_path(&x, &[1.0, 0.0], 0.8)?;
    let v = y.flatten_all()?.to_vec1::<f32>()?;
    assert!(v[..4].iter().all(|&a| (a - 1.25).abs() < 1e-6));
    assert!(v[4..].iter().all(|&a| a == 0.0));
    Ok(())
}

#[test]
fn init_is_seeded_and_pytorch_like() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let make = |seed: u64| -> candle_core::Result<VarMap> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let _ = ReLUConvBN::new(3, 5, 3, 1, 1, true, vb.pp("rcb"))?;
        let _ = candle_nn::linear(7, 4, vb.pp("fc"))?;
        init_pytorch_default(&vm, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))?;
        Ok(vm)
    };
    let a = make(3)?;
    let b = make(3)?;
    let get = |vm: &VarMap, n: &str| vm.data().lock().unwrap()[n].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(get(&a, "rcb.conv.weight"), get(&b, "rcb.conv.weight"));
    let w = get(&a, "rcb.conv.weight");
    let bound = 1.0 / (27f32).sqrt();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(w.iter().any(|v| v.abs() > bound * 0.5));
    assert!(get(&a, "rcb.bn.weight").iter().all(|&v| v == 1.0));
    assert!(get(&a, "rcb.bn.bias").iter().all(|&v| v == 0.0));
    assert!(get(&a, "rcb.bn.running_var").iter().all(|&v| v == 1.0));
    let fb = get(&a, "fc.bias");
    assert!(fb.iter().all(|v| v.abs() <= 1.0 / 7f32.sqrt()) && fb.iter().any(|&v| v != 0.0));
    Ok(())
}
