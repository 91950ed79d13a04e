//! Retraining a genotype from scratch (DARTS `train.py`, spec §2.8) and
//! evaluating the trained weights (`test.py`).
//!
//! Learning-rate convention: epoch `e` (0-based) trains with
//! `cosine(lr, lr_min, e, epochs)`, the same convention as the search
//! default (quark0 stepped the scheduler first, i.e. used e+1). Drop-path
//! probability of epoch e is `drop_path_prob · e / epochs`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

use crate::darts::model::{EvalNetConfig, EvalNetwork, EvalOptions};
use crate::darts::search::{augment_json, check_resumable};
use crate::data::{batches, Augment, DataSplits, Dataset};
use crate::genotype::Genotype;
use crate::rng::{epoch_rng, rng_for, Rng};
use crate::train::checkpoint::{
    restore_varmap, save_safetensors_atomic, snapshot_varmap, Checkpoint,
};
use crate::train::metrics::{divergence_advice, ensure_finite, scalar, top1_percent, Meter};
use crate::train::optim::{clip_grad_norm, cosine_lr, Sgd};
use crate::train::Observer;

/// Var-name prefix of the auxiliary head (left out of the parameter count).
pub const AUX_PREFIX: &str = "auxiliary";

/// Which evaluation network a genotype builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkKind {
    /// DARTS `NetworkCIFAR` (DARTS/SNAS ops, drop path, auxiliary head).
    #[default]
    Darts,
    /// The BayesNAS network (its own ops, channel dropout, no auxiliary
    /// head): `drop_path_prob` is then the final dropout2d probability.
    BayesNas,
}

/// The network being trained (one of the two families).
enum Net {
    Darts(EvalNetwork),
    BayesNas(crate::bayesnas::network::BayesNasNetwork),
}

impl Net {
    fn new(cfg: &TrainConfig, ds: &Dataset, genotype: &Genotype, vb: VarBuilder) -> Result<Net> {
        Ok(match cfg.network {
            NetworkKind::Darts => Net::Darts(EvalNetwork::new_with(&cfg.net_config(ds), genotype, &cfg.eval_options(), vb)?),
            NetworkKind::BayesNas => {
                let c = crate::bayesnas::network::BayesNetConfig {
                    in_channels: ds.channels,
                    num_classes: ds.num_classes,
                    init_channels: cfg.init_channels,
                    layers: cfg.layers,
                };
                Net::BayesNas(crate::bayesnas::network::BayesNasNetwork::new(&c, genotype, vb)?)
            }
        })
    }

