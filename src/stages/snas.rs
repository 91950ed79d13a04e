//! `snas.search`: SNAS (Xie et al., ICLR 2019) on the stage's data set, on
//! the DARTS supernet and search loop.

use super::common::{load_data, opt, write_genotype, write_jsonl, write_npy};
use super::progress::StageProgress;
use crate::engine::atomic;
use crate::engine::op::{param, port, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::{Context, Result};
use nasflow_nas::data::Augment;
use nasflow_nas::snas::{search, ArchOptimizer, Estimator, Penalty, ResourceConfig, SnasConfig, SnasSettings, Temperature};
use serde_json::json;

pub fn spec() -> OpSpec {
    let d = SnasConfig::default();
    let (s, n) = (&d.search, &d.snas);
    let r = &n.resource;
    OpSpec {
        name: "snas.search",
        version: 1,
        doc: "SNAS search (Xie et al., ICLR 2019): the DARTS supernet mixed by Gumbel-softmax samples of log-alphas at a linearly annealed temperature, weights and architecture trained single-level on the same batches, with a resource penalty (size, FLOPs, memory access). Defaults are the code's CIFAR-10 settings (README command).",
        params: vec![
            param("layers", ParamType::Int, json!(s.layers), "cells in the supernet"),
            param("init_channels", ParamType::Int, json!(s.init_channels), "channels of the first cell"),
            param("epochs", ParamType::Int, json!(s.epochs), "search epochs"),
            param("batch_size", ParamType::Int, json!(s.batch_size), "batch size"),
            param("lr", ParamType::Float, json!(s.lr), "weight SGD learning rate (cosine-annealed)"),
            param("lr_min", ParamType::Float, json!(s.lr_min), "cosine floor"),
            param("momentum", ParamType::Float, json!(s.momentum), "weight SGD momentum"),
            param("weight_decay", ParamType::Float, json!(s.weight_decay), "weight SGD coupled L2"),
            param("grad_clip", ParamType::Float, json!(s.grad_clip), "global norm clip of the weight gradients"),
            param("arch_optimizer", ParamType::Choice(&["sgd", "adam"]), json!("sgd"), "log-alpha optimiser: plain SGD (the single-GPU code) or Adam (the distributed code)"),
            param("arch_lr", ParamType::Float, json!(s.arch_lr), "log-alpha learning rate"),
            param("arch_beta1", ParamType::Float, json!(s.arch_beta1), "Adam beta1 (arch_optimizer: adam)"),
            param("arch_beta2", ParamType::Float, json!(s.arch_beta2), "Adam beta2 (arch_optimizer: adam)"),
            param("arch_weight_decay", ParamType::Float, json!(s.arch_weight_decay), "Adam coupled L2 (arch_optimizer: adam; SGD has none)"),
            param("arch_grad_clip", ParamType::Float, json!(n.arch_grad_clip), "global norm clip of the log-alpha gradients"),
            param("alpha_init_mean", ParamType::Float, json!(n.alpha_init_mean), "log-alphas start at N(mean, std^2)"),
            param("alpha_init_std", ParamType::Float, json!(n.alpha_init_std), "log-alphas start at N(mean, std^2)"),
            param("temp", ParamType::Float, json!(n.temperature.initial), "initial Gumbel-softmax temperature"),
            param("temp_min", ParamType::Float, json!(n.temperature.minimum), "final (minimum) temperature"),
            param("temp_horizon", ParamType::Int, json!(n.temperature.horizon), "epochs of the linear temperature decay (the code hard-codes 150 whatever `epochs` is)"),
            param("temp_step_at_start", ParamType::Bool, json!(n.temperature.step_at_start), "epoch e samples at temperature(e+1), as the code; false: temperature(e)"),
            param("drop_path", ParamType::Float, json!(n.drop_path_prob), "constant drop-path probability on every edge of the supernet"),
            param("resource_lambda", ParamType::Float, json!(r.lambda), "weight of the resource penalty (0: off); larger gives a smaller child"),
            param("resource_method", ParamType::Choice(&["reparametrization", "discrete", "policy_gradient"]), json!("reparametrization"), "estimator of the resource gradient"),
            param("log_penalty", ParamType::Bool, json!(r.penalty == Penalty::Log), "log penalty (mean of log size, log FLOPs, log MAC); false: linear"),
            param("minus_baseline", ParamType::Bool, json!(r.minus_baseline), "policy_gradient: subtract the average op cost from each edge's reward"),
            param("reduce_ratio", ParamType::Float, json!(r.reduce_ratio), "weight of the reduction cells' penalty"),
            param("train_portion", ParamType::Float, json!(s.train_portion), "1: train on the whole training set and monitor on the test set (the code); below 1: train on that part, monitor on the rest (the 25k/25k reading)"),
            param("seed", ParamType::Int, json!(s.seed), "seed of every random draw"),
            param("steps_per_epoch", ParamType::Int, json!(0), "cap on training steps per epoch (0: all)"),
            param("scheduler_step_at_start", ParamType::Bool, json!(s.scheduler_step_at_start), "epoch e uses lr(e+1), as the code"),
            param("crop_padding", ParamType::Int, json!(s.augment.crop_padding), "random crop padding (0: off)"),
            param("flip", ParamType::Bool, json!(s.augment.flip), "random horizontal flip (off for digits)"),
            param("cutout", ParamType::Int, json!(s.augment.cutout), "cutout box size (0: off)"),
            param("eval_batch_size", ParamType::Int, json!(s.eval_batch_size), "batch size of monitoring passes"),
            param("max_valid_samples", ParamType::Int, json!(0), "monitor on only this many samples (0: all)"),
        ],
        inputs: Ports::Fixed(vec![]),
        outputs: Ports::Fixed(vec![
            port("alphas", "alphas", "log-alphas: normal.npy, reduce.npy, alphas.safetensors, and per epoch under epochs/"),
            port("genotype", "genotype", "the child: genotype.json and genotype.txt in the edge_all form (every edge, `none` for absent ones); pairs.json/pairs.txt (8-entry form) when every node keeps two inputs"),
            port("genotypes", "genotypes", "the edge_all genotype after every epoch (epoch_NNN.txt)"),
            port("supernet", "supernet.safetensors", "supernet weights and BN statistics"),
            port("metrics", "metrics.json", "final metrics"),
            port("curve", "metrics.jsonl", "one record per epoch: losses, accuracies, temperature, expected size/FLOPs/MAC of the current distribution"),
        ]),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        run,
    }
}

pub fn config(ctx: &StageCtx) -> Result<SnasConfig> {
    let d = SnasConfig::default();
    let search = nasflow_nas::darts::search::SearchConfig {
        layers: ctx.usize("layers")?,
        init_channels: ctx.usize("init_channels")?,
        epochs: ctx.usize("epochs")?,
        batch_size: ctx.usize("batch_size")?,
        lr: ctx.float("lr")?,
        lr_min: ctx.float("lr_min")?,
        momentum: ctx.float("momentum")?,
        weight_decay: ctx.float("weight_decay")?,
        arch_lr: ctx.float("arch_lr")?,
        arch_beta1: ctx.float("arch_beta1")?,
        arch_beta2: ctx.float("arch_beta2")?,
        arch_weight_decay: ctx.float("arch_weight_decay")?,
        grad_clip: ctx.float("grad_clip")?,
        train_portion: ctx.float("train_portion")?,
        seed: ctx.int("seed")? as u64,
        steps_per_epoch: opt(ctx.usize("steps_per_epoch")?),
        scheduler_step_at_start: ctx.bool("scheduler_step_at_start")?,
        augment: Augment { crop_padding: ctx.usize("crop_padding")?, flip: ctx.bool("flip")?, cutout: ctx.usize("cutout")? },
        eval_batch_size: ctx.usize("eval_batch_size")?,
        max_valid_samples: opt(ctx.usize("max_valid_samples")?),
        ..d.search
    };
    let snas = SnasSettings {
        temperature: Temperature {
            initial: ctx.float("temp")?,
            minimum: ctx.float("temp_min")?,
            horizon: ctx.usize("temp_horizon")?,
            step_at_start: ctx.bool("temp_step_at_start")?,
        },
        drop_path_prob: ctx.float("drop_path")?,
        arch_optimizer: if ctx.str("arch_optimizer")? == "adam" { ArchOptimizer::Adam } else { ArchOptimizer::Sgd },
        arch_grad_clip: ctx.float("arch_grad_clip")?,
        alpha_init_mean: ctx.float("alpha_init_mean")?,
        alpha_init_std: ctx.float("alpha_init_std")?,
        resource: ResourceConfig {
            lambda: ctx.float("resource_lambda")?,
            estimator: Estimator::from_name(ctx.str("resource_method")?)?,
            penalty: if ctx.bool("log_penalty")? { Penalty::Log } else { Penalty::Linear },
            minus_baseline: ctx.bool("minus_baseline")?,
            reduce_ratio: ctx.float("reduce_ratio")?,
        },
    };
    Ok(SnasConfig { search, snas })
}

fn run(ctx: &StageCtx) -> Result<()> {
    let cfg = config(ctx)?;
    let data = load_data(ctx)?;
    let mut progress = StageProgress::new(ctx);
    let (outcome, state) = search(&cfg, &data, &ctx.work_dir, &mut progress)?;
    let out = &ctx.out_dir;
    write_npy(&out.join("alphas/normal.npy"), &outcome.alphas_normal)?;
    write_npy(&out.join("alphas/reduce.npy"), &outcome.alphas_reduce)?;
    let mut all = std::collections::HashMap::new();
    let t = |rows: &Vec<Vec<f32>>| -> Result<candle_core::Tensor> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Ok(candle_core::Tensor::from_vec(flat, (rows.len(), rows.first().map(Vec::len).unwrap_or(0)), &candle_core::Device::Cpu)?)
    };
    all.insert("normal".to_string(), t(&outcome.alphas_normal)?);
    all.insert("reduce".to_string(), t(&outcome.alphas_reduce)?);
    for (e, a) in state.alphas_per_epoch.iter().enumerate() {
        write_npy(&out.join(format!("alphas/epochs/{e:03}_normal.npy")), &a.normal)?;
        write_npy(&out.join(format!("alphas/epochs/{e:03}_reduce.npy")), &a.reduce)?;
        all.insert(format!("epoch_{e:03}.normal"), t(&a.normal)?);
        all.insert(format!("epoch_{e:03}.reduce"), t(&a.reduce)?);
    }
    candle_core::safetensors::save(&all, out.join("alphas/alphas.safetensors")).context("writing alphas.safetensors")?;
    write_genotype(&out.join("genotype"), &outcome.genotype)?;
    // The 8-entry form (SNAS_* in genotypes.py) exists when every node keeps two inputs.
    let pairs = outcome.genotype.without_none();
    if pairs.normal.is_pairs() && pairs.reduce.is_pairs() {
        atomic::write(&out.join("genotype/pairs.json"), pairs.to_json().as_bytes())?;
        atomic::write(&out.join("genotype/pairs.txt"), format!("{}\n", pairs.to_darts_text()).as_bytes())?;
    }
    for (e, g) in outcome.genotypes_per_epoch.iter().enumerate() {
        atomic::write(&out.join(format!("genotypes/epoch_{e:03}.txt")), format!("{}\n", g.to_darts_text()).as_bytes())?;
    }
    std::fs::copy(&state.supernet_weights, out.join("supernet.safetensors")).context("copying the supernet weights")?;
    write_jsonl(&out.join("metrics.jsonl"), &state.metrics)?;
    atomic::write_json(&out.join("metrics.json"), &outcome.final_metrics)?;
    Ok(())
}
