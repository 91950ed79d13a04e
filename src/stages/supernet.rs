//! What the supernet search ops (DARTS, SNAS) share: the params of the
//! weight training and data, reading them into a `SearchConfig`, and the
//! artifacts every search writes.

use super::common::{opt, write_genotype, write_jsonl, write_npy};
use crate::engine::atomic;
use crate::engine::op::{param, port, ParamSpec, ParamType, PortSpec, StageCtx};
use anyhow::{Context, Result};
use nasflow_nas::darts::search::{SearchConfig, SearchOutcome, SearchState};
use nasflow_nas::data::Augment;
use serde_json::json;
use std::path::Path;

/// Params of the supernet, its weight optimiser and its data, with `d`'s values as defaults.
pub fn params(d: &SearchConfig) -> Vec<ParamSpec> {
    vec![
        param("layers", ParamType::Int, json!(d.layers), "cells in the supernet"),
        param("init_channels", ParamType::Int, json!(d.init_channels), "channels of the first cell"),
        param("epochs", ParamType::Int, json!(d.epochs), "search epochs"),
        param("batch_size", ParamType::Int, json!(d.batch_size), "batch size"),
        param("lr", ParamType::Float, json!(d.lr), "weight SGD learning rate (cosine-annealed)"),
        param("lr_min", ParamType::Float, json!(d.lr_min), "cosine floor"),
        param("momentum", ParamType::Float, json!(d.momentum), "weight SGD momentum"),
        param("weight_decay", ParamType::Float, json!(d.weight_decay), "weight SGD coupled L2"),
        param("grad_clip", ParamType::Float, json!(d.grad_clip), "global norm clip of the weight gradients"),
        param("arch_lr", ParamType::Float, json!(d.arch_lr), "architecture learning rate"),
        param("arch_beta1", ParamType::Float, json!(d.arch_beta1), "architecture Adam beta1"),
        param("arch_beta2", ParamType::Float, json!(d.arch_beta2), "architecture Adam beta2"),
        param("arch_weight_decay", ParamType::Float, json!(d.arch_weight_decay), "architecture Adam coupled L2"),
        param("seed", ParamType::Int, json!(d.seed), "seed of every random draw"),
        param("steps_per_epoch", ParamType::Int, json!(0), "cap on training steps per epoch (0: all)"),
        param("scheduler_step_at_start", ParamType::Bool, json!(d.scheduler_step_at_start), "epoch e uses lr(e+1), as the original code (PyTorch 0.3) did"),
        param("crop_padding", ParamType::Int, json!(d.augment.crop_padding), "random crop padding (0: off)"),
        param("flip", ParamType::Bool, json!(d.augment.flip), "random horizontal flip (off for digits)"),
        param("cutout", ParamType::Int, json!(d.augment.cutout), "cutout box size (0: off)"),
        param("eval_batch_size", ParamType::Int, json!(d.eval_batch_size), "batch size of validation passes"),
        param("max_valid_samples", ParamType::Int, json!(0), "validate on only this many samples (0: all)"),
    ]
}

/// The shared params read over `base` (which holds the method's own choices).
pub fn config(ctx: &StageCtx, base: SearchConfig) -> Result<SearchConfig> {
    Ok(SearchConfig {
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
        ..base
    })
}

/// The outputs every supernet search has; `what` names its architecture weights.
pub fn outputs(what: &'static str, genotype_doc: &'static str, curve_doc: &'static str) -> Vec<PortSpec> {
    vec![
        port("alphas", "alphas", what),
        port("genotype", "genotype", genotype_doc),
        port("genotypes", "genotypes", "the genotype derived after every epoch (epoch_NNN.txt)"),
        port("supernet", "supernet.safetensors", "supernet weights and BN statistics"),
        port("metrics", "metrics.json", "final metrics"),
        port("curve", "metrics.jsonl", curve_doc),
    ]
}

fn tensor(rows: &[Vec<f32>]) -> Result<candle_core::Tensor> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(candle_core::Tensor::from_vec(flat, (rows.len(), rows.first().map(Vec::len).unwrap_or(0)), &candle_core::Device::Cpu)?)
}

/// Architecture weights (final and per epoch, .npy and one .safetensors),
/// genotypes, supernet weights and metrics, into the stage's output folder.
pub fn write_outputs(out: &Path, outcome: &SearchOutcome, state: &SearchState) -> Result<()> {
    write_npy(&out.join("alphas/normal.npy"), &outcome.alphas_normal)?;
    write_npy(&out.join("alphas/reduce.npy"), &outcome.alphas_reduce)?;
    let mut all = std::collections::HashMap::new();
    all.insert("normal".to_string(), tensor(&outcome.alphas_normal)?);
    all.insert("reduce".to_string(), tensor(&outcome.alphas_reduce)?);
    for (e, a) in state.alphas_per_epoch.iter().enumerate() {
        write_npy(&out.join(format!("alphas/epochs/{e:03}_normal.npy")), &a.normal)?;
        write_npy(&out.join(format!("alphas/epochs/{e:03}_reduce.npy")), &a.reduce)?;
        all.insert(format!("epoch_{e:03}.normal"), tensor(&a.normal)?);
        all.insert(format!("epoch_{e:03}.reduce"), tensor(&a.reduce)?);
    }
    candle_core::safetensors::save(&all, out.join("alphas/alphas.safetensors")).context("writing alphas.safetensors")?;
    write_genotype(&out.join("genotype"), &outcome.genotype)?;
    for (e, g) in outcome.genotypes_per_epoch.iter().enumerate() {
        atomic::write(&out.join(format!("genotypes/epoch_{e:03}.txt")), format!("{}\n", g.to_darts_text()).as_bytes())?;
    }
    std::fs::copy(&state.supernet_weights, out.join("supernet.safetensors")).context("copying the supernet weights")?;
    write_jsonl(&out.join("metrics.jsonl"), &state.metrics)?;
    atomic::write_json(&out.join("metrics.json"), &outcome.final_metrics)
}