    fn forward_t(&self, x: &candle_core::Tensor, train: bool, p: f32, rng: &mut Rng) -> candle_core::Result<(candle_core::Tensor, Option<candle_core::Tensor>)> {
        match self {
            Net::Darts(n) => n.forward_t(x, train, p, rng),
            Net::BayesNas(n) => Ok((n.forward_t(x, train, p, rng)?, None)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub init_channels: usize,
    pub layers: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Global L2 norm clip over all weights (auxiliary head included).
    pub grad_clip: f64,
    pub auxiliary: bool,
    pub auxiliary_weight: f64,
    /// Final drop-path probability (reached asymptotically: e/epochs < 1).
    pub drop_path_prob: f64,
    pub augment: Augment,
    pub seed: u64,
    /// Cap on training steps per epoch, for quick runs.
    pub steps_per_epoch: Option<usize>,
    pub eval_batch_size: usize,
    /// SNAS's retrain ops: an affine BN after every pool (DARTS: none).
    pub pool_bn_affine: bool,
    pub network: NetworkKind,
    /// Where the network and batches live (CPU by default), for training and
    /// for [`evaluate`]. Batches are decoded on the CPU and moved; random
    /// draws stay on nasflow's seeded CPU generator; weights files are
    /// written from CPU copies. Not part of [`Self::to_json`].
    pub device: Device,
}

impl Default for TrainConfig {
    /// DARTS's CIFAR-10 retrain settings (§2.8), with cutout.
    fn default() -> Self {
        Self {
            init_channels: 36,
            layers: 20,
            epochs: 600,
            batch_size: 96,
            lr: 0.025,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            auxiliary: true,
            auxiliary_weight: 0.4,
            drop_path_prob: 0.2,
            augment: Augment {
                crop_padding: 4,
                flip: true,
                cutout: 16,
            },
            seed: 0,
            steps_per_epoch: None,
            eval_batch_size: 96,
            pool_bn_affine: false,
            network: NetworkKind::Darts,
            device: Device::Cpu,
        }
    }
}

impl TrainConfig {
    pub fn lr_at(&self, epoch: usize) -> f64 {
        cosine_lr(self.lr, self.lr_min, epoch, self.epochs)
    }

    pub fn drop_prob_at(&self, epoch: usize) -> f64 {
        if self.epochs == 0 {
            0.0
        } else {
            self.drop_path_prob * epoch as f64 / self.epochs as f64
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "init_channels": self.init_channels, "layers": self.layers, "epochs": self.epochs,
            "batch_size": self.batch_size, "lr": self.lr, "lr_min": self.lr_min,
            "momentum": self.momentum, "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
            "auxiliary": self.auxiliary, "auxiliary_weight": self.auxiliary_weight,
            "drop_path_prob": self.drop_path_prob, "augment": augment_json(&self.augment),
            "seed": self.seed, "steps_per_epoch": self.steps_per_epoch,
            "eval_batch_size": self.eval_batch_size, "pool_bn_affine": self.pool_bn_affine,
        });
        // only when not DARTS, so checkpoints written before this field still resume
        if self.network == NetworkKind::BayesNas {
            v["network"] = json!("bayesnas");
        }
        v
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            bail!("train: epochs, batch_size and eval_batch_size must be at least 1");
        }
        if !(0.0..1.0).contains(&self.drop_path_prob) {
            bail!(
                "train: drop_path_prob must be in [0, 1), got {}",
                self.drop_path_prob
            );
        }
        if self.network == NetworkKind::BayesNas && self.auxiliary {
            bail!("train: the BayesNAS network has no auxiliary head; set `auxiliary: false`");
        }
        Ok(())
    }

    fn eval_options(&self) -> EvalOptions {
        EvalOptions { pool_bn_affine: self.pool_bn_affine }
    }

    fn net_config(&self, ds: &Dataset) -> EvalNetConfig {
        EvalNetConfig {
            in_channels: ds.channels,
            num_classes: ds.num_classes,
            init_channels: self.init_channels,
            layers: self.layers,
            auxiliary: self.auxiliary,
            stem_multiplier: 3,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Final weights (VarMap incl. BN running stats and the aux head), safetensors.
    pub weights_path: PathBuf,
    /// One record per epoch: epoch, lr, drop_prob, train_loss, train_acc,
    /// test_loss, test_acc (percent), seconds.
    pub metrics: Vec<Value>,
    /// The last record plus params (auxiliary head excluded).
    pub final_metrics: Value,
    pub params: usize,
    /// The epoch the run resumed from (0: fresh start).
    pub resumed_from_epoch: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalOutcome {
    /// Top-1 accuracy in percent; error = 100 − accuracy.
    pub accuracy: f64,
    pub error: f64,
    pub loss: f64,
    /// Trainable parameters without the auxiliary head.
    pub params: usize,
}

// RNG streams: weight init, then per epoch data order/augmentation and drop-path masks.
const STREAM_WEIGHT_INIT: u64 = 0;
const STREAM_EVAL: u64 = 2;

/// Trains `genotype` on `data.train`, evaluating on `data.test` after each
/// epoch. A checkpoint goes to `work_dir` after every epoch; a rerun resumes
/// from the last completed epoch with identical results.
pub fn train(
    cfg: &TrainConfig,
    genotype: &Genotype,
    data: &DataSplits,
    work_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let device = cfg.device.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net = Net::new(cfg, &data.train, genotype, vb)
        .context("building the evaluation network")?;
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(cfg.seed, STREAM_WEIGHT_INIT))?;
    let weights = crate::params::trainable_vars(&varmap);
    let params = crate::params::count_params(&varmap, Some(AUX_PREFIX));
    let mut sgd = Sgd::new(weights.clone(), cfg.lr, cfg.momentum, cfg.weight_decay);

    let mut metrics: Vec<Value> = Vec::new();
    let resumed_from_epoch = match Checkpoint::load(work_dir, &device)? {
        None => 0,
        Some(ck) => {
            let mut meta = ck.meta.clone();
            // check_resumable counts epochs done from history.metrics.
            check_resumable(&meta, &cfg.to_json(), "epochs", cfg.epochs, "epochs", work_dir)?;
            restore_varmap(&varmap, &ck.model, "train checkpoint")?;
            sgd.load_state(ck.optimizer("weights"))?;
            metrics =
                serde_json::from_value(meta["history"]["metrics"].take()).with_context(|| {
                    format!(
                        "train checkpoint in {} has no readable history; delete it to restart",
                        work_dir.display()
                    )
                })?;
            tracing::info!(
                epoch = metrics.len(),
                "train: resuming from checkpoint in {}",
                work_dir.display()
            );
            metrics.len()
        }
    };

    let steps_full = data.train.len().div_ceil(cfg.batch_size);
    let steps = cfg
        .steps_per_epoch
        .map_or(steps_full, |cap| cap.min(steps_full));
    for epoch in resumed_from_epoch..cfg.epochs {
        let started = Instant::now();
        let lr = cfg.lr_at(epoch);
        let drop_prob = cfg.drop_prob_at(epoch);
        sgd.set_lr(lr);
        observer.epoch_start(epoch, cfg.epochs, steps);
        let advice = divergence_advice(epoch, work_dir, "lr (or grad_clip)");

        let mut data_rng = epoch_rng(cfg.seed, epoch, 0);
        let mut drop_rng = epoch_rng(cfg.seed, epoch, 1);
        let (mut loss_m, mut acc_m) = (Meter::default(), Meter::default());
        for (step, batch) in batches(
            &data.train,
            cfg.batch_size,
            true,
            &cfg.augment,
            &mut data_rng,
            false,
        )
        .take(steps)
        .enumerate()
        {
            let (x, y) = batch?;
            let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
            let n = y.dims1()?;
            let (logits, aux) = net.forward_t(&x, true, drop_prob as f32, &mut drop_rng)?;
            let mut loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            if let Some(aux) = aux {
                loss =
                    (loss + (candle_nn::loss::cross_entropy(&aux, &y)? * cfg.auxiliary_weight)?)?;
            }
            let loss_value = scalar(&loss)?;
            ensure_finite(loss_value, "train: training loss", epoch, step, &advice)?;
            let mut grads = loss.backward()?;
            clip_grad_norm(&mut grads, &weights, cfg.grad_clip)?;
            sgd.step(&grads)?;
            loss_m.add(loss_value, n);
            acc_m.add(top1_percent(&logits, &y)?, n);
            observer.step(step, loss_m.mean(), acc_m.mean());
        }

        let (test_loss, test_acc) = infer(&net, &data.test, cfg.eval_batch_size, cfg.seed, &device)?;
        ensure_finite(test_loss, "train: test loss", epoch, steps, &advice)?;
        let record = json!({
            "epoch": epoch,
            "lr": lr,
            "drop_prob": drop_prob,
            "train_loss": loss_m.mean(),
            "train_acc": acc_m.mean(),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": started.elapsed().as_secs_f64(),
        });
        tracing::info!(
            epoch,
            lr,
            train_loss = loss_m.mean(),
            train_acc = acc_m.mean(),
            test_loss,
            test_acc,
            "train epoch done"
        );
        metrics.push(record.clone());
        let ck = Checkpoint {
            model: snapshot_varmap(&varmap)?,
            optimizers: [("weights".to_string(), sgd.state())].into_iter().collect(),
            extra: Default::default(),
            meta: json!({ "config": cfg.to_json(), "history": { "metrics": metrics } }),
        };
        ck.save(work_dir)?;
        observer.epoch_end(&record);
    }

    let weights_path = work_dir.join("weights.safetensors");
    save_safetensors_atomic(&snapshot_varmap(&varmap)?, &weights_path)?;
    let mut final_metrics = metrics.last().cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = final_metrics.as_object_mut() {
        obj.insert("params".into(), json!(params));
    }
    Ok(TrainOutcome {
        weights_path,
        metrics,
        final_metrics,
        params,
        resumed_from_epoch,
    })
}

/// Evaluates trained weights on `test` (eval mode: BN running stats, no drop
/// path, no auxiliary head, no augmentation). `cfg` gives the network shape
/// (init_channels, layers, auxiliary: the file must hold every var of that
/// network) and the batch size (`eval_batch_size`).
pub fn evaluate(
    weights_path: &Path,
    genotype: &Genotype,
    cfg: &TrainConfig,
    test: &Dataset,
) -> Result<EvalOutcome> {
    if cfg.eval_batch_size == 0 {
        bail!("evaluate: eval_batch_size must be at least 1");
    }
    let device = cfg.device.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net = Net::new(cfg, test, genotype, vb)
        .context("building the evaluation network")?;
    let values = candle_core::safetensors::load(weights_path, &device)
        .with_context(|| format!("reading weights {}", weights_path.display()))?;
    restore_varmap(
        &varmap,
        &values,
        &format!("weights file {}", weights_path.display()),
    )?;
    let params = crate::params::count_params(&varmap, Some(AUX_PREFIX));
    let (loss, accuracy) = infer(&net, test, cfg.eval_batch_size, cfg.seed, &device)?;
    Ok(EvalOutcome {
        accuracy,
        error: 100.0 - accuracy,
        loss,
        params,
    })
}

/// Mean loss and top-1 accuracy (percent) over a data set in eval mode.
fn infer(net: &Net, ds: &Dataset, batch_size: usize, seed: u64, device: &Device) -> Result<(f64, f64)> {
    // Neither batching without shuffle nor an eval forward draws from it.
    let (mut batch_rng, mut drop_rng) = (rng_for(seed, STREAM_EVAL), rng_for(seed, STREAM_EVAL));
    let (mut loss_m, mut acc_m) = (Meter::default(), Meter::default());
    for batch in batches(
        ds,
        batch_size,
        false,
        &Augment::default(),
        &mut batch_rng,
        false,
    ) {
        let (x, y) = batch?;
        let (x, y) = (x.to_device(device)?, y.to_device(device)?);
        let n = y.dims1()?;
        let (logits, _) = net.forward_t(&x, false, 0.0, &mut drop_rng)?;
        let logits = logits.detach();
        loss_m.add(scalar(&candle_nn::loss::cross_entropy(&logits, &y)?)?, n);
        acc_m.add(top1_percent(&logits, &y)?, n);
    }
    Ok((loss_m.mean(), acc_m.mean()))
}
