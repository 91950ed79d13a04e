//! Compares every op with the PyTorch fixtures in ops/fixtures (see make_fixtures.py there):
//! outputs, gradients of sum(y * a) w.r.t. the input and every parameter, and BatchNorm running
//! statistics after a training-mode forward.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use nasflow_ops::*;

type Fix = BTreeMap<String, Tensor>;

fn load(family: &str) -> Fix {
    let path = format!("{}/fixtures/{family}.npz", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_npz(&path).unwrap_or_else(|e| panic!("{path}: {e}")).into_iter().collect()
}

fn cases(f: &Fix) -> Vec<String> {
    let set: BTreeSet<String> = f.keys().map(|k| k.split('/').next().unwrap().to_string()).collect();
    set.into_iter().collect()
}

fn get<'a>(f: &'a Fix, case: &str, key: &str) -> &'a Tensor {
    f.get(&format!("{case}/{key}")).unwrap_or_else(|| panic!("fixture {case}/{key} missing"))
}

fn cfg(f: &Fix, case: &str) -> Vec<usize> {
    get(f, case, "cfg").to_vec1::<i64>().unwrap().into_iter().map(|v| v as usize).collect()
}

/// Entries `<case>/<kind>/<name>` -> name.
fn named(f: &Fix, case: &str, kind: &str) -> BTreeMap<String, Tensor> {
    let pre = format!("{case}/{kind}/");
    f.iter().filter_map(|(k, v)| k.strip_prefix(&pre).map(|n| (n.to_string(), v.clone()))).collect()
}

/// max |got - want| <= TOL * max(1, max |want|)
const TOL: f32 = 1e-4;

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    let mut at = 0;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let d = (a - b).abs();
        if d > worst || d.is_nan() {
            worst = d;
            at = i;
        }
    }
    assert!(worst <= TOL * scale, "{what}: max abs diff {worst} at {at} (got {}, want {}), scale {scale}", g[at], w[at]);
}

/// Runs `forward` on the fixture input; checks y, grad x and the grads of `params`.
fn check(f: &Fix, case: &str, params: &[(&str, &Tensor)], forward: impl Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
    let x = Var::from_tensor(get(f, case, "x"))?;
    let y = forward(x.as_tensor())?;
    assert_close(&format!("{case} y"), &y, get(f, case, "y"));
    let loss = (y * get(f, case, "a"))?.sum_all()?;
    let grads = loss.backward()?;
    let zeros = |t: &Tensor| t.zeros_like().unwrap();
    let gx = grads.get(x.as_tensor()).cloned().unwrap_or_else(|| zeros(x.as_tensor()));
    assert_close(&format!("{case} grad x"), &gx, get(f, case, "gx"));
    for (name, p) in params {
        let g = grads.get(p).cloned().unwrap_or_else(|| zeros(p));
        assert_close(&format!("{case} grad {name}"), &g, get(f, case, &format!("g/{name}")));
    }
    Ok(())
}

/// Builds a module on a fresh VarMap, loads every `p/<name>` into it (and requires that the
/// VarMap holds exactly those names), then checks outputs, grads and running stats.
fn check_module<M: ModuleT>(f: &Fix, case: &str, train: bool, build: impl Fn(VarBuilder) -> Result<M>) -> Result<()> {
    let mut vm = VarMap::new();
    let m = build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let p = named(f, case, "p");
    let have: BTreeSet<String> = vm.data().lock().unwrap().keys().cloned().collect();
    let want: BTreeSet<String> = p.keys().cloned().collect();
    assert_eq!(have, want, "{case}: var names");
    for (k, v) in &p {
        vm.set_one(k, v)?;
    }
    let grads_of = named(f, case, "g");
    let vars: Vec<(String, Tensor)> = {
        let data = vm.data().lock().unwrap();
        grads_of.keys().map(|k| (k.clone(), data[k].as_tensor().clone())).collect()
    };
    let params: Vec<(&str, &Tensor)> = vars.iter().map(|(k, t)| (k.as_str(), t)).collect();
    check(f, case, &params, |x| m.forward_t(x, train))?;
    let data = vm.data().lock().unwrap();
    for (k, want) in named(f, case, "r") {
        assert_close(&format!("{case} running {k}"), data[&k].as_tensor(), &want);
    }
    Ok(())
}

