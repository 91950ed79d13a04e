//! Entry point of an SNAS search: the DARTS supernet with edge drop path,
//! SNAS's method, and the shared search loop.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::cost::network_costs;
use super::method::{SharedRng, Snas, SnasSettings};
use super::resource::ResourceModel;
use crate::darts::architect::MixedNet;
use crate::darts::model_search::{EdgeDropPath, SearchNetConfig, SearchNetwork};
use crate::darts::search::{run_search, SearchConfig, SearchOutcome, SearchState};
use crate::data::{Augment, DataSplits};
use crate::rng::rng_for;
use crate::train::Observer;

/// Everything an SNAS search needs: the shared search settings (network,
/// weight optimiser, data, epochs; `arch_*` configure the architecture
/// optimiser) and SNAS's own.
#[derive(Clone, Debug)]
pub struct SnasConfig {
    pub search: SearchConfig,
    pub snas: SnasSettings,
}

impl Default for SnasConfig {
    /// The README command (§3.5): 150 epochs, batch 64, L=8, C=16, seed 6,
    /// drop path 0.3, temperature 1 → 0.03, reparametrization with the log
    /// penalty and η = 1.5e-3, arch SGD lr 3e-4; the whole training set
    /// trains (train_portion 1), the test set monitors; the weight lr, like
    /// the temperature, steps at the start of an epoch as in the code.
    fn default() -> Self {
        Self {
            search: SearchConfig {
                epochs: 150,
                seed: 6,
                train_portion: 1.0,
                scheduler_step_at_start: true,
                augment: Augment { crop_padding: 4, flip: true, cutout: 0 },
                ..SearchConfig::default()
            },
            snas: SnasSettings::default(),
        }
    }
}

/// The supernet with SNAS's constant drop path on every edge in training.
pub struct DropPathNet<'a> {
    pub net: &'a SearchNetwork,
    pub prob: f32,
    pub rng: SharedRng,
}

impl MixedNet for DropPathNet<'_> {
    fn logits(&self, x: &Tensor, normal: &Tensor, reduce: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if !train || self.prob == 0.0 {
            return self.net.forward_t(x, normal, reduce, train);
        }
        let mut rng = self.rng.borrow_mut();
        let mut drop = EdgeDropPath { prob: self.prob, rng: &mut rng };
        self.net.forward_drop_path(x, normal, reduce, train, Some(&mut drop))
    }
}

// Same streams as the DARTS search: weights 0, architecture init 1.
const STREAM_WEIGHT_INIT: u64 = 0;
const STREAM_ALPHA_INIT: u64 = 1;

/// SNAS search on `data` (the whole training set with `train_portion = 1`,
/// else its first part, monitoring on the rest). Checkpoints and resume as
/// [`crate::darts::search::search`].
pub fn search(
    cfg: &SnasConfig,
    data: &DataSplits,
    work_dir: &Path,
    observer: &mut dyn Observer,
) -> Result<(SearchOutcome, SearchState)> {
    cfg.snas.validate()?;
    let s = &cfg.search;
    if data.train.height != data.train.width {
        bail!(
            "snas: the resource cost tables assume square images; this data set has {}x{}",
            data.train.height,
            data.train.width
        );
    }
    let device = s.device.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let steps = 4;
    let net_cfg = SearchNetConfig {
        in_channels: data.train.channels,
        num_classes: data.train.num_classes,
        init_channels: s.init_channels,
        layers: s.layers,
        steps,
        multiplier: 4,
        stem_multiplier: 3,
    };
    let primitives = nasflow_ops::Primitive::DARTS;
    let net = SearchNetwork::new(&net_cfg, &primitives, vb).context("building the SNAS search network")?;
    nasflow_ops::init_pytorch_default(&varmap, &mut rng_for(s.seed, STREAM_WEIGHT_INIT))?;
    let costs = network_costs(&primitives, steps, s.layers, s.init_channels, data.train.height)?;
    let resource = ResourceModel::new(&costs, &device)?;
    let drop_rng: SharedRng = Rc::new(RefCell::new(rng_for(s.seed, 0)));
    let names: Vec<&'static str> = primitives.iter().map(|p| p.name()).collect();
    let mut method = Snas::new(
        net.num_edges(),
        names,
        steps,
        cfg.snas.clone(),
        (s.arch_lr, s.arch_beta1, s.arch_beta2, s.arch_weight_decay),
        resource,
        s.seed,
        &mut rng_for(s.seed, STREAM_ALPHA_INIT),
        drop_rng.clone(),
        &device,
    )?;
    let wrapped = DropPathNet { net: &net, prob: cfg.snas.drop_path_prob as f32, rng: drop_rng };
    run_search(s, data, work_dir, observer, &wrapped, &varmap, &mut method)
}
