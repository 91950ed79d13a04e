//! The DARTS search (spec §2.3–§2.6): bi-level optimisation of the supernet
//! weights (SGD on the train half) and the architecture parameters α (Adam
//! on the valid half), first or second order.
//!
//! The loop itself (data, weight step, clipping, validation, checkpoints,
//! resume) is method-agnostic: what is DARTS-specific (the α parameters, how
//! they become mixing weights, the architecture step, the genotype rule)
//! sits behind [`ArchMethod`], so SNAS (Gumbel-softmax sample as mixing
//! weights, single-level update) can reuse [`run_search`] with its own method.
//!
//! Learning-rate convention: epoch `e` (0-based) trains with `cosine(e)`
//! (PyTorch ≥ 1.1 and the naszilla fork: the first epoch uses `lr`). Set
//! `scheduler_step_at_start` for quark0's original `cosine(e + 1)`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand_distr::{Distribution, StandardNormal};
use serde_json::{json, Value};

use crate::darts::architect::{self, Batch, NetVars};
use crate::darts::model_search::{SearchNetConfig, SearchNetwork};
use crate::data::{batches, random_batch, search_split, Augment, DataSplits, Dataset};
use crate::genotype::{try_derive_darts, Genotype};
use crate::rng::{epoch_rng, rng_for, Rng};
use crate::train::checkpoint::{
    restore_varmap, save_safetensors_atomic, snapshot_varmap, Checkpoint,
};
use crate::train::metrics::{divergence_advice, ensure_finite, scalar, top1_percent, Meter};
use crate::train::optim::{clip_grad_norm, cosine_lr, Adam, Sgd};
use crate::train::Observer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    First,
    Second,
}

#[derive(Clone, Debug)]
pub struct SearchConfig {
    pub layers: usize,
    pub init_channels: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Weight SGD: initial lr, cosine floor, momentum, coupled L2.
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Architecture Adam: lr, betas, coupled L2.
    pub arch_lr: f64,
    pub arch_beta1: f64,
    pub arch_beta2: f64,
    pub arch_weight_decay: f64,
    /// Global L2 norm clip on the weight gradients (not α).
    pub grad_clip: f64,
    /// Fraction of the training set used for weights; the rest trains α.
    pub train_portion: f64,
    pub order: Order,
    pub seed: u64,
    /// α init: alpha_init_std · N(0, 1).
    pub alpha_init_std: f64,
    /// Cap on training steps per epoch, for quick runs.
    pub steps_per_epoch: Option<usize>,
    /// true: epoch e uses lr(e+1) (quark0); false: lr(e) (default).
    pub scheduler_step_at_start: bool,
    /// Augmentation of both halves (DARTS uses the training augmentation on both).
    pub augment: Augment,
    pub eval_batch_size: usize,
    /// Validate on only the first N samples of the valid half.
    pub max_valid_samples: Option<usize>,
    /// Where the supernet, α and batches live (CPU by default). Batches are
    /// decoded on the CPU and moved; random draws stay on nasflow's seeded
    /// CPU generator, and files are written from CPU copies. Not part of
    /// [`Self::to_json`]: the device does not change what may be resumed.
    pub device: Device,
}

impl Default for SearchConfig {
    /// DARTS's CIFAR-10 search settings (§2.4).
    fn default() -> Self {
        Self {
            layers: 8,
            init_channels: 16,
            epochs: 50,
            batch_size: 64,
            lr: 0.025,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            arch_lr: 3e-4,
            arch_beta1: 0.5,
            arch_beta2: 0.999,
            arch_weight_decay: 1e-3,
            grad_clip: 5.0,
            train_portion: 0.5,
            order: Order::First,
            seed: 2,
            alpha_init_std: 1e-3,
            steps_per_epoch: None,
            scheduler_step_at_start: false,
            augment: Augment {
                crop_padding: 4,
                flip: true,
                cutout: 0,
            },
            eval_batch_size: 64,
            max_valid_samples: None,
            device: Device::Cpu,
        }
    }
}

