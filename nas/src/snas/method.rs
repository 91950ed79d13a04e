//! SNAS as an [`ArchMethod`] over the DARTS supernet: log α logits,
//! Gumbel-softmax mixing weights, a resource penalty added to the training
//! loss, and a single-level architecture step (SGD or Adam, clipped) from the
//! same backward pass as the weights.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var, D};
use rand_distr::{Distribution, StandardNormal};
use serde_json::{json, Value};

use super::gumbel::{gumbel_noise, relaxed_sample};
use super::resource::{ResourceConfig, ResourceModel};
use super::schedule::Temperature;
use crate::darts::search::{ArchMethod, EpochAlphas};
use crate::genotype::{try_derive_edge_all, Genotype};
use crate::rng::{rng_for, Rng};
use crate::train::optim::{clip_grad_norm, Adam, Sgd};

/// The architecture optimiser: the single-GPU code's plain SGD, or the
/// distributed code's Adam (betas and L2 from the search config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchOptimizer {
    Sgd,
    Adam,
}

/// SNAS's own settings (what the DARTS search config does not cover).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SnasSettings {
    #[serde(skip)]
    pub temperature: Temperature,
    /// Constant drop-path probability on every edge (0.3 in the README command).
    pub drop_path_prob: f64,
    pub arch_optimizer: ArchOptimizer,
    /// Global-norm clip of the log α gradients (10 in the code).
    pub arch_grad_clip: f64,
    /// log α ~ N(mean, std²) (1 and 0.01 in the code).
    pub alpha_init_mean: f64,
    pub alpha_init_std: f64,
    pub resource: ResourceConfig,
}

impl Default for SnasSettings {
    fn default() -> Self {
        Self {
            temperature: Temperature::default(),
            drop_path_prob: 0.3,
            arch_optimizer: ArchOptimizer::Sgd,
            arch_grad_clip: 10.0,
            alpha_init_mean: 1.0,
            alpha_init_std: 0.01,
            resource: ResourceConfig::default(),
        }
    }
}

impl SnasSettings {
    pub fn validate(&self) -> Result<()> {
        self.temperature.validate()?;
        if !(0.0..1.0).contains(&self.drop_path_prob) {
            bail!("snas: drop_path_prob must be in [0, 1), got {}", self.drop_path_prob);
        }
        if self.arch_grad_clip.is_nan() || self.arch_grad_clip <= 0.0 {
            bail!("snas: arch_grad_clip must be positive, got {}", self.arch_grad_clip);
        }
        if !(self.resource.lambda >= 0.0 && self.resource.lambda.is_finite()) {
            bail!("snas: resource_lambda must be a finite number >= 0, got {}", self.resource.lambda);
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let t = &self.temperature;
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "temperature".into(),
                json!({ "initial": t.initial, "minimum": t.minimum, "horizon": t.horizon,
                        "step_at_start": t.step_at_start }),
            );
        }
        v
    }
}

enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
}

// Per-epoch RNG streams, disjoint from the DARTS loop's (1000 + 8·epoch + k).
const STREAM_SNAS_BASE: u64 = 1 << 40;

/// The RNG stream that the supernet's edge drop path draws from; SNAS
/// reseeds it every epoch so that a resumed search draws what an
/// uninterrupted one would.
pub type SharedRng = Rc<RefCell<Rng>>;

pub struct Snas {
    log_alphas: [Var; 2],
    named: Vec<(String, Var)>,
    optimizer: Optimizer,
    settings: SnasSettings,
    seed: u64,
    temperature: f64,
    sample_rng: Rng,
    eval_rng: Rng,
    drop_rng: SharedRng,
    last_sample: Option<[Tensor; 2]>,
    resource: ResourceModel,
    primitives: Vec<&'static str>,
    steps: usize,
}

impl Snas {
    /// `arch`: (lr, beta1, beta2, weight decay); SGD uses only the lr, with
    /// no momentum and no weight decay, as the single-GPU code.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        edges: usize,
        primitives: Vec<&'static str>,
        steps: usize,
        settings: SnasSettings,
        arch: (f64, f64, f64, f64),
        resource: ResourceModel,
        seed: u64,
        init_rng: &mut Rng,
        drop_rng: SharedRng,
        device: &Device,
    ) -> Result<Self> {
        settings.validate()?;
        let ops = primitives.len();
        if resource.shape() != (edges, ops) {
            bail!(
                "snas: cost tables are {:?}, the supernet has {edges} edges x {ops} ops",
                resource.shape()
            );
        }
        let mut init = || -> Result<Var> {
            let values: Vec<f32> = (0..edges * ops)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(init_rng);
                    (settings.alpha_init_mean + settings.alpha_init_std * z) as f32
                })
                .collect();
            Ok(Var::from_tensor(&Tensor::from_vec(values, (edges, ops), device)?)?)
        };
        let log_alphas = [init()?, init()?];
        let named = vec![
            ("normal_log_alpha".to_string(), log_alphas[0].clone()),
            ("reduce_log_alpha".to_string(), log_alphas[1].clone()),
        ];
        let (lr, b1, b2, wd) = arch;
        let optimizer = match settings.arch_optimizer {
            ArchOptimizer::Sgd => Optimizer::Sgd(Sgd::new(named.clone(), lr, 0.0, 0.0)),
            ArchOptimizer::Adam => Optimizer::Adam(Adam::new(named.clone(), lr, (b1, b2), 1e-8, wd)),
        };
        let temperature = settings.temperature.for_epoch(0);
        Ok(Self {
            log_alphas,
            named,
            optimizer,
            settings,
            seed,
            temperature,
            sample_rng: rng_for(seed, STREAM_SNAS_BASE),
            eval_rng: rng_for(seed, STREAM_SNAS_BASE + 1),
            drop_rng,
            last_sample: None,
            resource,
            primitives,
            steps,
        })
    }

    pub fn log_alpha_vars(&self) -> &[Var; 2] {
        &self.log_alphas
    }

    /// The temperature of the current epoch.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    fn stream(&self, epoch: usize, k: u64) -> Rng {
        rng_for(self.seed, STREAM_SNAS_BASE + 4 * (epoch as u64 + 1) + k)
    }
}

