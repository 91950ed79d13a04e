//! `train` (retrain a genotype from scratch) and `evaluate` (test a trained
//! model): the shared back half of every cell-based NAS paper.

use super::common::{device, genotype_from, load_data, opt, read_genotype, write_genotype, write_jsonl};
use super::progress::StageProgress;
use crate::engine::atomic;
use crate::engine::op::{param, port, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::{Context, Result};
use nasflow_nas::data::Augment;
use nasflow_nas::train::retrain::{evaluate, train, NetworkKind, TrainConfig};
use serde_json::json;

pub fn train_spec() -> OpSpec {
    let d = TrainConfig::default();
    OpSpec {
        name: "train",
        version: 1,
        doc: "Train the evaluation network of a genotype from scratch (DARTS train.py): SGD with cosine lr, auxiliary head, drop path, cutout; tests on the held-out set after every epoch. Defaults are DARTS's CIFAR-10 settings.",
        params: vec![
            param("genotype", ParamType::Str, json!(""), "a built-in genotype name or a file, when no `genotype` input is connected"),
            param("layers", ParamType::Int, json!(d.layers), "cells"),
            param("init_channels", ParamType::Int, json!(d.init_channels), "channels of the first cell"),
            param("epochs", ParamType::Int, json!(d.epochs), "training epochs"),
            param("batch_size", ParamType::Int, json!(d.batch_size), "batch size"),
            param("lr", ParamType::Float, json!(d.lr), "SGD learning rate (cosine-annealed)"),
            param("lr_min", ParamType::Float, json!(d.lr_min), "cosine floor"),
            param("momentum", ParamType::Float, json!(d.momentum), "SGD momentum"),
            param("weight_decay", ParamType::Float, json!(d.weight_decay), "SGD coupled L2"),
            param("grad_clip", ParamType::Float, json!(d.grad_clip), "global norm clip"),
            param("auxiliary", ParamType::Bool, json!(d.auxiliary), "train with the auxiliary head"),
            param("auxiliary_weight", ParamType::Float, json!(d.auxiliary_weight), "weight of the auxiliary loss"),
            param("drop_path", ParamType::Float, json!(d.drop_path_prob), "drop-path probability, ramped linearly over the epochs"),
            param("crop_padding", ParamType::Int, json!(d.augment.crop_padding), "random crop padding (0: off)"),
            param("flip", ParamType::Bool, json!(d.augment.flip), "random horizontal flip (off for digits)"),
            param("cutout", ParamType::Int, json!(d.augment.cutout), "cutout box size (0: off)"),
            param("seed", ParamType::Int, json!(d.seed), "seed of every random draw"),
            param("steps_per_epoch", ParamType::Int, json!(0), "cap on training steps per epoch (0: all)"),
            param("eval_batch_size", ParamType::Int, json!(d.eval_batch_size), "batch size of test passes"),
            param("pool_bn", ParamType::Bool, json!(d.pool_bn_affine), "an affine BN after every pool (SNAS's retrain ops; DARTS has none)"),
            param("network", ParamType::Choice(&["auto", "darts", "bayesnas"]), json!("auto"), "evaluation network: DARTS NetworkCIFAR, or the BayesNAS network (channel dropout on the drop_path schedule, no aux head); auto picks BayesNAS for genotypes of BayesNAS ops"),
        ],
        inputs: Ports::Fixed(vec![port("genotype", "", "(optional) a genotype (folder with genotype.json, or a file)")]),
        outputs: Ports::Fixed(vec![
            port("model", "model", "weights.safetensors, genotype.json and config.json"),
            port("metrics", "metrics.json", "final metrics (test accuracy of the last epoch, params)"),
            port("curve", "metrics.jsonl", "one record per epoch"),
        ]),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        uses_device: true,
        run: run_train,
    }
}

fn config(ctx: &StageCtx) -> Result<TrainConfig> {
    Ok(TrainConfig {
        init_channels: ctx.usize("init_channels")?,
        layers: ctx.usize("layers")?,
        epochs: ctx.usize("epochs")?,
        batch_size: ctx.usize("batch_size")?,
        lr: ctx.float("lr")?,
        lr_min: ctx.float("lr_min")?,
        momentum: ctx.float("momentum")?,
        weight_decay: ctx.float("weight_decay")?,
        grad_clip: ctx.float("grad_clip")?,
        auxiliary: ctx.bool("auxiliary")?,
        auxiliary_weight: ctx.float("auxiliary_weight")?,
        drop_path_prob: ctx.float("drop_path")?,
        augment: Augment { crop_padding: ctx.usize("crop_padding")?, flip: ctx.bool("flip")?, cutout: ctx.usize("cutout")? },
        seed: ctx.int("seed")? as u64,
        steps_per_epoch: opt(ctx.usize("steps_per_epoch")?),
        eval_batch_size: ctx.usize("eval_batch_size")?,
        pool_bn_affine: ctx.bool("pool_bn")?,
        network: NetworkKind::Darts,
        device: device(ctx)?,
    })
}

/// The `network` param, `auto` resolved from the genotype's op family.
fn network(ctx: &StageCtx, g: &nasflow_nas::genotype::Genotype) -> Result<NetworkKind> {
    Ok(match ctx.str("network")? {
        "bayesnas" => NetworkKind::BayesNas,
        "darts" => NetworkKind::Darts,
        _ if nasflow_nas::bayesnas::network::is_bayesnas_genotype(g) => NetworkKind::BayesNas,
        _ => NetworkKind::Darts,
    })
}

fn run_train(ctx: &StageCtx) -> Result<()> {
    let mut cfg = config(ctx)?;
    let genotype = genotype_from(ctx)?;
    cfg.network = network(ctx, &genotype)?;
    let data = load_data(ctx)?;
    let mut progress = StageProgress::new(ctx);
    let outcome = train(&cfg, &genotype, &data, &ctx.work_dir, &mut progress)?;
    let model = ctx.out_dir.join("model");
    std::fs::create_dir_all(&model)?;
    std::fs::copy(&outcome.weights_path, model.join("weights.safetensors")).context("copying the trained weights")?;
    write_genotype(&model, &genotype)?;
    let mut conf = json!({"init_channels": cfg.init_channels, "layers": cfg.layers, "auxiliary": cfg.auxiliary, "pool_bn": cfg.pool_bn_affine});
    if cfg.network == NetworkKind::BayesNas {
        conf["network"] = json!("bayesnas"); // absent = darts, so DARTS model folders keep their bytes
    }
    atomic::write_json(&model.join("config.json"), &conf)?;
    write_jsonl(&ctx.out_dir.join("metrics.jsonl"), &outcome.metrics)?;
    atomic::write_json(&ctx.out_dir.join("metrics.json"), &outcome.final_metrics)
}

pub fn evaluate_spec() -> OpSpec {
    OpSpec {
        name: "evaluate",
        version: 2,
        doc: "Test a trained model on the data set's held-out split (no augmentation, eval-mode BN): accuracy, error and parameter count (auxiliary head excluded).",
        params: vec![param("eval_batch_size", ParamType::Int, json!(100), "batch size")],
        inputs: Ports::Fixed(vec![port("model", "", "a `train` stage's model folder")]),
        outputs: Ports::Fixed(vec![port("metrics", "metrics.json", "test_acc, test_error (percent), test_loss, params")]),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        uses_device: true,
        run: run_evaluate,
    }
}

fn run_evaluate(ctx: &StageCtx) -> Result<()> {
    let model = ctx.input("model")?;
    let genotype = read_genotype(model)?;
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).context("the model folder has no config.json")?)?;
    let get = |k: &str| conf.get(k).and_then(|v| v.as_u64()).map(|v| v as usize).with_context(|| format!("config.json has no `{k}`"));
    let cfg = TrainConfig {
        init_channels: get("init_channels")?,
        layers: get("layers")?,
        auxiliary: conf.get("auxiliary").and_then(|v| v.as_bool()).unwrap_or(false),
        pool_bn_affine: conf.get("pool_bn").and_then(|v| v.as_bool()).unwrap_or(false),
        network: if conf.get("network").and_then(|v| v.as_str()) == Some("bayesnas") { NetworkKind::BayesNas } else { NetworkKind::Darts },
        eval_batch_size: ctx.usize("eval_batch_size")?,
        device: device(ctx)?,
        ..TrainConfig::default()
    };
    let data = load_data(ctx)?;
    let e = evaluate(&model.join("weights.safetensors"), &genotype, &cfg, &data.test)?;
    // Percentages to 1e-6: `100 - 97.6` should read 2.4, not 2.4000000000000057.
    let pct = |x: f64| (x * 1e6).round() / 1e6;
    atomic::write_json(&ctx.out_dir.join("metrics.json"), &json!({"test_acc": pct(e.accuracy), "test_error": pct(e.error), "test_loss": e.loss, "params": e.params, "test_samples": data.test.len()}))
}
