//! `bayesnas.search` and `bayesnas.derive`: BayesNAS (Zhou et al., ICML 2019)
//! as thin glue over `nasflow_nas::bayesnas`.

use super::common::{device, load_data, opt, write_genotype, write_jsonl};
use super::progress::StageProgress;
use crate::engine::atomic;
use crate::engine::op::{param, port, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::{Context, Result};
use nasflow_nas::bayesnas::derive::{derive, DEFAULT_THRESHOLD};
use nasflow_nas::bayesnas::search::{search, BayesSearchConfig, HessianMethod};
use nasflow_nas::bayesnas::{artifacts, update::SwitchStats};
use nasflow_nas::data::Augment;
use serde_json::json;

pub fn search_spec() -> OpSpec {
    let d = BayesSearchConfig::default();
    OpSpec {
        name: "bayesnas.search",
        version: 1,
        doc: "BayesNAS search: a one-shot network over BayesNAS's 8-edge cells with edge and op switches; per round a warm-up pass (weights), a switch-training pass with the re-weighted group lasso, the diagonal switch Hessian and the closed-form gamma/omega update. Checkpoints after every phase: a killed search resumes where it stopped, with the same result. Defaults are the reference's CIFAR-10 settings.",
        params: vec![
            param("layers", ParamType::Int, json!(d.layers), "cells in the one-shot network (reductions at L/3, 2L/3)"),
            param("init_channels", ParamType::Int, json!(d.init_channels), "channels of the first cell (36 in the paper)"),
            param("batch_size", ParamType::Int, json!(d.batch_size), "batch size of both phases"),
            param("lr", ParamType::Float, json!(d.lr), "weight SGD learning rate (constant)"),
            param("momentum", ParamType::Float, json!(d.momentum), "weight SGD momentum"),
            param("weight_decay", ParamType::Float, json!(d.weight_decay), "weight SGD coupled L2"),
            param("switch_lr", ParamType::Float, json!(d.switch_lr), "switch SGD learning rate"),
            param("switch_momentum", ParamType::Float, json!(d.switch_momentum), "switch SGD momentum"),
            param("lambda_origin", ParamType::Float, json!(d.lambda_origin), "group-lasso strength of the edge switches"),
            param("lambda_child", ParamType::Float, json!(d.lambda_child), "group-lasso strength of the op switches"),
            param("t_max", ParamType::Int, json!(d.t_max), "rounds of warm-up, switch training and update (the official code: 1)"),
            param("warmup_portion", ParamType::Float, json!(d.warmup_portion), "fraction of the training set for the warm-up phase"),
            param("switch_portion", ParamType::Float, json!(d.switch_portion), "fraction for the switch phase (disjoint from the warm-up part)"),
            param("warmup_steps", ParamType::Int, json!(0), "cap on warm-up steps per round (0: one pass)"),
            param("switch_steps", ParamType::Int, json!(0), "cap on switch-training steps per round (0: one pass)"),
            param("hessian", ParamType::Choice(&["hutchinson", "exact"]), json!("hutchinson"), "switch Hessian diagonal: Hutchinson (2 passes per probe) or coordinate finite differences (2 passes per switch)"),
            param("hessian_probes", ParamType::Int, json!(d.hessian_probes), "Rademacher probes of the Hutchinson estimate"),
            param("hessian_eps", ParamType::Float, json!(d.hessian_eps), "finite-difference step on the switches"),
            param("crop_padding", ParamType::Int, json!(d.augment.crop_padding), "random crop padding (0: off)"),
            param("flip", ParamType::Bool, json!(d.augment.flip), "random horizontal flip (off for digits)"),
            param("cutout", ParamType::Int, json!(d.augment.cutout), "cutout box of the warm-up phase (0: off); the switch phase has none"),
            param("seed", ParamType::Int, json!(d.seed), "seed of every random draw"),
            param("eval_batch_size", ParamType::Int, json!(d.eval_batch_size), "batch size of validation passes"),
            param("max_valid_samples", ParamType::Int, json!(0), "validate on only this many test images (0: all)"),
        ],
        inputs: Ports::Fixed(vec![]),
        outputs: Ports::Fixed(vec![
            port("switches", "switches", "gamma/omega/hessian/cov/switch _norm/_reduct .npy [cells, 8, 8] and .json {cell: {edge: {switch}}}, plus rounds/ (gamma after each round)"),
            port("supernet", "supernet.safetensors", "one-shot weights, BN statistics and switches"),
            port("metrics", "metrics.json", "final metrics"),
            port("curve", "metrics.jsonl", "one record per phase"),
        ]),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        uses_device: true,
        run: run_search,
    }
}

fn config(ctx: &StageCtx) -> Result<BayesSearchConfig> {
    Ok(BayesSearchConfig {
        layers: ctx.usize("layers")?,
        init_channels: ctx.usize("init_channels")?,
        batch_size: ctx.usize("batch_size")?,
        lr: ctx.float("lr")?,
        momentum: ctx.float("momentum")?,
        weight_decay: ctx.float("weight_decay")?,
        switch_lr: ctx.float("switch_lr")?,
        switch_momentum: ctx.float("switch_momentum")?,
        lambda_origin: ctx.float("lambda_origin")?,
        lambda_child: ctx.float("lambda_child")?,
        t_max: ctx.usize("t_max")?,
        warmup_portion: ctx.float("warmup_portion")?,
        switch_portion: ctx.float("switch_portion")?,
        warmup_steps: opt(ctx.usize("warmup_steps")?),
        switch_steps: opt(ctx.usize("switch_steps")?),
        hessian: if ctx.str("hessian")? == "exact" { HessianMethod::Exact } else { HessianMethod::Hutchinson },
        hessian_probes: ctx.usize("hessian_probes")?,
        hessian_eps: ctx.float("hessian_eps")?,
        augment: Augment { crop_padding: ctx.usize("crop_padding")?, flip: ctx.bool("flip")?, cutout: ctx.usize("cutout")? },
        seed: ctx.int("seed")? as u64,
        eval_batch_size: ctx.usize("eval_batch_size")?,
        max_valid_samples: opt(ctx.usize("max_valid_samples")?),
        device: device(ctx)?,
    })
}

fn run_search(ctx: &StageCtx) -> Result<()> {
    let cfg = config(ctx)?;
    let data = load_data(ctx)?;
    let mut progress = StageProgress::new(ctx);
    let out = search(&cfg, &data, &ctx.work_dir, &mut progress)?;
    let dir = ctx.out_dir.join("switches");
    artifacts::write(&dir, &out.normal, &out.reduce)?;
    for (r, (n, red)) in out.rounds.iter().enumerate() {
        let only_gamma = |s: &SwitchStats| SwitchStats { gamma: s.gamma.clone(), ..s.clone() };
        artifacts::write(&dir.join(format!("rounds/{r:02}")), &only_gamma(n), &only_gamma(red))?;
    }
    std::fs::copy(&out.supernet_weights, ctx.out_dir.join("supernet.safetensors")).context("copying the supernet weights")?;
    write_jsonl(&ctx.out_dir.join("metrics.jsonl"), &out.metrics)?;
    atomic::write_json(&ctx.out_dir.join("metrics.json"), &out.final_metrics)
}

pub fn derive_spec() -> OpSpec {
    OpSpec {
        name: "bayesnas.derive",
        version: 1,
        doc: "BayesNAS cells from the search's gammas: keep every op whose gamma and whose edge switch's gamma reach `threshold` (multi-op edges; an edge with a pruned edge switch loses all ops).",
        params: vec![param(
            "threshold",
            ParamType::Float,
            json!(DEFAULT_THRESHOLD),
            "prune a switch whose gamma (prior variance) is below this; 1e-3 = three orders below the gamma of an untouched switch (about 1)",
        )],
        inputs: Ports::Fixed(vec![port("switches", "", "a bayesnas.search stage's `switches` output")]),
        outputs: Ports::Fixed(vec![
            port("genotype", "genotype", "genotype.json and genotype.txt"),
            port("derivation", "derivation.json", "threshold, kept and pruned op counts, pruned edges"),
        ]),
        data: DataUse::None,
        folds_matrix: false,
        dep_param: None,
        uses_device: false,
        run: run_derive,
    }
}

fn run_derive(ctx: &StageCtx) -> Result<()> {
    let dir = ctx.input("switches")?;
    let gn = artifacts::read_gamma(dir, false)?;
    let gr = artifacts::read_gamma(dir, true)?;
    let (genotype, record) = derive(&gn, &gr, ctx.float("threshold")?)?;
    if record.kept_ops == 0 {
        tracing::warn!("bayesnas.derive: threshold {} prunes every op; the cells output zeros", record.threshold);
    }
    write_genotype(&ctx.out_dir.join("genotype"), &genotype)?;
    atomic::write_json(&ctx.out_dir.join("derivation.json"), &serde_json::to_value(&record)?)
}