impl SearchConfig {
    /// Learning rate of (0-based) epoch `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let t = if self.scheduler_step_at_start {
            epoch + 1
        } else {
            epoch
        };
        cosine_lr(self.lr, self.lr_min, t.min(self.epochs), self.epochs)
    }

    /// Every field as JSON (stored in checkpoints to refuse resuming under another config).
    pub fn to_json(&self) -> Value {
        json!({
            "layers": self.layers, "init_channels": self.init_channels, "epochs": self.epochs,
            "batch_size": self.batch_size, "lr": self.lr, "lr_min": self.lr_min,
            "momentum": self.momentum, "weight_decay": self.weight_decay,
            "arch_lr": self.arch_lr, "arch_beta1": self.arch_beta1, "arch_beta2": self.arch_beta2,
            "arch_weight_decay": self.arch_weight_decay, "grad_clip": self.grad_clip,
            "train_portion": self.train_portion, "order": self.order, "seed": self.seed,
            "alpha_init_std": self.alpha_init_std, "steps_per_epoch": self.steps_per_epoch,
            "scheduler_step_at_start": self.scheduler_step_at_start,
            "augment": augment_json(&self.augment),
            "eval_batch_size": self.eval_batch_size, "max_valid_samples": self.max_valid_samples,
        })
    }

    fn validate(&self) -> Result<()> {
        self.validate_for(false)
    }

    /// `single_level`: the method trains weights and architecture on the same
    /// batches, so `train_portion = 1` (the whole training set) is allowed.
    fn validate_for(&self, single_level: bool) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 || self.layers == 0
        {
            bail!("search: epochs, batch_size, eval_batch_size and layers must be at least 1");
        }
        let portion_ok = self.train_portion > 0.0
            && (self.train_portion < 1.0 || (single_level && self.train_portion == 1.0));
        if !portion_ok {
            let range = if single_level { "(0, 1]" } else { "(0, 1)" };
            bail!(
                "search: train_portion must be in {range}, got {}",
                self.train_portion
            );
        }
        if self.init_channels == 0 {
            bail!("search: init_channels must be at least 1");
        }
        Ok(())
    }
}

pub(crate) fn augment_json(a: &Augment) -> Value {
    json!({ "crop_padding": a.crop_padding, "flip": a.flip, "cutout": a.cutout })
}

/// What the search found.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    pub genotype: Genotype,
    /// Raw α after the last epoch, [edges][ops].
    pub alphas_normal: Vec<Vec<f32>>,
    pub alphas_reduce: Vec<Vec<f32>>,
    /// The genotype derived at the end of each epoch.
    pub genotypes_per_epoch: Vec<Genotype>,
    /// The last epoch's record plus the supernet's parameter count.
    pub final_metrics: Value,
}

/// Raw α of both cell types at the end of one epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochAlphas {
    pub normal: Vec<Vec<f32>>,
    pub reduce: Vec<Vec<f32>>,
}

/// The rest of what a stage writes: per-epoch α and metrics, and files.
#[derive(Clone, Debug)]
pub struct SearchState {
    pub alphas_per_epoch: Vec<EpochAlphas>,
    /// One record per epoch: epoch, lr, train_loss, train_acc, valid_loss,
    /// valid_acc (percent), arch_loss, genotype (DARTS text), seconds.
    pub metrics: Vec<Value>,
    /// The supernet's VarMap (weights and BN running stats, no α) as safetensors.
    pub supernet_weights: PathBuf,
    /// The epoch that the run resumed from (0: fresh start).
    pub resumed_from_epoch: usize,
    /// Trainable supernet parameters (α excluded).
    pub params: usize,
}

/// The method-specific half of a gradient-based search.
pub trait ArchMethod {
    /// Mixing weights (normal, reduce) for the next forward pass.
    fn mixing(&mut self, train: bool) -> Result<(Tensor, Tensor)>;
    /// Update the architecture before the weight step of a training step.
    /// Returns the architecture loss it saw.
    fn arch_step(&mut self, net: &NetVars, sgd: &Sgd, train: Batch, valid: Batch) -> Result<f64>;
    /// Raw architecture parameters (normal, reduce), [edges][ops].
    fn alphas(&self) -> Result<EpochAlphas>;
    fn genotype(&self) -> Result<Genotype>;
    /// Tensors to checkpoint (parameters and optimiser state), and back.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;

