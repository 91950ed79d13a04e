//! The BayesNAS search loop (spec §4.4, paper Algorithm 1), `t_max` rounds of
//!
//! 1. warm-up: one pass over the warm-up subset training the weights only
//!    (switches frozen at their current values), loss = NLL;
//! 2. switch training: one pass over the switch subset, weights and switches
//!    stepping together (two SGDs), loss = NLL + Σ λ_t·ω·‖s_group‖₂;
//! 3. the diagonal Hessian of the summed NLL of the last batch with respect
//!    to every switch ([`super::hessian`]), then the closed-form γ/ω update
//!    ([`super::update`]).
//!
//! Intended method, not the reference defects (spec §9): the warm-up and
//! switch subsets are disjoint parts of one seeded shuffle (the reference
//! draws them independently, so they may overlap); ω and γ start at 1.
//! The Hessian is taken in training mode (batch statistics, as every other
//! pass) and the BN running statistics its extra forwards would move are
//! restored afterwards.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

use super::hessian::{exact_diag, hutchinson_diag};
use super::network::BayesNetConfig;
use super::supernet::{Supernet, EDGES, NUM_SWITCHES};
use super::update::SwitchStats;
use crate::darts::search::non_trainable_vars;
use crate::data::{batches, Augment, DataSplits, Dataset};
use crate::rng::{rng_for, Rng};
use crate::darts::search::check_resumable;
use crate::train::checkpoint::{cpu_copy, restore_varmap, save_safetensors_atomic, snapshot_varmap, Checkpoint};
use crate::train::metrics::{ensure_finite, scalar, top1_percent, Meter};
use crate::train::optim::Sgd;
use crate::train::Observer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HessianMethod {
    /// Finite-difference Hutchinson estimate (2 passes per probe).
    Hutchinson,
    /// Coordinate finite differences (2 passes per switch).
    Exact,
}

#[derive(Clone, Debug)]
pub struct BayesSearchConfig {
    pub layers: usize,
    pub init_channels: usize,
    pub batch_size: usize,
    /// Weight SGD: constant lr, momentum, coupled L2.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Switch SGD (no weight decay).
    pub switch_lr: f64,
    pub switch_momentum: f64,
    /// Group-lasso strength of the edge switches and of the op switches.
    pub lambda_origin: f64,
    pub lambda_child: f64,
    /// Rounds of warm-up → switch training → update.
    pub t_max: usize,
    /// Fractions of the training set for the warm-up and switch subsets (disjoint).
    pub warmup_portion: f64,
    pub switch_portion: f64,
    /// Caps on the steps of each phase (None: one full pass).
    pub warmup_steps: Option<usize>,
    pub switch_steps: Option<usize>,
    pub hessian: HessianMethod,
    pub hessian_probes: usize,
    pub hessian_eps: f64,
    /// Crop/flip for both subsets; `cutout` for the warm-up subset only (as the reference).
    pub augment: Augment,
    pub seed: u64,
    pub eval_batch_size: usize,
    /// Validate on only the first this many test images (None: all).
    pub max_valid_samples: Option<usize>,
    /// Where the network, switches and batches live (CPU by default).
    /// Batches are decoded on the CPU and moved; random draws (probes
    /// included) stay on nasflow's seeded CPU generator; files are written
    /// from CPU copies. Not part of [`Self::to_json`].
    pub device: Device,
}

impl Default for BayesSearchConfig {
    /// The reference's CIFAR-10 settings (spec §4.4) at λ = 0.01.
    fn default() -> Self {
        Self {
            layers: 8,
            init_channels: 36,
            batch_size: 18,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            switch_lr: 0.1,
            switch_momentum: 0.9,
            lambda_origin: 0.01,
            lambda_child: 0.01,
            t_max: 1,
            warmup_portion: 0.1,
            switch_portion: 0.9,
            warmup_steps: None,
            switch_steps: None,
            hessian: HessianMethod::Hutchinson,
            hessian_probes: 32,
            hessian_eps: 1e-2,
            augment: Augment { crop_padding: 4, flip: true, cutout: 16 },
            seed: 0,
            eval_batch_size: 100,
            max_valid_samples: None,
            device: Device::Cpu,
        }
    }
}

