//! The SNAS resource penalty (spec §3.6): per-edge costs of a sample, a
//! linear or log penalty, aggregated over cells, and the three estimators of
//! its gradient with respect to the architecture logits.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, D};

use super::cost::{CellCosts, OpCost};

/// How ∇_α E[C] is estimated (`--method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Pathwise: differentiate the penalty through the Gumbel-softmax sample.
    Reparametrization,
    /// Deterministic: the penalty of the exact probabilities softmax(log α).
    Discrete,
    /// Score function: Σ_e log q(Z_e; α, λ) · stopgrad(R_e), q the Concrete density.
    PolicyGradient,
}

impl Estimator {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "reparametrization" => Self::Reparametrization,
            "discrete" => Self::Discrete,
            "policy_gradient" => Self::PolicyGradient,
            other => bail!(
                "unknown resource estimator `{other}`; use reparametrization, discrete or policy_gradient"
            ),
        })
    }
}

/// Linear penalty 0.43·Σ_k w_k(2·size + flops/4000 + mac/100) per edge, or
/// log penalty (log R_size + log R_flops + log R_mac)/3 (`--log_penalty`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    Linear,
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceConfig {
    /// η: resource_loss = η·P; 0 switches the constraint off.
    pub lambda: f64,
    pub estimator: Estimator,
    pub penalty: Penalty,
    /// Policy gradient only: subtract the penalty of the uniform mix (the
    /// average op cost) from each edge's reward (`--minus_baseline`).
    pub minus_baseline: bool,
    /// Weight of the reduction cells' term (`ratio`, 1 in the code).
    pub reduce_ratio: f64,
}

impl Default for ResourceConfig {
    /// The README command: reparametrization, log penalty, η = 1.5e-3.
    fn default() -> Self {
        Self {
            lambda: 1.5e-3,
            estimator: Estimator::Reparametrization,
            penalty: Penalty::Log,
            minus_baseline: false,
            reduce_ratio: 1.0,
        }
    }
}

/// One cell's cost tables as [edges, ops] tensors.
struct CellTables {
    reduction: bool,
    size: Tensor,
    flops: Tensor,
    mac: Tensor,
    /// 0.43·(2·size + flops/4000 + mac/100), the linear penalty's table.
    linear: Tensor,
}

/// The cost tables of every cell of a supernet.
pub struct ResourceModel {
    cells: Vec<CellTables>,
    edges: usize,
    ops: usize,
}

fn table(rows: &[Vec<f64>], device: &Device) -> Result<Tensor> {
    let r = rows.len();
    let c = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(flat, (r, c), device)?)
}

/// ln((n−1)!), the normaliser of the Concrete density (the code hard-codes 7!).
fn ln_factorial_n_minus_1(n: usize) -> f64 {
    (2..n).map(|i| (i as f64).ln()).sum()
}

impl ResourceModel {
    pub fn new(cells: &[CellCosts], device: &Device) -> Result<Self> {
        let Some(first) = cells.first() else {
            bail!("the resource model needs at least one cell");
        };
        let (edges, ops) = (first.size.len(), first.size.first().map_or(0, Vec::len));
        let mut out = Vec::with_capacity(cells.len());
        for c in cells {
            let linear: Vec<Vec<f64>> = (0..c.size.len())
                .map(|e| {
                    (0..c.size[e].len())
                        .map(|k| {
                            0.43 * (2.0 * c.size[e][k] + c.flops[e][k] / 4000.0 + c.mac[e][k] / 100.0)
                        })
                        .collect()
                })
                .collect();
            out.push(CellTables {
                reduction: c.reduction,
                size: table(&c.size, device)?,
                flops: table(&c.flops, device)?,
                mac: table(&c.mac, device)?,
                linear: table(&linear, device)?,
            });
        }
        Ok(Self {
            cells: out,
            edges,
            ops,
        })
    }

    fn count(&self, reduction: bool) -> usize {
        self.cells.iter().filter(|c| c.reduction == reduction).count()
    }

    /// Per-edge penalty [edges] of one cell under mixing weights `w` [edges, ops].
    fn edge_penalty(cell: &CellTables, w: &Tensor, penalty: Penalty) -> Result<Tensor> {
        Ok(match penalty {
            Penalty::Linear => (w * &cell.linear)?.sum(D::Minus1)?,
            Penalty::Log => {
                let mut total: Option<Tensor> = None;
                for costs in [&cell.size, &cell.flops, &cell.mac] {
                    let r = (w * costs)?.sum(D::Minus1)?;
                    // "Clean": an edge costing less than 1 counts as 1, so its
                    // log is 0 and it passes no gradient.
                    let keep = r.abs()?.ge(1.0)?.to_dtype(r.dtype())?;
                    let cleaned = ((&r * &keep)? + (1.0 - &keep)?)?;
                    let l = cleaned.log()?;
                    total = Some(match total {
                        None => l,
                        Some(t) => (t + l)?,
                    });
                }
                match total {
                    Some(t) => (t / 3.0)?,
                    None => bail!("no cost tables"),
                }
            }
        })
    }