    /// Single-level methods (SNAS) train the architecture from the same
    /// backward pass as the weights, on the same batch: the loop then skips
    /// [`Self::arch_step`] and the validation batches, adds
    /// [`Self::extra_loss`] to the training loss and calls
    /// [`Self::after_weight_backward`]. With `train_portion = 1` they train on
    /// the whole training set and monitor on the test set.
    fn single_level(&self) -> bool {
        false
    }
    /// Called before the first step of every (0-based) epoch, also after a
    /// resume: per-epoch schedules (temperature) and per-epoch RNG streams.
    fn start_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    /// A term added to the training loss of a single-level step, computed
    /// from the last training-mode [`Self::mixing`] (SNAS: resource penalty).
    fn extra_loss(&mut self) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// The architecture update of a single-level step, from the gradients of
    /// the training loss (weights already clipped, not yet stepped).
    fn after_weight_backward(&mut self, _grads: &mut GradStore) -> Result<()> {
        Ok(())
    }
    /// Extra fields for the epoch's metrics record (temperature, resource statistics).
    fn epoch_metrics(&self) -> Result<serde_json::Map<String, Value>> {
        Ok(serde_json::Map::new())
    }
    /// Method settings that a checkpoint must match to be resumed (Null: none).
    fn config_json(&self) -> Value {
        Value::Null
    }
}

/// Per-edge rows of an [edges × ops] matrix.
type Rows = Vec<Vec<f32>>;

/// DARTS: α ~ std·N(0,1), softmax mixing, Adam on α, first or second order.
pub struct Darts {
    alphas: [Var; 2],
    adam: Adam,
    order: Order,
    primitives: Vec<&'static str>,
    steps: usize,
}

impl Darts {
    pub fn new(
        edges: usize,
        primitives: Vec<&'static str>,
        steps: usize,
        cfg: &SearchConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self> {
        let ops = primitives.len();
        let mut init = || -> Result<Var> {
            let values: Vec<f32> = (0..edges * ops)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    (cfg.alpha_init_std * z) as f32
                })
                .collect();
            Ok(Var::from_tensor(&Tensor::from_vec(
                values,
                (edges, ops),
                device,
            )?)?)
        };
        let alphas = [init()?, init()?];
        let named = vec![
            ("alphas_normal".to_string(), alphas[0].clone()),
            ("alphas_reduce".to_string(), alphas[1].clone()),
        ];
        let adam = Adam::new(
            named,
            cfg.arch_lr,
            (cfg.arch_beta1, cfg.arch_beta2),
            1e-8,
            cfg.arch_weight_decay,
        );
        Ok(Self {
            alphas,
            adam,
            order: cfg.order,
            primitives,
            steps,
        })
    }

    pub fn alpha_vars(&self) -> &[Var; 2] {
        &self.alphas
    }

    fn probabilities(&self) -> Result<(Rows, Rows)> {
        let (n, r) = architect::softmax_mixing(&self.alphas)?;
        Ok((n.to_vec2()?, r.to_vec2()?))
    }
}

impl ArchMethod for Darts {
    fn mixing(&mut self, _train: bool) -> Result<(Tensor, Tensor)> {
        architect::softmax_mixing(&self.alphas)
    }

    fn arch_step(&mut self, net: &NetVars, sgd: &Sgd, train: Batch, valid: Batch) -> Result<f64> {
        let (grads, loss) = match self.order {
            Order::First => architect::first_order(net, &self.alphas, valid)?,
            Order::Second => architect::second_order(net, &self.alphas, train, valid, sgd)?,
        };
        let [gn, gr] = grads;
        self.adam.step_with(&[Some(gn), Some(gr)])?;
        Ok(loss)
    }

    fn alphas(&self) -> Result<EpochAlphas> {
        Ok(EpochAlphas {
            normal: self.alphas[0].as_tensor().to_vec2()?,
            reduce: self.alphas[1].as_tensor().to_vec2()?,
        })
    }

    fn genotype(&self) -> Result<Genotype> {
        let (n, r) = self.probabilities()?;
        try_derive_darts(&n, &r, &self.primitives, self.steps)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            (
                "alphas_normal".to_string(),
                self.alphas[0].as_tensor().copy()?,
            ),
            (
                "alphas_reduce".to_string(),
                self.alphas[1].as_tensor().copy()?,
            ),
        ];
        out.extend(
            self.adam
                .state()
                .into_iter()
                .map(|(k, t)| (format!("adam.{k}"), t)),
        );
        Ok(out)
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let mut adam = Vec::new();
        let mut seen = [false, false];
        for (key, t) in state {
            match key.as_str() {
                "alphas_normal" | "alphas_reduce" => {
                    let i = usize::from(key == "alphas_reduce");
                    if t.shape() != self.alphas[i].shape() {
                        bail!(
                            "checkpoint `{key}` has shape {:?}, expected {:?}",
                            t.shape(),
                            self.alphas[i].shape()
                        );
                    }
                    self.alphas[i].set(t)?;
                    seen[i] = true;
                }
                k => match k.strip_prefix("adam.") {
                    Some(rest) => adam.push((rest.to_string(), t.clone())),
                    None => bail!("unexpected DARTS state entry `{key}`"),
                },
            }
        }
        if seen != [true, true] {
            bail!("checkpoint lacks the architecture parameters");
        }
        self.adam.load_state(&adam)
    }
}

