//! The search's switch statistics on disk (spec §8): for each quantity q in
//! gamma, omega, hessian, cov, switch and each cell type, `q_norm.npy` /
//! `q_reduct.npy` (float32 `[cells, 8 edges, 8 switches]`) and `q_norm.json`
//! / `q_reduct.json` with the reference pickles' hierarchy
//! `{cell: {edge: {switch: value}}}`, cells `norm_cell_i` / `reduct_cell_i`,
//! edges and switches named as the reference (see [`super::space`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{Map, Value};

use super::space::{NORMAL_EDGES, REDUCE_EDGES, SWITCHES};
use super::supernet::{EDGES, NUM_SWITCHES};
use super::update::{at, SwitchStats};
use crate::train::checkpoint::write_atomic;

pub const QUANTITIES: [&str; 5] = ["gamma", "omega", "hessian", "cov", "switch"];

fn values<'a>(st: &'a SwitchStats, q: &str) -> &'a [f32] {
    match q {
        "gamma" => &st.gamma,
        "omega" => &st.omega,
        "hessian" => &st.hessian,
        "cov" => &st.cov,
        _ => &st.switch,
    }
}

/// `{cell: {edge: {switch: value}}}` of one quantity and cell type. Keys
/// are sorted by name in the file (serde_json maps), as a dict dump would be.
pub fn hierarchy(st: &SwitchStats, q: &str, reduction: bool) -> Value {
    let (prefix, edges) = if reduction { ("reduct_cell", REDUCE_EDGES) } else { ("norm_cell", NORMAL_EDGES) };
    let v = values(st, q);
    let mut cells = Map::new();
    for c in 0..st.cells {
        let mut es = Map::new();
        for (e, en) in edges.iter().enumerate() {
            let mut ss = Map::new();
            for (t, sn) in SWITCHES.iter().enumerate() {
                ss.insert(sn.to_string(), Value::from(v[at(c, e, t)] as f64));
            }
            es.insert(en.to_string(), Value::Object(ss));
        }
        cells.insert(format!("{prefix}_{c}"), Value::Object(es));
    }
    Value::Object(cells)
}

/// Writes every quantity of both cell types into `dir`.
pub fn write(dir: &Path, normal: &SwitchStats, reduce: &SwitchStats) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for q in QUANTITIES {
        for (st, red, suffix) in [(normal, false, "norm"), (reduce, true, "reduct")] {
            let t = Tensor::from_slice(values(st, q), (st.cells, EDGES, NUM_SWITCHES), &Device::Cpu)?;
            let npy = dir.join(format!("{q}_{suffix}.npy"));
            t.write_npy(&npy).with_context(|| format!("writing {}", npy.display()))?;
            let json = serde_json::to_string_pretty(&hierarchy(st, q, red))?;
            write_atomic(&dir.join(format!("{q}_{suffix}.json")), format!("{json}\n").as_bytes())?;
        }
    }
    Ok(())
}

/// The shared γ `[8][8]` of one cell type from `gamma_{norm,reduct}.npy` in `dir`.
pub fn read_gamma(dir: &Path, reduction: bool) -> Result<Vec<Vec<f32>>> {
    let path = dir.join(if reduction { "gamma_reduct.npy" } else { "gamma_norm.npy" });
    let t = Tensor::read_npy(&path).with_context(|| {
        format!("cannot read {}: connect a bayesnas.search stage's `switches` output", path.display())
    })?;
    let t = t.to_dtype(candle_core::DType::F32)?;
    let dims = t.dims().to_vec();
    let ok = match dims.as_slice() {
        [_, e, s] => *e == EDGES && *s == NUM_SWITCHES,
        [e, s] => *e == EDGES && *s == NUM_SWITCHES,
        _ => false,
    };
    if !ok {
        bail!("{} has shape {dims:?}; expected [cells, {EDGES}, {NUM_SWITCHES}]", path.display());
    }
    // γ is shared by every cell of the type: the first cell holds it
    let t = if dims.len() == 3 { t.get(0)? } else { t };
    Ok(t.to_vec2::<f32>()?)
}
