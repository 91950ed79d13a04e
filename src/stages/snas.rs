//! `snas.search`: SNAS (Xie et al., ICLR 2019) on the stage's data set, on
//! the DARTS supernet and search loop.

use super::common::{device, load_data};
use super::supernet;
use super::progress::StageProgress;
use crate::engine::atomic;
use crate::engine::op::{param, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::Result;
use nasflow_nas::darts::search::SearchConfig;
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
        params: [
            supernet::params(s),
            vec![
                param("arch_optimizer", ParamType::Choice(&["sgd", "adam"]), json!("sgd"), "log-alpha optimiser: plain SGD (the single-GPU code) or Adam (the distributed code)"),
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
            ],
        ]
        .concat(),
        inputs: Ports::Fixed(vec![]),
        outputs: Ports::Fixed(supernet::outputs(
            "log-alphas: normal.npy, reduce.npy, alphas.safetensors, and per epoch under epochs/",
            "the child: genotype.json and genotype.txt in the edge_all form (every edge, `none` for absent ones); pairs.json/pairs.txt (8-entry form) when every node keeps two inputs",
            "one record per epoch: losses, accuracies, temperature, expected size/FLOPs/MAC of the current distribution",
        )),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        uses_device: true,
        run,
    }
}

pub fn config(ctx: &StageCtx) -> Result<SnasConfig> {
    let d = SnasConfig::default();
    let search = supernet::config(ctx, SearchConfig { device: device(ctx)?, ..d.search })?;
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
    supernet::write_outputs(out, &outcome, &state)?;
    // The 8-entry form (SNAS_* in genotypes.py) exists when every node keeps two inputs.
    let pairs = outcome.genotype.without_none();
    if pairs.normal.is_pairs() && pairs.reduce.is_pairs() {
        atomic::write(&out.join("genotype/pairs.json"), pairs.to_json().as_bytes())?;
        atomic::write(&out.join("genotype/pairs.txt"), format!("{}\n", pairs.to_darts_text()).as_bytes())?;
    }
    Ok(())
}
