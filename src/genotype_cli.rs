//! `nasflow genotype list|show`: published genotypes, both text forms, and
//! the parameter count of the evaluation network they define.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork, EvalOptions};
use nasflow_nas::genotype::{builtin, builtin_names, Cell, Genotype};
use nasflow_nas::params::count_params;
use serde_json::json;

pub enum Args {
    List,
    Show { genotype: String, layers: usize, init_channels: usize, in_channels: usize, classes: usize, json: bool },
}

pub fn run(args: Args) -> Result<i32> {
    match args {
        Args::List => {
            for n in builtin_names() {
                println!("{n}");
            }
            Ok(0)
        }
        Args::Show { genotype, layers, init_channels, in_channels, classes, json } => {
            let g = load(&genotype)?;
            // SNAS retrains with an affine BN after every pool (spec §3.1).
            let pool_bn = genotype.to_ascii_uppercase().starts_with("SNAS_") && builtin(&genotype).is_some();
            let (params, aux) = count(&g, layers, init_channels, in_channels, classes, pool_bn)?;
            if json {
                let v = json!({
                    "name": genotype,
                    "genotype": serde_json::from_str::<serde_json::Value>(&g.to_json())?,
                    "darts_text": g.to_darts_text(),
                    "layers": layers, "init_channels": init_channels,
                    "params": params, "params_auxiliary": aux, "pool_bn": pool_bn,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{genotype}\n");
            print_cell("normal", &g.normal);
            print_cell("reduce", &g.reduce);
            println!("{}\n", g.to_darts_text());
            let note = if pool_bn { ", with SNAS's affine BN after pools" } else { "" };
            println!("parameters (L={layers}, C={init_channels}{note}): {params} ({:.3} M); auxiliary head: {aux}", params as f64 / 1e6);
            Ok(0)
        }
    }
}

fn load(what: &str) -> Result<Genotype> {
    if let Some(g) = builtin(what) {
        return Ok(g);
    }
    let p = std::path::Path::new(what);
    if !p.exists() {
        anyhow::bail!("`{what}` is neither a built-in genotype nor a file; built-ins: {}", builtin_names().join(", "));
    }
    let file = if p.is_dir() { p.join("genotype.json") } else { p.to_path_buf() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Genotype::parse(&text).with_context(|| format!("{} is not a genotype", file.display()))
}

fn state_name(i: usize) -> String {
    match i {
        0 => "c_{k-2}".into(),
        1 => "c_{k-1}".into(),
        n => format!("{}", n - 2),
    }
}

fn print_cell(name: &str, c: &Cell) {
    println!("{name} cell:");
    for (i, node) in c.nodes.iter().enumerate() {
        let edges: Vec<String> = node.iter().filter(|e| e.op != "none").map(|e| format!("{} <- {}", e.op, state_name(e.input))).collect();
        println!("  node {i}: {}", if edges.is_empty() { "(zero)".into() } else { edges.join(", ") });
    }
    let concat: Vec<String> = c.concat.iter().map(|&i| state_name(i)).collect();
    println!("  output: concat({})\n", concat.join(", "));
}

/// Trainable parameters of the evaluation network (auxiliary head apart).
fn count(g: &Genotype, layers: usize, init_channels: usize, in_channels: usize, classes: usize, pool_bn_affine: bool) -> Result<(usize, usize)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    if nasflow_nas::bayesnas::network::is_bayesnas_genotype(g) {
        // BayesNAS ops build the BayesNAS network (no auxiliary head)
        let cfg = nasflow_nas::bayesnas::network::BayesNetConfig { in_channels, num_classes: classes, init_channels, layers };
        nasflow_nas::bayesnas::network::BayesNasNetwork::new(&cfg, g, vb)?;
        return Ok((count_params(&varmap, None), 0));
    }
    let cfg = EvalNetConfig { in_channels, num_classes: classes, init_channels, layers, auxiliary: true, stem_multiplier: 3 };
    EvalNetwork::new_with(&cfg, g, &EvalOptions { pool_bn_affine }, vb)?;
    let main = count_params(&varmap, Some("auxiliary"));
    let all = count_params(&varmap, None);
    Ok((main, all - main))
}
