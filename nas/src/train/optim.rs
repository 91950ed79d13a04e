//! Optimisers with PyTorch semantics (candle's own SGD has no momentum and its
//! AdamW decouples weight decay), global-norm gradient clipping and the cosine
//! learning-rate schedule.
//!
//! Every optimiser works over a list of named variables sorted by name, so
//! that any reduction over them (the clipping norm) has a fixed order, and
//! exposes its state as named tensors so that checkpoints can hold it.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// SGD with momentum (dampening 0, no Nesterov) and coupled L2 weight decay,
/// as `torch.optim.SGD`:
/// `g += wd·w; buf = μ·buf + g (first step: buf = g); w -= lr·buf`.
pub struct Sgd {
    vars: Vec<(String, Var)>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    /// Momentum buffers by variable name; absent until the var's first step.
    buffers: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(vars: Vec<(String, Var)>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self {
            vars,
            lr,
            momentum,
            weight_decay,
            buffers: HashMap::new(),
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }

    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The momentum buffer of a variable; None before its first step (the
    /// DARTS unrolled step then takes it as zero).
    pub fn momentum_buffer(&self, name: &str) -> Option<&Tensor> {
        self.buffers.get(name)
    }

    /// One update. A variable without a gradient is left untouched, as in PyTorch.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (name, var) in &self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let mut d = grad.clone();
            if self.weight_decay != 0.0 {
                d = (d + (var.as_tensor() * self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                let buf = match self.buffers.get(name) {
                    Some(buf) => ((buf * self.momentum)? + &d)?,
                    None => d.copy()?,
                };
                self.buffers.insert(name.clone(), buf.clone());
                d = buf;
            }
            let updated = (var.as_tensor() - (d * self.lr)?)?;
            var.set(&updated)
                .with_context(|| format!("SGD: updating `{name}`"))?;
        }
        Ok(())
    }

    /// Momentum buffers as `momentum_buffer.<var name>`, sorted by name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<_> = self
            .buffers
            .iter()
            .map(|(n, t)| (format!("momentum_buffer.{n}"), t.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores what `state` returned. Unknown names and shape mismatches are
    /// errors (the checkpoint belongs to another network).
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let shapes = var_shapes(&self.vars);
        self.buffers.clear();
        for (key, t) in state {
            let name = key
                .strip_prefix("momentum_buffer.")
                .with_context(|| format!("SGD state: unexpected entry `{key}`"))?;
            check_shape("SGD", name, &shapes, t)?;
            self.buffers.insert(name.to_string(), t.copy()?);
        }
        Ok(())
    }
}

/// Adam with coupled L2 weight decay (`g += wd·θ`), bias-corrected, as
/// `torch.optim.Adam` (not AdamW).
pub struct Adam {
    vars: Vec<(String, Var)>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    moments: HashMap<String, AdamMoments>,
}

struct AdamMoments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    pub fn new(
        vars: Vec<(String, Var)>,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Self {
        Self {
            vars,
            lr,
            beta1: betas.0,
            beta2: betas.1,
            eps,
            weight_decay,
            moments: HashMap::new(),
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One update with the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let found: Vec<Option<Tensor>> = self
            .vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        self.step_with(&found)
    }

    /// One update with explicit gradients, one per var in order (None: skip).
    /// DARTS's second-order architecture gradient is not in a GradStore.
    pub fn step_with(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        if grads.len() != self.vars.len() {
            bail!(
                "Adam: {} gradients for {} variables",
                grads.len(),
                self.vars.len()
            );
        }
        for ((name, var), grad) in self.vars.iter().zip(grads) {
            let Some(grad) = grad else { continue };
            let theta = var.as_tensor();
            let mut g = grad.clone();
            if self.weight_decay != 0.0 {
                g = (g + (theta * self.weight_decay)?)?;
            }
            let m = match self.moments.remove(name) {
                Some(m) => m,
                None => AdamMoments {
                    step: 0,
                    exp_avg: theta.zeros_like()?,
                    exp_avg_sq: theta.zeros_like()?,
                },
            };
            let step = m.step + 1;
            let exp_avg = ((m.exp_avg * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let exp_avg_sq = ((m.exp_avg_sq * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let bias1 = 1.0 - self.beta1.powi(step as i32);
            let bias2 = 1.0 - self.beta2.powi(step as i32);
            let denom = ((exp_avg_sq.sqrt()? / bias2.sqrt())? + self.eps)?;
            let update = ((&exp_avg / denom)? * (self.lr / bias1))?;
            var.set(&(theta - update)?)
                .with_context(|| format!("Adam: updating `{name}`"))?;
            self.moments.insert(
                name.clone(),
                AdamMoments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(())
    }

    /// `exp_avg.<name>`, `exp_avg_sq.<name>` and `step.<name>` (a scalar f64
    /// tensor), sorted by key.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, m) in &self.moments {
            out.push((format!("exp_avg.{name}"), m.exp_avg.clone()));
            out.push((format!("exp_avg_sq.{name}"), m.exp_avg_sq.clone()));
            // f64 holds any realistic step count exactly.
            if let Ok(step) = Tensor::new(m.step as f64, m.exp_avg.device()) {
                out.push((format!("step.{name}"), step));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let shapes = var_shapes(&self.vars);
        let mut avg = HashMap::new();
        let mut avg_sq = HashMap::new();
        let mut steps = HashMap::new();
        for (key, t) in state {
            if let Some(name) = key.strip_prefix("exp_avg_sq.") {
                check_shape("Adam", name, &shapes, t)?;
                avg_sq.insert(name.to_string(), t.copy()?);
            } else if let Some(name) = key.strip_prefix("exp_avg.") {
                check_shape("Adam", name, &shapes, t)?;
                avg.insert(name.to_string(), t.copy()?);
            } else if let Some(name) = key.strip_prefix("step.") {
                let step = t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                steps.insert(name.to_string(), step as u64);
            } else {
                bail!("Adam state: unexpected entry `{key}`");
            }
        }
        self.moments.clear();
        for (name, exp_avg) in avg {
            let (Some(exp_avg_sq), Some(step)) = (avg_sq.remove(&name), steps.remove(&name)) else {
                bail!("Adam state: incomplete moments for `{name}`");
            };
            self.moments.insert(
                name,
                AdamMoments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        if let Some(name) = avg_sq.keys().chain(steps.keys()).next() {
            bail!("Adam state: incomplete moments for `{name}`");
        }
        Ok(())
    }
}

fn var_shapes(vars: &[(String, Var)]) -> HashMap<&str, &candle_core::Shape> {
    vars.iter().map(|(n, v)| (n.as_str(), v.shape())).collect()
}

fn check_shape(
    opt: &str,
    name: &str,
    shapes: &HashMap<&str, &candle_core::Shape>,
    t: &Tensor,
) -> Result<()> {
    match shapes.get(name) {
        None => bail!("{opt} state names `{name}`, which is not a variable of this network"),
        Some(s) if *s != t.shape() => {
            bail!(
                "{opt} state for `{name}` has shape {:?}, the variable has {:?}",
                t.shape(),
                s
            )
        }
        Some(_) => Ok(()),
    }
}

/// `torch.nn.utils.clip_grad_norm_`: the global L2 norm of the gradients of
/// `vars` (taken in the given, sorted order); when it exceeds `max_norm` every
/// gradient is scaled by `max_norm / (norm + 1e-6)`. Returns the norm before
/// clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let total = global_norm(vars.iter().filter_map(|(_, v)| grads.get(v.as_tensor())))?;
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for (_, var) in vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let scaled = (g * coef)?;
                grads.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok(total)
}

/// sqrt of the sum of squares of all elements, accumulated per tensor in f64.
pub fn global_norm<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Result<f64> {
    let mut sum = 0.0f64;
    for t in tensors {
        sum += t
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// `CosineAnnealingLR`: `eta_min + (lr0 - eta_min)·(1 + cos(π·epoch/epochs))/2`.
pub fn cosine_lr(lr0: f64, eta_min: f64, epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return lr0;
    }
    let t = epoch as f64 / epochs as f64;
    eta_min + (lr0 - eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
}
