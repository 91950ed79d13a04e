//! The DARTS architecture gradient (spec §2.5): first order, and second order
//! with the exact unrolled SGD step (momentum and weight decay included) and
//! the finite-difference Hessian-vector product.
//!
//! The network is reached only through [`MixedNet`] and its variables, so the
//! gradient can be checked on any tiny differentiable model (see the tests).

use anyhow::{Context, Result};
use candle_core::{Tensor, Var, D};

use crate::train::optim::{global_norm, Sgd};

/// A supernet whose mixing weights ([edges × ops] per cell type) come from outside.
pub trait MixedNet {
    fn logits(
        &self,
        x: &Tensor,
        normal: &Tensor,
        reduce: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor>;
}

impl MixedNet for crate::darts::model_search::SearchNetwork {
    fn logits(
        &self,
        x: &Tensor,
        normal: &Tensor,
        reduce: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        self.forward_t(x, normal, reduce, train)
    }
}

/// The network side of an architecture step.
pub struct NetVars<'a> {
    pub net: &'a dyn MixedNet,
    /// Trainable weights, sorted by name (the SGD optimiser's list).
    pub weights: &'a [(String, Var)],
    /// Everything else the forward pass writes (BN running stats).
    pub buffers: &'a [(String, Var)],
}

/// An input batch and its labels.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub x: &'a Tensor,
    pub y: &'a Tensor,
}

/// DARTS mixing weights: softmax over the ops of each edge.
pub fn softmax_mixing(alphas: &[Var; 2]) -> Result<(Tensor, Tensor)> {
    let n = candle_nn::ops::softmax(alphas[0].as_tensor(), D::Minus1)?;
    let r = candle_nn::ops::softmax(alphas[1].as_tensor(), D::Minus1)?;
    Ok((n, r))
}

/// Mean cross-entropy of a train-mode forward with softmax(α) mixing.
fn loss(net: &dyn MixedNet, alphas: &[Var; 2], batch: Batch) -> Result<Tensor> {
    let (n, r) = softmax_mixing(alphas)?;
    let logits = net.logits(batch.x, &n, &r, true)?;
    Ok(candle_nn::loss::cross_entropy(&logits, batch.y)?)
}

fn alpha_grads(grads: &candle_core::backprop::GradStore, alphas: &[Var; 2]) -> Result<[Tensor; 2]> {
    let get = |a: &Var| -> Result<Tensor> {
        match grads.get(a.as_tensor()) {
            Some(g) => Ok(g.clone()),
            // The loss does not depend on α (e.g. a network without reduction cells).
            None => Ok(a.as_tensor().zeros_like()?),
        }
    };
    Ok([get(&alphas[0])?, get(&alphas[1])?])
}

/// First order: g_α = ∇_α L_val(w, α). Returns the gradient and L_val.
pub fn first_order(net: &NetVars, alphas: &[Var; 2], valid: Batch) -> Result<([Tensor; 2], f64)> {
    let l = loss(net.net, alphas, valid)?;
    let value = crate::train::metrics::scalar(&l)?;
    let grads = l.backward()?;
    Ok((alpha_grads(&grads, alphas)?, value))
}

/// The virtual step of the second-order gradient:
/// `w' = w − η·(μ·buf + ∇_w L_tr(w, α) + λ·w)`, with η, μ, λ and the momentum
/// buffers (zero before the first weight step) taken from the weight optimiser.
/// No clipping, as in DARTS. Returns w' in the order of `net.weights`.
pub fn unrolled_weights(
    net: &NetVars,
    alphas: &[Var; 2],
    train: Batch,
    sgd: &Sgd,
) -> Result<Vec<Tensor>> {
    let l = loss(net.net, alphas, train)?;
    let grads = l.backward()?;
    let (lr, mu, wd) = (sgd.lr(), sgd.momentum(), sgd.weight_decay());
    net.weights
        .iter()
        .map(|(name, w)| {
            let w = w.as_tensor();
            let mut d = (w * wd)?;
            if let Some(g) = grads.get(w) {
                d = (d + g)?;
            }
            if let Some(buf) = sgd.momentum_buffer(name) {
                d = (d + (buf * mu)?)?;
            }
            Ok((w - (d * lr)?)?)
        })
        .collect()
}

