//! nasflow-ops' tape: `fused` gives the gradients of candle's own graph, also where one gradient
//! buffer is shared by two tensors, and recording stops when the recorded closure fails.

use candle_core::{bail, Device, Result, Tensor};
use nasflow_ops::fused;
use nasflow_ops::tape::{add, cat_channels, record, weighted_sum};

fn noise(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    // a fixed pseudo-random pattern with both signs (no RNG needed)
    let v: Vec<f32> = (0..n as u32).map(|i| (((i.wrapping_mul(2654435761).wrapping_add(seed)) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// x reaches the output many times, twice through one `add(x, x)`. The last `add` hands one
/// gradient buffer to r and to `twice`, and r then gets a second contribution: summing that
/// into the shared buffer in place would corrupt `twice`'s gradient, hence x's.
fn body(v: &[Tensor]) -> Result<Tensor> {
    let (x, w) = (&v[0], &v[1]);
    let r = nasflow_ops::relu(x)?;
    let twice = add(x, x)?;
    let mixed = weighted_sum(&[r.clone(), twice.clone(), x.clone()], w)?;
    cat_channels(&[&add(&r, &twice)?, &mixed, &nasflow_ops::max_pool2d(&mixed, 3, 1, 1)?])
}

#[test]
fn fused_gradients_equal_candles_graph() {
    let x0 = noise(&[2, 3, 5, 5], 1);
    let w0 = Tensor::new(&[0.5f32, -1.5, 2.0], &Device::Cpu).unwrap();
    let r = noise(&[2, 9, 5, 5], 7);
    let run = |fuse: bool| {
        let x = candle_core::Var::from_tensor(&x0).unwrap();
        let w = candle_core::Var::from_tensor(&w0).unwrap();
        let inputs = [x.as_tensor(), w.as_tensor()];
        let y = if fuse { fused(&inputs, body).unwrap() } else { body(&[x.as_tensor().clone(), w.as_tensor().clone()]).unwrap() };
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&y), flat(g.get(x.as_tensor()).unwrap()), flat(g.get(w.as_tensor()).unwrap()))
    };
    let (a, b) = (run(true), run(false));
    for (name, u, v) in [("y", &a.0, &b.0), ("dx", &a.1, &b.1), ("dw", &a.2, &b.2)] {
        for (p, q) in u.iter().zip(v.iter()) {
            assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{name}: fused {p} vs candle {q}");
        }
    }
}

#[test]
fn recording_stops_after_an_error() {
    let x = noise(&[1, 1, 2, 2], 3);
    let err = record(|| -> Result<()> { bail!("stage failed") });
    assert!(err.is_err());
    // recording stopped: a new one can start, and ops run in candle's graph again
    assert!(record(|| Ok(())).is_ok());
    assert!(nasflow_ops::relu(&x).is_ok());
}