impl ArchMethod for Snas {
    fn mixing(&mut self, train: bool) -> Result<(Tensor, Tensor)> {
        let rng = if train { &mut self.sample_rng } else { &mut self.eval_rng };
        let mut sample = |a: &Var| -> Result<Tensor> {
            let (e, k) = a.as_tensor().dims2()?;
            let noise = gumbel_noise(rng, e, k, a.as_tensor().device())?;
            Ok(relaxed_sample(a.as_tensor(), &noise, self.temperature)?)
        };
        let zn = sample(&self.log_alphas[0])?;
        let zr = sample(&self.log_alphas[1])?;
        if train {
            self.last_sample = Some([zn.clone(), zr.clone()]);
        }
        Ok((zn, zr))
    }

    fn arch_step(
        &mut self,
        _net: &crate::darts::architect::NetVars,
        _sgd: &Sgd,
        _train: crate::darts::architect::Batch,
        _valid: crate::darts::architect::Batch,
    ) -> Result<f64> {
        bail!("SNAS is single-level: its architecture step runs from the weight backward")
    }

    fn single_level(&self) -> bool {
        true
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        self.temperature = self.settings.temperature.for_epoch(epoch);
        self.sample_rng = self.stream(epoch, 0);
        self.eval_rng = self.stream(epoch, 1);
        *self.drop_rng.borrow_mut() = self.stream(epoch, 2);
        Ok(())
    }

    fn extra_loss(&mut self) -> Result<Option<Tensor>> {
        let lambda = self.settings.resource.lambda;
        if lambda == 0.0 {
            return Ok(None);
        }
        let Some([zn, zr]) = &self.last_sample else {
            bail!("snas: the resource loss needs a training-mode sample first");
        };
        let p = self.resource.penalty(
            &self.settings.resource,
            [zn, zr],
            [self.log_alphas[0].as_tensor(), self.log_alphas[1].as_tensor()],
            self.temperature,
        )?;
        Ok(Some((p * lambda)?))
    }

    fn after_weight_backward(&mut self, grads: &mut GradStore) -> Result<()> {
        self.last_sample = None;
        clip_grad_norm(grads, &self.named, self.settings.arch_grad_clip)?;
        match &mut self.optimizer {
            Optimizer::Sgd(o) => o.step(grads),
            Optimizer::Adam(o) => o.step(grads),
        }
    }

    fn epoch_metrics(&self) -> Result<serde_json::Map<String, Value>> {
        let e = self.resource.expected([
            self.log_alphas[0].as_tensor(),
            self.log_alphas[1].as_tensor(),
        ])?;
        let mut m = serde_json::Map::new();
        m.insert("temperature".into(), json!(self.temperature));
        m.insert("expected_size".into(), json!(e.size));
        m.insert("expected_flops".into(), json!(e.flops));
        m.insert("expected_mac".into(), json!(e.mac));
        Ok(m)
    }

    fn config_json(&self) -> Value {
        self.settings.to_json()
    }

    fn alphas(&self) -> Result<EpochAlphas> {
        Ok(EpochAlphas {
            normal: self.log_alphas[0].as_tensor().to_vec2()?,
            reduce: self.log_alphas[1].as_tensor().to_vec2()?,
        })
    }

    /// Per-edge argmax over all ops, `none` included; every edge kept (§3.7).
    fn genotype(&self) -> Result<Genotype> {
        let p = |a: &Var| -> Result<Vec<Vec<f32>>> {
            Ok(candle_nn::ops::softmax(a.as_tensor(), D::Minus1)?.to_vec2()?)
        };
        try_derive_edge_all(&p(&self.log_alphas[0])?, &p(&self.log_alphas[1])?, &self.primitives, self.steps)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (name, v) in &self.named {
            out.push((name.clone(), v.as_tensor().copy()?));
        }
        let opt = match &self.optimizer {
            Optimizer::Sgd(o) => o.state(),
            Optimizer::Adam(o) => o.state(),
        };
        out.extend(opt.into_iter().map(|(k, t)| (format!("opt.{k}"), t)));
        Ok(out)
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let mut opt = Vec::new();
        let mut seen = [false, false];
        for (key, t) in state {
            if let Some(i) = self.named.iter().position(|(n, _)| n == key) {
                let var = &self.named[i].1;
                if t.shape() != var.shape() {
                    bail!("checkpoint `{key}` has shape {:?}, expected {:?}", t.shape(), var.shape());
                }
                var.set(t)?;
                seen[i] = true;
            } else if let Some(rest) = key.strip_prefix("opt.") {
                opt.push((rest.to_string(), t.clone()));
            } else {
                bail!("unexpected SNAS state entry `{key}`");
            }
        }
        if seen != [true, true] {
            bail!("checkpoint lacks the SNAS log-alphas");
        }
        match &mut self.optimizer {
            Optimizer::Sgd(o) => o.load_state(&opt),
            Optimizer::Adam(o) => o.load_state(&opt),
        }
    }
}