#[test]
fn depthwise_conv_matches_pytorch() -> Result<()> {
    let f = load("depthwise");
    for case in cases(&f) {
        let c = cfg(&f, &case);
        let (stride, pad, dil) = (c[1], c[2], c[3]);
        let w = Var::from_tensor(get(&f, &case, "p/w"))?;
        check(&f, &case, &[("w", w.as_tensor())], |x| depthwise_conv2d(x, w.as_tensor(), stride, pad, dil))?;
        check(&f, &case, &[("w", w.as_tensor())], |x| reference::depthwise_conv2d(x, w.as_tensor(), stride, pad, dil))?;
    }
    Ok(())
}

#[test]
fn pools_match_pytorch() -> Result<()> {
    let f = load("pool");
    for case in cases(&f) {
        let c = cfg(&f, &case);
        let (is_max, k, s, p, cip) = (c[0] == 1, c[1], c[2], c[3], c[4] == 1);
        if is_max {
            check(&f, &case, &[], |x| max_pool2d(x, k, s, p))?;
            if !case.starts_with("maxties") {
                check(&f, &case, &[], |x| reference::max_pool2d(x, k, s, p))?;
            }
        } else {
            check(&f, &case, &[], |x| avg_pool2d(x, k, s, p, cip))?;
            check(&f, &case, &[], |x| reference::avg_pool2d(x, k, s, p, cip))?;
        }
    }
    Ok(())
}

#[test]
fn conv2d_matches_pytorch() -> Result<()> {
    let f = load("conv");
    for case in cases(&f) {
        let c = cfg(&f, &case);
        let w = Var::from_tensor(get(&f, &case, "p/w"))?;
        check(&f, &case, &[("w", w.as_tensor())], |x| conv2d(x, w.as_tensor(), c[0], c[1]))?;
    }
    Ok(())
}

#[test]
fn batch_norm_matches_pytorch() -> Result<()> {
    let f = load("bn");
    for case in cases(&f) {
        let c = cfg(&f, &case);
        let (train, affine) = (c[0] == 1, c[1] == 1);
        let ch = get(&f, &case, "x").dim(1)?;
        check_module(&f, &case, train, |vb| BatchNorm::new(ch, affine, vb))?;
    }
    Ok(())
}

#[test]
fn blocks_match_pytorch() -> Result<()> {
    let f = load("blocks");
    for case in cases(&f) {
        // cfg = [c_in, c_out, kernel, stride, padding, dilation, affine, train]
        let c = cfg(&f, &case);
        let (cin, cout, k, s, p, d, affine, train) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6] == 1, c[7] == 1);
        match case.split('_').next().unwrap() {
            "rcb" => check_module(&f, &case, train, |vb| ReLUConvBN::new(cin, cout, k, s, p, affine, vb))?,
            "sep" => check_module(&f, &case, train, |vb| SepConv::new(cin, cout, k, s, p, affine, vb))?,
            "dil" => check_module(&f, &case, train, |vb| DilConv::new(cin, cout, k, s, p, d, affine, vb))?,
            "fr" => check_module(&f, &case, train, |vb| FactorizedReduce::new(cin, cout, affine, vb))?,
            other => panic!("unknown block {other}"),
        }
    }
    Ok(())
}

#[test]
fn darts_ops_match_pytorch() -> Result<()> {
    let f = load("ops");
    let mut seen = BTreeSet::new();
    for case in cases(&f) {
        // cfg = [primitive index, stride, affine, train]
        let c = cfg(&f, &case);
        let prim = Primitive::all()[c[0]];
        assert!(case.starts_with(prim.name()), "{case} vs {prim}");
        let ch = get(&f, &case, "x").dim(1)?;
        check_module(&f, &case, c[3] == 1, |vb| Op::new(prim, ch, c[1], c[2] == 1, vb))?;
        seen.insert((prim, c[1]));
    }
    for &p in Primitive::all() {
        for s in [1, 2] {
            assert!(seen.contains(&(p, s)), "no fixture for {p} stride {s}");
        }
    }
    Ok(())
}