/// Second order (DARTS `--unrolled`):
/// `g_α = ∇_α L_val(w', α) − η·(∇_α L_tr(w⁺, α) − ∇_α L_tr(w⁻, α)) / 2ε`
/// with `v = ∇_{w'} L_val(w', α)`, `w± = w ± ε·v`, `ε = 0.01/‖v‖`.
///
/// The weights are evaluated in place (the network's variables are set to
/// w', then w±) and restored exactly to w at the end. BN running stats follow
/// DARTS: the forward at w' runs on a copy there, so its updates are undone
/// here; the train forwards at w and w± update them, as in DARTS.
/// Returns g_α and L_val(w', α).
pub fn second_order(
    net: &NetVars,
    alphas: &[Var; 2],
    train: Batch,
    valid: Batch,
    sgd: &Sgd,
) -> Result<([Tensor; 2], f64)> {
    let original: Vec<Tensor> = net
        .weights
        .iter()
        .map(|(_, w)| w.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?;
    let result = second_order_inner(net, alphas, train, valid, sgd, &original);
    // Restore w even when a step failed, so an error leaves the network intact.
    set_all(net.weights, &original).context("restoring the weights after the unrolled step")?;
    result
}

fn second_order_inner(
    net: &NetVars,
    alphas: &[Var; 2],
    train: Batch,
    valid: Batch,
    sgd: &Sgd,
    original: &[Tensor],
) -> Result<([Tensor; 2], f64)> {
    let lr = sgd.lr();
    let unrolled = unrolled_weights(net, alphas, train, sgd)?;

    // Direct term and v at w'; the BN stats this forward writes are discarded.
    let stats: Vec<Tensor> = net
        .buffers
        .iter()
        .map(|(_, b)| b.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?;
    set_all(net.weights, &unrolled)?;
    let l_val = loss(net.net, alphas, valid)?;
    let val_value = crate::train::metrics::scalar(&l_val)?;
    let grads = l_val.backward()?;
    let direct = alpha_grads(&grads, alphas)?;
    let v: Vec<Option<Tensor>> = net
        .weights
        .iter()
        .map(|(_, w)| grads.get(w.as_tensor()).cloned())
        .collect();
    drop(grads);
    set_all(net.buffers, &stats)?;

    let norm = global_norm(v.iter().flatten())?;
    if norm == 0.0 || !norm.is_finite() {
        // No weight gradient (or a diverged one): the implicit term vanishes
        // or is undefined; report the direct term and let the caller's loss
        // check catch a NaN.
        return Ok((direct, val_value));
    }
    let eps = 0.01 / norm;
    let perturbed = |sign: f64| -> Result<Vec<Tensor>> {
        original
            .iter()
            .zip(&v)
            .map(|(w, v)| match v {
                Some(v) => Ok((w + (v * (sign * eps))?)?),
                None => Ok(w.clone()),
            })
            .collect()
    };
    set_all(net.weights, &perturbed(1.0)?)?;
    let plus = alpha_grads(&loss(net.net, alphas, train)?.backward()?, alphas)?;
    set_all(net.weights, &perturbed(-1.0)?)?;
    let minus = alpha_grads(&loss(net.net, alphas, train)?.backward()?, alphas)?;

    let scale = lr / (2.0 * eps);
    let mut out = Vec::with_capacity(2);
    for i in 0..2 {
        let hvp_term = ((&plus[i] - &minus[i])? * scale)?;
        out.push((&direct[i] - hvp_term)?);
    }
    let [n, r]: [Tensor; 2] = out
        .try_into()
        .map_err(|_| anyhow::anyhow!("two alpha gradients expected"))?;
    Ok(([n, r], val_value))
}

fn set_all(vars: &[(String, Var)], values: &[Tensor]) -> Result<()> {
    for ((name, var), t) in vars.iter().zip(values) {
        var.set(t).with_context(|| format!("setting `{name}`"))?;
    }
    Ok(())
}