impl BayesSearchConfig {
    fn validate(&self) -> Result<()> {
        if self.t_max == 0 || self.batch_size == 0 || self.eval_batch_size == 0 || self.layers < 3 {
            bail!("bayesnas.search: t_max, batch_size and eval_batch_size must be at least 1, layers at least 3 (two reduction cells)");
        }
        if !(self.lambda_origin > 0.0 && self.lambda_child > 0.0) {
            bail!("bayesnas.search: lambda_origin and lambda_child must be positive (the paper's released cells use 0.005, 0.007, 0.01)");
        }
        let (w, s) = (self.warmup_portion, self.switch_portion);
        if !(w > 0.0 && s > 0.0 && w + s <= 1.0 + 1e-9) {
            bail!("bayesnas.search: warmup_portion ({w}) and switch_portion ({s}) must be positive and sum to at most 1 (the subsets are disjoint)");
        }
        if self.hessian_probes == 0 || self.hessian_eps <= 0.0 {
            bail!("bayesnas.search: hessian_probes must be at least 1 and hessian_eps positive");
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "layers": self.layers, "init_channels": self.init_channels, "batch_size": self.batch_size,
            "lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
            "switch_lr": self.switch_lr, "switch_momentum": self.switch_momentum,
            "lambda_origin": self.lambda_origin, "lambda_child": self.lambda_child, "t_max": self.t_max,
            "warmup_portion": self.warmup_portion, "switch_portion": self.switch_portion,
            "warmup_steps": self.warmup_steps, "switch_steps": self.switch_steps,
            "hessian": match self.hessian { HessianMethod::Hutchinson => "hutchinson", HessianMethod::Exact => "exact" },
            "hessian_probes": self.hessian_probes, "hessian_eps": self.hessian_eps,
            "augment": crate::darts::search::augment_json(&self.augment),
            "seed": self.seed, "eval_batch_size": self.eval_batch_size, "max_valid_samples": self.max_valid_samples,
        })
    }
}

pub struct BayesSearchOutcome {
    pub normal: SwitchStats,
    pub reduce: SwitchStats,
    /// γ of both cell types after each round.
    pub rounds: Vec<(SwitchStats, SwitchStats)>,
    /// One record per phase.
    pub metrics: Vec<Value>,
    pub final_metrics: Value,
    /// Supernet weights, BN statistics and `switches.{cell}`.
    pub supernet_weights: PathBuf,
}

// RNG streams
const STREAM_INIT: u64 = 0;
const STREAM_SPLIT: u64 = 1;
const STREAM_HESSIAN: u64 = 2;
const STREAM_EVAL: u64 = 3;
const STREAM_PHASE_BASE: u64 = 100;

/// Disjoint warm-up and switch subsets of one seeded shuffle of `train`.
fn split(train: &Dataset, cfg: &BayesSearchConfig) -> Result<(Dataset, Dataset)> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..train.len()).collect();
    idx.shuffle(&mut rng_for(cfg.seed, STREAM_SPLIT));
    let nw = (train.len() as f64 * cfg.warmup_portion).floor() as usize;
    let ns = ((train.len() as f64 * cfg.switch_portion).floor() as usize).min(train.len() - nw);
    for (what, n) in [("warm-up", nw), ("switch", ns)] {
        if n < cfg.batch_size {
            bail!(
                "bayesnas.search: the {what} subset has {n} images, fewer than one batch of {}; \
                 raise its portion or lower batch_size",
                cfg.batch_size
            );
        }
    }
    Ok((train.subset(&idx[..nw]), train.subset(&idx[nw..nw + ns])))
}

/// Σ over cell types, edges and switch types of λ_t · ω · ‖s over the cells of the type‖₂.
fn regulariser(net: &Supernet, stats: [&SwitchStats; 2], cfg: &BayesSearchConfig) -> candle_core::Result<Tensor> {
    let dev = net.switches().first().map_or(Device::Cpu, |v| v.device().clone());
    let mut total = Tensor::zeros((), DType::F32, &dev)?;
    for (reduction, st) in [(false, stats[0]), (true, stats[1])] {
        let cells = net.cells_of(reduction);
        let vars: Vec<Tensor> = cells.iter().map(|&c| net.switches()[c].as_tensor().clone()).collect();
        let mut coef = Vec::with_capacity(EDGES * NUM_SWITCHES);
        for e in 0..EDGES {
            for t in 0..NUM_SWITCHES {
                let lambda = if t == 0 { cfg.lambda_origin } else { cfg.lambda_child };
                coef.push((lambda * st.omega_of(e, t) as f64) as f32);
            }
        }
        let coef = Tensor::from_vec(coef, (EDGES, NUM_SWITCHES), &dev)?;
        // +1e-12 inside the root keeps the gradient finite if a group reaches exactly 0
        let norms = (Tensor::stack(&vars, 0)?.sqr()?.sum(0)? + 1e-12)?.sqrt()?;
        total = (total + (norms * coef)?.sum_all()?)?;
    }
    Ok(total)
}