// RNG streams of a seeded search: one per purpose, per epoch, so that a
// resumed run draws exactly what an uninterrupted one would.
const STREAM_WEIGHT_INIT: u64 = 0;
const STREAM_ALPHA_INIT: u64 = 1;
const STREAM_EVAL: u64 = 2;

/// DARTS search on `data.train` (split by `train_portion` into the weight and
/// architecture halves, in data-set order). `work_dir` is private and
/// persistent across attempts: a checkpoint is written there after every
/// epoch, and a rerun resumes from the last completed epoch with results
/// identical to an uninterrupted run. Asking for more epochs than a finished
/// run had continues it (the epochs done keep the lr they were trained with).
pub fn search(
    cfg: &SearchConfig,
    data: &DataSplits,
    work_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<(SearchOutcome, SearchState)> {
    cfg.validate()?;
    let device = cfg.device.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net_cfg = SearchNetConfig {
        in_channels: data.train.channels,
        num_classes: data.train.num_classes,
        init_channels: cfg.init_channels,
        layers: cfg.layers,
        steps: 4,
        multiplier: 4,
        stem_multiplier: 3,
    };
    let primitives = nasflow_ops::Primitive::DARTS;
    let net = SearchNetwork::new(&net_cfg, &primitives, vb)
        .context("building the DARTS search network")?;
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(cfg.seed, STREAM_WEIGHT_INIT))?;
    let names: Vec<&'static str> = primitives.iter().map(|p| p.name()).collect();
    let mut method = Darts::new(
        net.num_edges(),
        names,
        4,
        cfg,
        &mut rng_for(cfg.seed, STREAM_ALPHA_INIT),
        &device,
    )?;
    run_search(cfg, data, work_dir, observer, &net, &varmap, &mut method)
}