    /// Σ over the cells of one type of their per-edge penalties, [edges].
    fn type_edge_penalty(&self, reduction: bool, w: &Tensor, penalty: Penalty) -> Result<Option<Tensor>> {
        let mut sum: Option<Tensor> = None;
        for cell in self.cells.iter().filter(|c| c.reduction == reduction) {
            let p = Self::edge_penalty(cell, w, penalty)?;
            sum = Some(match sum {
                None => p,
                Some(s) => (s + p)?,
            });
        }
        Ok(sum)
    }

    /// The penalty P = P_normal/n_normal + ratio·P_reduce/n_reduce (the code
    /// divides by 6 and 2, the cell counts at L=8), before η.
    ///
    /// `samples` are the Gumbel-softmax samples Z of the forward pass (with
    /// their graph, for the reparametrization estimator) and `log_alphas` the
    /// logits; `temperature` is the λ the samples were drawn at.
    pub fn penalty(
        &self,
        cfg: &ResourceConfig,
        samples: [&Tensor; 2],
        log_alphas: [&Tensor; 2],
        temperature: f64,
    ) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (t, reduction) in [false, true].into_iter().enumerate() {
            let n = self.count(reduction);
            if n == 0 {
                continue;
            }
            let weight = if reduction { cfg.reduce_ratio } else { 1.0 } / n as f64;
            let term = match cfg.estimator {
                Estimator::Reparametrization => {
                    self.type_edge_penalty(reduction, samples[t], cfg.penalty)?
                }
                Estimator::Discrete => {
                    let p = candle_nn::ops::softmax(log_alphas[t], D::Minus1)?;
                    self.type_edge_penalty(reduction, &p, cfg.penalty)?
                }
                Estimator::PolicyGradient => {
                    let z = samples[t].detach();
                    let reward = self.type_edge_penalty(reduction, &z, cfg.penalty)?;
                    match reward {
                        None => None,
                        Some(mut r) => {
                            if cfg.minus_baseline {
                                let uniform = (z.ones_like()? / self.ops as f64)?;
                                if let Some(b) = self.type_edge_penalty(reduction, &uniform, cfg.penalty)? {
                                    r = (r - b)?;
                                }
                            }
                            let log_q = concrete_log_density(&z, log_alphas[t], temperature)?;
                            Some((log_q * r.detach())?)
                        }
                    }
                }
            };
            if let Some(term) = term {
                let term = (term.sum_all()? * weight)?;
                total = Some(match total {
                    None => term,
                    Some(s) => (s + term)?,
                });
            }
        }
        match total {
            Some(t) => Ok(t),
            None => bail!("the resource model has no cells"),
        }
    }

    /// Expected size, FLOPs and MAC of the whole network's cells under the
    /// probabilities softmax(log α): Σ_cells Σ_e Σ_k p_ek·c_ek.
    pub fn expected(&self, log_alphas: [&Tensor; 2]) -> Result<OpCost> {
        let probs = [
            candle_nn::ops::softmax(log_alphas[0], D::Minus1)?,
            candle_nn::ops::softmax(log_alphas[1], D::Minus1)?,
        ];
        let mut out = OpCost::default();
        for cell in &self.cells {
            let p = &probs[usize::from(cell.reduction)];
            let sum = |t: &Tensor| -> Result<f64> {
                Ok((p * t)?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
            };
            out.size += sum(&cell.size)?;
            out.flops += sum(&cell.flops)?;
            out.mac += sum(&cell.mac)?;
        }
        Ok(out)
    }

    /// Rows and columns of every table.
    pub fn shape(&self) -> (usize, usize) {
        (self.edges, self.ops)
    }
}

/// Log-density of the Concrete (Gumbel-softmax) distribution with n
/// categories at `z` [edges, n], per edge [edges]:
/// log((n−1)!) + (n−1)·log λ + Σ_k log α_k − (λ+1)·Σ_k log z_k − n·log Σ_k α_k·z_k^{−λ},
/// with α_k = exp(log_alpha_k), z clamped at 1e-4 and each α_k·z_k^{−λ} at
/// 1e-4, as the code does. Differentiable in `log_alpha`.
pub fn concrete_log_density(z: &Tensor, log_alpha: &Tensor, temperature: f64) -> Result<Tensor> {
    let n = z.dim(D::Minus1)?;
    let log_z = z.clamp(1e-4f32, f32::MAX)?.log()?;
    let scaled = (log_alpha - (&log_z * temperature)?)?.exp()?.clamp(1e-4f32, f32::MAX)?;
    let constant = ln_factorial_n_minus_1(n) + (n as f64 - 1.0) * temperature.ln();
    let sum_log_alpha = log_alpha.sum(D::Minus1)?;
    let sum_log_z = (log_z.sum(D::Minus1)? * (temperature + 1.0))?;
    let log_norm = (scaled.sum(D::Minus1)?.log()? * n as f64)?;
    Ok((((sum_log_alpha - sum_log_z)? - log_norm)? + constant)?)
}