/// Mean loss and top-1 accuracy (percent) on `ds`, eval mode.
fn infer(net: &Supernet, ds: &Dataset, batch: usize, seed: u64, device: &Device) -> Result<(f64, f64)> {
    let mut rng = rng_for(seed, STREAM_EVAL);
    let (mut l, mut a) = (Meter::default(), Meter::default());
    for b in batches(ds, batch, false, &Augment::default(), &mut rng, false) {
        let (x, y) = b?;
        let (x, y) = (x.to_device(device)?, y.to_device(device)?);
        let n = y.dims1()?;
        let logits = net.forward_t(&x, false)?.detach();
        l.add(scalar(&candle_nn::loss::cross_entropy(&logits, &y)?)?, n);
        a.add(top1_percent(&logits, &y)?, n);
    }
    Ok((l.mean(), a.mean()))
}

/// Splits a flat `[cells, 8, 8]` vector of all cells into the normal and reduction parts.
fn by_type(net: &Supernet, all: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = EDGES * NUM_SWITCHES;
    let mut out = (Vec::new(), Vec::new());
    for (c, red) in net.reductions().into_iter().enumerate() {
        let part = &all[c * n..(c + 1) * n];
        if red { out.1.extend_from_slice(part) } else { out.0.extend_from_slice(part) }
    }
    out
}

/// The diagonal Hessian of the summed NLL on (x, y) with respect to every switch.
pub fn switch_hessian(
    net: &Supernet,
    varmap: &VarMap,
    x: &Tensor,
    y: &Tensor,
    method: HessianMethod,
    probes: usize,
    eps: f32,
    rng: &mut Rng,
) -> Result<Vec<f32>> {
    let weights = crate::params::trainable_vars(varmap);
    let stats = non_trainable_vars(varmap, &weights)?;
    let saved: Vec<Tensor> = stats.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?;
    let s0 = net.switch_values()?;
    let b = y.dims1()? as f64;
    let mut grad = |s: &[f32]| -> Result<Vec<f32>> {
        net.set_switch_values(s)?;
        let loss = (candle_nn::loss::cross_entropy(&net.forward_t(x, true)?, y)? * b)?;
        Ok(net.switch_grads(&loss.backward()?)?)
    };
    let h = match method {
        HessianMethod::Hutchinson => hutchinson_diag(&mut grad, &s0, probes, eps, rng),
        HessianMethod::Exact => exact_diag(&mut grad, &s0, eps),
    };
    net.set_switch_values(&s0)?;
    for ((_, v), t) in stats.iter().zip(saved) {
        v.set(&t)?;
    }
    h
}

/// What a checkpoint keeps besides tensors: everything the loop accumulates.
#[derive(serde::Serialize, serde::Deserialize)]
struct History {
    /// One record per completed phase (its length is the resume point).
    metrics: Vec<Value>,
    normal: SwitchStats,
    reduce: SwitchStats,
    rounds: Vec<(SwitchStats, SwitchStats)>,
    /// The Hessian probe stream is one stream for the whole run; its position
    /// (a u128, as a string for JSON) makes a resumed run draw the same probes.
    hessian_rng_word_pos: String,
}

