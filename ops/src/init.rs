use std::collections::BTreeMap;

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

/// Drop path: `x / keep_prob * mask[b]` per sample, the mask (0/1, length B) drawn by the caller.
pub fn drop_path(x: &Tensor, mask: &[f32], keep_prob: f32) -> Result<Tensor> {
    let b = x.dim(0)?;
    if mask.len() != b {
        candle_core::bail!("drop_path: mask of length {} for batch {}", mask.len(), b);
    }
    let scaled: Vec<f32> = mask.iter().map(|m| m / keep_prob).collect();
    crate::kernels::pointwise::scale_leading(x, &scaled, 1)
}

fn last(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn prefix(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) => &name[..i],
        None => "",
    }
}

fn uniform<R: rand::Rng>(rng: &mut R, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Seeded PyTorch-default initialisation of every Var in `varmap`, in sorted name order.
///
/// Matched on the last name component:
/// * `weight` of rank 4 (conv) or 2 (linear): kaiming_uniform(a = sqrt 5), i.e. U(-b, b) with
///   b = 1/sqrt(fan_in), fan_in = in_channels * kh * kw (or in_features);
/// * `weight` of rank 1 (BN): 1;
/// * `bias`: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) when a sibling `weight` of rank >= 2 exists
///   (linear / conv bias), else 0 (BN);
/// * `running_mean`: 0, `running_var`: 1, `num_batches_tracked`: 0.
///
/// Other names are left as they are.
pub fn init_pytorch_default<R: rand::Rng>(varmap: &VarMap, rng: &mut R) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    let sorted: BTreeMap<&String, &candle_core::Var> = data.iter().collect();
    for (name, var) in sorted.iter() {
        let t = var.as_tensor();
        let shape = t.shape().clone();
        let n = shape.elem_count();
        let dims = shape.dims();
        let new: Option<Tensor> = match last(name) {
            "weight" if dims.len() >= 2 => {
                let fan_in: usize = dims[1..].iter().product();
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                Some(Tensor::from_vec(uniform(rng, n, b), shape.clone(), t.device())?)
            }
            "weight" => Some(Tensor::ones(shape.clone(), t.dtype(), t.device())?),
            "bias" => {
                let wname = format!("{}{}weight", prefix(name), if prefix(name).is_empty() { "" } else { "." });
                match data.get(&wname) {
                    Some(w) if w.as_tensor().rank() >= 2 => {
                        let fan_in: usize = w.as_tensor().dims()[1..].iter().product();
                        let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                        Some(Tensor::from_vec(uniform(rng, n, b), shape.clone(), t.device())?)
                    }
                    _ => Some(Tensor::zeros(shape.clone(), t.dtype(), t.device())?),
                }
            }
            "running_mean" | "num_batches_tracked" => Some(Tensor::zeros(shape.clone(), t.dtype(), t.device())?),
            "running_var" => Some(Tensor::ones(shape.clone(), t.dtype(), t.device())?),
            _ => None,
        };
        if let Some(v) = new {
            var.set(&v.to_dtype(t.dtype())?)?;
        }
    }
    Ok(())
}
