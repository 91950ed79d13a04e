//! What the NAS stage ops share: the stage's device, loading its data set,
//! reading genotypes, writing arrays and metrics.

use crate::engine::atomic;
use crate::engine::device::{cuda_built, no_cuda_message, CPU, CUDA};
use crate::engine::op::StageCtx;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use nasflow_nas::data::DataSplits;
use nasflow_nas::genotype::Genotype;
use std::path::Path;

/// The candle device of the stage's device class (decided by the engine):
/// "cpu" is the CPU, "cuda" is GPU 0. A missing GPU or a build without CUDA
/// is an error that names the stage and says how to go on.
pub fn device(ctx: &StageCtx) -> Result<Device> {
    match ctx.device.as_str() {
        CPU => Ok(Device::Cpu),
        CUDA if !cuda_built() => bail!("stage `{}`: {}", ctx.stage, no_cuda_message("it is to run on CUDA")),
        CUDA => {
            // One Device per process: candle tells devices apart by their
            // handle, not the GPU index, so two handles on GPU 0 could not
            // share tensors.
            static CUDA0: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
            if let Some(d) = CUDA0.get() {
                return Ok(d.clone());
            }
            // A missing driver library can panic inside the CUDA bindings rather than fail.
            let opened = std::panic::catch_unwind(|| Device::new_cuda(0));
            match opened {
                Ok(Ok(d)) => Ok(CUDA0.get_or_init(|| d).clone()),
                Ok(Err(e)) => bail!("{}", no_gpu(ctx, &e.to_string())),
                Err(p) => {
                    let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    bail!("{}", no_gpu(ctx, &msg))
                }
            }
        }
        other => bail!("stage `{}`: unknown device `{other}` in its job file (expected `cpu` or `cuda`)", ctx.stage),
    }
}

fn no_gpu(ctx: &StageCtx, why: &str) -> String {
    // candle appends a backtrace to its errors when RUST_BACKTRACE is set: keep the cause.
    let why = why.lines().next().unwrap_or("");
    format!(
        "stage `{}`: cannot open CUDA device 0 ({}); run with `--device cpu`, or check the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES",
        ctx.stage,
        why.trim()
    )
}

pub fn load_data(ctx: &StageCtx) -> Result<DataSplits> {
    let d = ctx.data.as_ref().with_context(|| format!("stage `{}` needs a data set (`data:`)", ctx.stage))?;
    nasflow_nas::data::load(&d.format, &d.path).with_context(|| format!("loading data set `{}`", d.name))
}

/// A genotype from a file (JSON or the DARTS text form) or a folder holding
/// genotype.json.
pub fn read_genotype(path: &Path) -> Result<Genotype> {
    let file = if path.is_dir() { path.join("genotype.json") } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read genotype {}", file.display()))?;
    Genotype::parse(&text).with_context(|| format!("{} is not a genotype", file.display()))
}

/// Built-in name, file path (relative to the pipeline), or connected input.
pub fn genotype_from(ctx: &StageCtx) -> Result<Genotype> {
    if ctx.inputs.contains_key("genotype") {
        return read_genotype(ctx.input("genotype")?);
    }
    let name = ctx.opt_str("genotype").unwrap_or("");
    if name.is_empty() {
        anyhow::bail!("stage `{}`: connect `inputs: {{ genotype: STAGE.genotype }}` or set param `genotype` to a built-in name (`nasflow genotype list`) or a file", ctx.stage);
    }
    if let Some(g) = nasflow_nas::genotype::builtin(name) {
        return Ok(g);
    }
    let p = ctx.base_dir.join(name);
    if p.exists() {
        return read_genotype(&p);
    }
    anyhow::bail!("stage `{}`: genotype `{name}` is neither a built-in ({}) nor a file", ctx.stage, nasflow_nas::genotype::builtin_names().join(", "))
}

pub fn write_genotype(dir: &Path, g: &Genotype) -> Result<()> {
    atomic::write(&dir.join("genotype.json"), g.to_json().as_bytes())?;
    atomic::write(&dir.join("genotype.txt"), format!("{}\n", g.to_darts_text()).as_bytes())
}

pub fn write_npy(path: &Path, rows: &[Vec<f32>]) -> Result<()> {
    let r = rows.len();
    let c = rows.first().map(Vec::len).unwrap_or(0);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let t = candle_core::Tensor::from_vec(flat, (r, c), &candle_core::Device::Cpu)?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    t.write_npy(path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_npy(path: &Path) -> Result<Vec<Vec<f32>>> {
    let t = candle_core::Tensor::read_npy(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

pub fn write_jsonl(path: &Path, records: &[serde_json::Value]) -> Result<()> {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    atomic::write(path, s.as_bytes())
}

/// `0` means "no limit" for optional counts in pipeline files.
pub fn opt(n: usize) -> Option<usize> {
    (n > 0).then_some(n)
}