/// Writes `work_dir/checkpoint.*` after a phase (atomic; see [`Checkpoint`]).
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    work_dir: &Path,
    config_json: &Value,
    varmap: &VarMap,
    sgd_w: &Sgd,
    sgd_s: &Sgd,
    switch_vars: &[(String, candle_core::Var)],
    hess_rng: &Rng,
    [normal, reduce]: [&SwitchStats; 2],
    rounds: &[(SwitchStats, SwitchStats)],
    metrics: &[Value],
) -> Result<()> {
    let history = History {
        metrics: metrics.to_vec(),
        normal: normal.clone(),
        reduce: reduce.clone(),
        rounds: rounds.to_vec(),
        hessian_rng_word_pos: hess_rng.get_word_pos().to_string(),
    };
    let extra = switch_vars.iter().map(|(n, v)| Ok((n.clone(), cpu_copy(v.as_tensor())?))).collect::<candle_core::Result<_>>()?;
    Checkpoint {
        model: snapshot_varmap(varmap)?,
        optimizers: [("weights".to_string(), sgd_w.state()), ("switches".to_string(), sgd_s.state())].into_iter().collect(),
        extra,
        meta: json!({ "config": config_json, "history": history }),
    }
    .save(work_dir)
}

/// Runs the search; the supernet weights are written to `work_dir`. A
/// checkpoint is written there after every phase, and a rerun with the same
/// settings (t_max may grow) resumes after the last completed phase, with
/// the same results as an uninterrupted run.
pub fn search(cfg: &BayesSearchConfig, data: &DataSplits, work_dir: &Path, observer: &mut dyn Observer) -> Result<BayesSearchOutcome> {
    cfg.validate()?;
    let device = cfg.device.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net_cfg = BayesNetConfig {
        in_channels: data.train.channels,
        num_classes: data.train.num_classes,
        init_channels: cfg.init_channels,
        layers: cfg.layers,
    };
    let net = Supernet::new(&net_cfg, vb).context("building the BayesNAS one-shot network")?;
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(cfg.seed, STREAM_INIT))?;
    let weights = crate::params::trainable_vars(&varmap);
    let switch_vars: Vec<(String, candle_core::Var)> =
        net.switches().iter().enumerate().map(|(i, v)| (format!("switches.{i:02}"), v.clone())).collect();
    let mut sgd_w = Sgd::new(weights, cfg.lr, cfg.momentum, cfg.weight_decay);
    let mut sgd_s = Sgd::new(switch_vars.clone(), cfg.switch_lr, cfg.switch_momentum, 0.0);

    let (warm, sw) = split(&data.train, cfg)?;
    let valid = match cfg.max_valid_samples {
        Some(n) if n < data.test.len() => data.test.subset(&(0..n).collect::<Vec<_>>()),
        _ => data.test.clone(),
    };
    let n_normal = net.cells_of(false).len();
    let n_reduce = net.cells_of(true).len();
    let mut normal = SwitchStats::initial(n_normal);
    let mut reduce = SwitchStats::initial(n_reduce);
    let mut rounds: Vec<(SwitchStats, SwitchStats)> = Vec::new();
    let mut metrics: Vec<Value> = Vec::new();
    let mut hess_rng = rng_for(cfg.seed, STREAM_HESSIAN);
    let no_cutout = Augment { cutout: 0, ..cfg.augment.clone() };
    let advice = "lower lr / switch_lr or the lambdas and rerun.";

    // Resume from the checkpoint of the last completed phase, if any.
    let config_json = cfg.to_json();
    let first_phase = match Checkpoint::load(work_dir, &device)? {
        None => 0,
        Some(ck) => {
            check_resumable(&ck.meta, &config_json, "t_max", 2 * cfg.t_max, "phases", work_dir)?;
            restore_varmap(&varmap, &ck.model, "bayesnas.search checkpoint")?;
            sgd_w.load_state(ck.optimizer("weights"))?;
            sgd_s.load_state(ck.optimizer("switches"))?;
            for (name, v) in &switch_vars {
                v.set(ck.extra(name)?)?;
            }
            let h: History = serde_json::from_value(ck.meta["history"].clone()).with_context(|| {
                format!("bayesnas.search checkpoint in {} has no readable history; delete it to restart", work_dir.display())
            })?;
            let pos: u128 = h.hessian_rng_word_pos.parse().with_context(|| format!("bayesnas.search checkpoint in {}: bad RNG position", work_dir.display()))?;
            hess_rng.set_word_pos(pos);
            (normal, reduce, rounds, metrics) = (h.normal, h.reduce, h.rounds, h.metrics);
            tracing::info!(phase = metrics.len(), "bayesnas.search: resuming from checkpoint in {}", work_dir.display());
            metrics.len()
        }
    };

    let phases = [("warmup", &warm, &cfg.augment, cfg.warmup_steps), ("switch", &sw, &no_cutout, cfg.switch_steps)];
    for index in first_phase..2 * cfg.t_max {
        let (round, p) = (index / 2, index % 2);
        let (phase, ds, aug, cap) = phases[p];
        {
            let started = Instant::now();
            let full = ds.len() / cfg.batch_size; // drop_last, as the reference
            let steps = cap.map_or(full, |c| c.min(full));
            observer.epoch_start(index, 2 * cfg.t_max, steps);
            let mut rng = rng_for(cfg.seed, STREAM_PHASE_BASE + index as u64);
            let (mut loss_m, mut acc_m, mut reg_m) = (Meter::default(), Meter::default(), Meter::default());
            let mut last: Option<(Tensor, Tensor)> = None;
            for (step, b) in batches(ds, cfg.batch_size, true, aug, &mut rng, true).take(steps).enumerate() {
                let (x, y) = b?;
                let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
                let n = y.dims1()?;
                let logits = net.forward_t(&x, true)?;
                let nll = candle_nn::loss::cross_entropy(&logits, &y)?;
                let nll_v = scalar(&nll)?;
                ensure_finite(nll_v, &format!("bayesnas.search: {phase} loss (round {round})"), index, step, advice)?;
                if phase == "warmup" {
                    sgd_w.step(&nll.backward()?)?;
                } else {
                    let reg = regulariser(&net, [&normal, &reduce], cfg)?;
                    reg_m.add(scalar(&reg)?, n);
                    let grads = (nll + reg)?.backward()?;
                    sgd_w.step(&grads)?;
                    sgd_s.step(&grads)?;
                    last = Some((x, y.clone()));
                }
                loss_m.add(nll_v, n);
                acc_m.add(top1_percent(&logits, &y)?, n);
                observer.step(step, loss_m.mean(), acc_m.mean());
            }
            let mut record = json!({
                "round": round, "phase": phase, "steps": steps,
                "train_loss": loss_m.mean(), "train_acc": acc_m.mean(),
            });
            if let Some((x, y)) = last {
                let h_all = switch_hessian(&net, &varmap, &x, &y, cfg.hessian, cfg.hessian_probes, cfg.hessian_eps as f32, &mut hess_rng)?;
                if h_all.iter().any(|v| !v.is_finite()) {
                    bail!("bayesnas.search: the switch Hessian is not finite in round {round}; {advice}");
                }
                let (sn, sr) = by_type(&net, &net.switch_values()?);
                let (hn, hr) = by_type(&net, &h_all);
                normal.update(&sn, &hn, cfg.lambda_origin, cfg.lambda_child);
                reduce.update(&sr, &hr, cfg.lambda_origin, cfg.lambda_child);
                rounds.push((normal.clone(), reduce.clone()));
                record["regulariser"] = json!(reg_m.mean());
                record["hessian_mean"] = json!(h_all.iter().map(|&v| v.max(0.0) as f64).sum::<f64>() / h_all.len() as f64);
            }
            let (vl, va) = infer(&net, &valid, cfg.eval_batch_size, cfg.seed, &device)?;
            record["valid_loss"] = json!(vl);
            record["valid_acc"] = json!(va);
            record["seconds"] = json!(started.elapsed().as_secs_f64());
            tracing::info!(round, phase, train_loss = loss_m.mean(), valid_acc = va, "bayesnas phase done");
            metrics.push(record.clone());
            save_checkpoint(work_dir, &config_json, &varmap, &sgd_w, &sgd_s, &switch_vars, &hess_rng, [&normal, &reduce], &rounds, &metrics)?;
            observer.epoch_end(&record);
        }
    }

    let mut tensors = snapshot_varmap(&varmap)?;
    for (name, v) in &switch_vars {
        tensors.insert(name.clone(), cpu_copy(v.as_tensor())?);
    }
    let supernet_weights = work_dir.join("supernet.safetensors");
    save_safetensors_atomic(&tensors, &supernet_weights)?;
    let mut final_metrics = metrics.last().cloned().unwrap_or_else(|| json!({}));
    final_metrics["params"] = json!(crate::params::count_params(&varmap, None));
    final_metrics["switches"] = json!((n_normal + n_reduce) * EDGES * NUM_SWITCHES);
    Ok(BayesSearchOutcome { normal, reduce, rounds, metrics, final_metrics, supernet_weights })
}