/// The method-agnostic search loop over a built, initialised supernet.
pub fn run_search(
    cfg: &SearchConfig,
    data: &DataSplits,
    work_dir: &Path,
    observer: &mut dyn Observer,
    net: &dyn architect::MixedNet,
    varmap: &VarMap,
    method: &mut dyn ArchMethod,
) -> Result<(SearchOutcome, SearchState)> {
    let single_level = method.single_level();
    cfg.validate_for(single_level)?;
    let device = cfg.device.clone();
    let (train_set, valid_set) = if single_level && cfg.train_portion == 1.0 {
        // SNAS's code: everything trains, the test set only monitors.
        (data.train.clone(), data.test.clone())
    } else {
        search_split(&data.train, cfg.train_portion)
    };
    if train_set.is_empty() || valid_set.is_empty() {
        bail!(
            "search: train_portion {} of {} images leaves an empty half; use more data or another portion",
            cfg.train_portion,
            data.train.len()
        );
    }
    let valid_capped;
    let valid_eval: &Dataset = match cfg.max_valid_samples {
        Some(n) if n < valid_set.len() => {
            valid_capped = valid_set.subset(&(0..n).collect::<Vec<_>>());
            &valid_capped
        }
        _ => &valid_set,
    };

    let weights = crate::params::trainable_vars(varmap);
    let buffers = non_trainable_vars(varmap, &weights)?;
    let params = crate::params::count_params(varmap, None);
    let mut sgd = Sgd::new(weights.clone(), cfg.lr, cfg.momentum, cfg.weight_decay);
    let netvars = NetVars {
        net,
        weights: &weights,
        buffers: &buffers,
    };

    let mut config_json = cfg.to_json();
    let method_config = method.config_json();
    if !method_config.is_null() {
        if let Some(obj) = config_json.as_object_mut() {
            obj.insert("method".into(), method_config);
        }
    }
    let mut history = History::default();
    let resumed_from_epoch = match Checkpoint::load(work_dir, &device)? {
        None => 0,
        Some(ck) => {
            check_resumable(&ck.meta, &config_json, "epochs", cfg.epochs, "epochs", work_dir)?;
            restore_varmap(varmap, &ck.model, "search checkpoint")?;
            sgd.load_state(ck.optimizer("weights"))?;
            method.load_state(ck.optimizer("arch"))?;
            history = serde_json::from_value(ck.meta["history"].clone()).with_context(|| {
                format!(
                    "search checkpoint in {} has no readable history; delete it to restart",
                    work_dir.display()
                )
            })?;
            tracing::info!(
                epoch = history.metrics.len(),
                "search: resuming from checkpoint in {}",
                work_dir.display()
            );
            history.metrics.len()
        }
    };

    let steps_full = train_set.len().div_ceil(cfg.batch_size);
    let steps = cfg
        .steps_per_epoch
        .map_or(steps_full, |cap| cap.min(steps_full));

    for epoch in resumed_from_epoch..cfg.epochs {
        let started = Instant::now();
        let lr = cfg.lr_at(epoch);
        sgd.set_lr(lr);
        method.start_epoch(epoch)?;
        observer.epoch_start(epoch, cfg.epochs, steps);
        let advice = divergence_advice(epoch, work_dir, "lr / arch_lr (or grad_clip)");

        let mut data_rng = epoch_rng(cfg.seed, epoch, 0);
        let mut valid_rng = epoch_rng(cfg.seed, epoch, 1);
        let (mut loss_m, mut acc_m, mut arch_m) =
            (Meter::default(), Meter::default(), Meter::default());
        for (step, batch) in batches(
            &train_set,
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
            if single_level {
                let (mix_n, mix_r) = method.mixing(true)?;
                let logits = net.logits(&x, &mix_n, &mix_r, true)?;
                let err = candle_nn::loss::cross_entropy(&logits, &y)?;
                let loss_value = scalar(&err)?;
                ensure_finite(loss_value, "search: training loss", epoch, step, &advice)?;
                let loss = match method.extra_loss()? {
                    Some(extra) => {
                        let extra_value = scalar(&extra)?;
                        ensure_finite(extra_value, "search: architecture loss", epoch, step, &advice)?;
                        arch_m.add(extra_value, n);
                        (err + extra)?
                    }
                    None => err,
                };
                let mut grads = loss.backward()?;
                clip_grad_norm(&mut grads, &weights, cfg.grad_clip)?;
                method.after_weight_backward(&mut grads)?;
                sgd.step(&grads)?;
                loss_m.add(loss_value, n);
                acc_m.add(top1_percent(&logits, &y)?, n);
                observer.step(step, loss_m.mean(), acc_m.mean());
                continue;
            }
            let (xv, yv) = random_batch(&valid_set, cfg.batch_size, &cfg.augment, &mut valid_rng)?;
            let (xv, yv) = (xv.to_device(&device)?, yv.to_device(&device)?);

            let arch_loss = method.arch_step(
                &netvars,
                &sgd,
                Batch { x: &x, y: &y },
                Batch { x: &xv, y: &yv },
            )?;
            ensure_finite(
                arch_loss,
                "search: architecture (validation) loss",
                epoch,
                step,
                &advice,
            )?;
            arch_m.add(arch_loss, yv.dims1()?);

            let (mix_n, mix_r) = method.mixing(true)?;
            let logits = net.logits(&x, &mix_n, &mix_r, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let loss_value = scalar(&loss)?;
            ensure_finite(loss_value, "search: training loss", epoch, step, &advice)?;
            let mut grads = loss.backward()?;
            clip_grad_norm(&mut grads, &weights, cfg.grad_clip)?;
            sgd.step(&grads)?;

            loss_m.add(loss_value, n);
            acc_m.add(top1_percent(&logits, &y)?, n);
            observer.step(step, loss_m.mean(), acc_m.mean());
        }

        let (mix_n, mix_r) = method.mixing(false)?;
        let (valid_loss, valid_acc) = infer(
            net,
            &mix_n,
            &mix_r,
            valid_eval,
            cfg.eval_batch_size,
            cfg.seed,
        )?;
        ensure_finite(valid_loss, "search: validation loss", epoch, steps, &advice)?;
        let genotype = method.genotype()?;
        let mut record = json!({
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_m.mean(),
            "train_acc": acc_m.mean(),
            "arch_loss": arch_m.mean(),
            "valid_loss": valid_loss,
            "valid_acc": valid_acc,
            "genotype": genotype.to_darts_text(),
            "seconds": started.elapsed().as_secs_f64(),
        });
        if let Some(obj) = record.as_object_mut() {
            obj.extend(method.epoch_metrics()?);
        }
        tracing::info!(
            epoch,
            lr,
            train_loss = loss_m.mean(),
            train_acc = acc_m.mean(),
            valid_loss,
            valid_acc,
            "search epoch done; genotype = {}",
            genotype.to_darts_text()
        );
        history.metrics.push(record.clone());
        history.alphas.push(method.alphas()?);
        history.genotypes.push(genotype);

        let ck = Checkpoint {
            model: snapshot_varmap(varmap)?,
            optimizers: [
                ("weights".to_string(), sgd.state()),
                ("arch".to_string(), method.state()?),
            ]
            .into_iter()
            .collect(),
            extra: Default::default(),
            meta: json!({ "config": config_json, "history": history }),
        };
        ck.save(work_dir)?;
        observer.epoch_end(&record);
    }

    let supernet_weights = work_dir.join("supernet.safetensors");
    save_safetensors_atomic(&snapshot_varmap(varmap)?, &supernet_weights)?;

    let genotype = method.genotype()?;
    let alphas = method.alphas()?;
    let mut final_metrics = history.metrics.last().cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = final_metrics.as_object_mut() {
        obj.insert("params".into(), json!(params));
        obj.insert("epochs".into(), json!(history.metrics.len()));
    }
    let outcome = SearchOutcome {
        genotype,
        alphas_normal: alphas.normal,
        alphas_reduce: alphas.reduce,
        genotypes_per_epoch: history.genotypes.clone(),
        final_metrics,
    };
    let state = SearchState {
        alphas_per_epoch: history.alphas,
        metrics: history.metrics,
        supernet_weights,
        resumed_from_epoch,
        params,
    };
    Ok((outcome, state))
}

/// Per-epoch results so far; stored in the checkpoint JSON.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct History {
    metrics: Vec<Value>,
    alphas: Vec<EpochAlphas>,
    genotypes: Vec<Genotype>,
}

