//! `genotype.derive`: from architecture weights to a discrete genotype.

use super::common::{read_npy, write_genotype};
use crate::engine::op::{param, port, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::Result;
use nasflow_nas::genotype::{try_derive_darts, try_derive_edge_all};
use serde_json::json;

pub fn spec() -> OpSpec {
    OpSpec {
        name: "genotype.derive",
        version: 1,
        doc: "Derive a genotype from raw alphas (softmax per edge). Rule `darts`: each node keeps its two strongest predecessors and their strongest non-`none` op (DARTS). Rule `edge_all`: every edge keeps its argmax, `none` included (SNAS).",
        params: vec![
            param("rule", ParamType::Choice(&["darts", "edge_all"]), json!("darts"), "derivation rule"),
            param("steps", ParamType::Int, json!(4), "intermediate nodes per cell"),
        ],
        inputs: Ports::Fixed(vec![port("alphas", "", "a folder with normal.npy and reduce.npy ([edges, ops], raw)")]),
        outputs: Ports::Fixed(vec![port("genotype", "genotype", "genotype.json and genotype.txt (DARTS text form)")]),
        data: DataUse::None,
        folds_matrix: false,
        dep_param: None,
        uses_device: false,
        run,
    }
}

fn softmax_rows(rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    rows.into_iter()
        .map(|r| {
            let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = r.iter().map(|x| (x - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        })
        .collect()
}

fn run(ctx: &StageCtx) -> Result<()> {
    let dir = ctx.input("alphas")?;
    let normal = softmax_rows(read_npy(&dir.join("normal.npy"))?);
    let reduce = softmax_rows(read_npy(&dir.join("reduce.npy"))?);
    let ops = nasflow_ops::Primitive::DARTS;
    if normal.first().map(Vec::len) != Some(ops.len()) {
        anyhow::bail!("alphas in {} have {} columns; the DARTS space has {} ops", dir.display(), normal.first().map(Vec::len).unwrap_or(0), ops.len());
    }
    let names: Vec<&str> = ops.iter().map(|p| p.name()).collect();
    let steps = ctx.usize("steps")?;
    let g = match ctx.str("rule")? {
        "edge_all" => try_derive_edge_all(&normal, &reduce, &names, steps)?,
        _ => try_derive_darts(&normal, &reduce, &names, steps)?,
    };
    write_genotype(&ctx.out_dir.join("genotype"), &g)
}
