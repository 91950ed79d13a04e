//! Relaxed categorical sampling (spec §3.3): Z = softmax((log α + G)/λ) per
//! edge with Gumbel noise G, soft (not straight-through). The noise comes
//! from the seeded nasflow RNG, never candle's.

use candle_core::{Device, Result, Tensor, D};
use rand::Rng as _;

use crate::rng::Rng;

/// Keeps U inside (0, 1) so that −log(−log U) is finite.
const U_EPS: f64 = 1e-10;

/// Gumbel(0, 1) noise of shape [rows, cols]: G = −log(−log U), U ~ U(0, 1).
pub fn gumbel_noise(rng: &mut Rng, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let u = rng.random::<f64>().clamp(U_EPS, 1.0 - U_EPS);
            (-(-u.ln()).ln()) as f32
        })
        .collect();
    Tensor::from_vec(values, (rows, cols), device)
}

/// softmax((log_alpha + noise) / temperature) over the ops of each edge;
/// differentiable in `log_alpha`.
pub fn relaxed_sample(log_alpha: &Tensor, noise: &Tensor, temperature: f64) -> Result<Tensor> {
    let logits = ((log_alpha + noise)? / temperature)?;
    candle_nn::ops::softmax(&logits, D::Minus1)
}