/// Variables the forward pass writes but no optimiser owns (BN running stats), sorted.
pub fn non_trainable_vars(
    varmap: &VarMap,
    trainable: &[(String, Var)],
) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
    let mut out: Vec<(String, Var)> = data
        .iter()
        .filter(|(name, _)| !trainable.iter().any(|(t, _)| t == *name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Refuses to resume under a different configuration (only `growable`, the
/// loop's length setting, may change), or past `limit` completed `unit`s
/// (counted as `history.metrics` records).
pub(crate) fn check_resumable(
    meta: &Value,
    current: &Value,
    growable: &str,
    limit: usize,
    unit: &str,
    dir: &Path,
) -> Result<()> {
    let saved = &meta["config"];
    let mut differing = Vec::new();
    if let (Some(saved), Some(current)) = (saved.as_object(), current.as_object()) {
        for (key, value) in current {
            if key != growable && saved.get(key) != Some(value) {
                differing.push(format!(
                    "{key}: checkpoint {} vs now {}",
                    saved.get(key).unwrap_or(&Value::Null),
                    value
                ));
            }
        }
    } else {
        bail!(
            "checkpoint in {} has no config; delete it to restart",
            dir.display()
        );
    }
    if !differing.is_empty() {
        bail!(
            "the checkpoint in {} was written under another configuration ({}); delete it to restart",
            dir.display(),
            differing.join(", ")
        );
    }
    let done = meta["history"]["metrics"].as_array().map_or(0, |m| m.len());
    if done > limit {
        bail!(
            "the checkpoint in {} has {done} {unit} done, more than the {limit} asked for; delete it to restart",
            dir.display()
        );
    }
    Ok(())
}

/// Mean loss and top-1 accuracy (percent) over a data set, eval mode, no augmentation.
fn infer(
    net: &dyn architect::MixedNet,
    mix_n: &Tensor,
    mix_r: &Tensor,
    ds: &Dataset,
    batch_size: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    let (mix_n, mix_r) = (mix_n.detach(), mix_r.detach());
    let device = mix_n.device().clone();
    let mut rng = rng_for(seed, STREAM_EVAL); // unused when not shuffling
    let (mut loss_m, mut acc_m) = (Meter::default(), Meter::default());
    for batch in batches(ds, batch_size, false, &Augment::default(), &mut rng, false) {
        let (x, y) = batch?;
        let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
        let n = y.dims1()?;
        let logits = net.logits(&x, &mix_n, &mix_r, false)?.detach();
        loss_m.add(scalar(&candle_nn::loss::cross_entropy(&logits, &y)?)?, n);
        acc_m.add(top1_percent(&logits, &y)?, n);
    }
    Ok((loss_m.mean(), acc_m.mean()))
}
