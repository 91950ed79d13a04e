//! `darts.search`: DARTS (first or second order) on the stage's data set.

use super::common::{device, load_data};
use super::supernet;
use super::progress::StageProgress;
use crate::engine::op::{param, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::Result;
use nasflow_nas::darts::search::{search, Order, SearchConfig};
use serde_json::json;

pub fn spec() -> OpSpec {
    let d = SearchConfig::default();
    OpSpec {
        name: "darts.search",
        version: 1,
        doc: "DARTS search (Liu et al., ICLR 2019): a supernet of mixed ops with softmax-relaxed architecture weights, trained bilevel on two halves of the training set. Defaults are the paper's CIFAR-10 settings.",
        params: [
            supernet::params(&d),
            vec![
                param("train_portion", ParamType::Float, json!(d.train_portion), "fraction of the training set for weights; the rest trains the architecture"),
                param("order", ParamType::Choice(&["first", "second"]), json!("first"), "architecture gradient: first order, or second order (unrolled)"),
                param("alpha_init_std", ParamType::Float, json!(d.alpha_init_std), "alphas start at std * N(0,1) (the code); 0 = uniform (the paper)"),
            ],
        ]
        .concat(),
        inputs: Ports::Fixed(vec![]),
        outputs: Ports::Fixed(supernet::outputs(
            "raw alphas: normal.npy, reduce.npy, alphas.safetensors, and per epoch under epochs/",
            "the derived genotype: genotype.json and genotype.txt (DARTS text form)",
            "one record per epoch",
        )),
        data: DataUse::Required,
        folds_matrix: false,
        dep_param: None,
        uses_device: true,
        run,
    }
}

pub fn config(ctx: &StageCtx) -> Result<SearchConfig> {
    let base = SearchConfig {
        order: if ctx.str("order")? == "second" { Order::Second } else { Order::First },
        alpha_init_std: ctx.float("alpha_init_std")?,
        device: device(ctx)?,
        ..SearchConfig::default()
    };
    supernet::config(ctx, base)
}

fn run(ctx: &StageCtx) -> Result<()> {
    let cfg = config(ctx)?;
    let data = load_data(ctx)?;
    let mut progress = StageProgress::new(ctx);
    let (outcome, state) = search(&cfg, &data, &ctx.work_dir, &mut progress)?;
    supernet::write_outputs(&ctx.out_dir, &outcome, &state)
}
