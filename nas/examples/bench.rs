//! The nasflow side of the side-by-side benchmark against PyTorch (bench/run.sh
//! runs both and writes bench/RESULTS.md). One case per process, so that the
//! peak RSS it reports belongs to that case alone.
//!
//!     cargo run --release -p nasflow-nas --example bench -- CASE
//!     cargo run --release -p nasflow-nas --example bench -- --list
//!
//! Prints one JSON line: case, median/min ms per step, iterations, threads,
//! peak RSS (VmHWM). Environment: RAYON_NUM_THREADS (threads), BENCH_ITERS
//! (timed iterations; default per case kind), BENCH_WARMUP (default 2),
//! BENCH_UNFUSED (`1`: mixed edges and eval cells in candle's graph, for A/B runs),
//! BENCH_DEVICE (`cpu`, the default, or `cuda`: needs `--features cuda`; each
//! timed step then ends with a device synchronisation).
//!
//! Every case goes through the code paths nasflow trains with: the kernels of
//! nasflow-ops, the supernet's MixedOp, `Darts::arch_step` + clip + `Sgd`,
//! `EvalNetwork` with its auxiliary head. Inputs are seeded uniform noise and
//! every step reuses the same batch (timing only; no accuracy is measured).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use nasflow_nas::darts::architect::{Batch, NetVars};
use nasflow_nas::darts::model::{EvalNetConfig, EvalNetwork};
use nasflow_nas::darts::model_search::{MixedOp, SearchNetConfig, SearchNetwork};
use nasflow_nas::darts::search::{non_trainable_vars, ArchMethod, Darts, SearchConfig};
use nasflow_nas::genotype::builtin;
use nasflow_nas::params::trainable_vars;
use nasflow_nas::rng::{rng_for, Rng};
use nasflow_nas::train::{clip_grad_norm, Sgd};
use nasflow_ops::{avg_pool2d, depthwise_conv2d, init_pytorch_default, max_pool2d, Primitive};
use rand::Rng as _;

/// (name, what it is). Names are shared with bench/torch_bench.py.
const CASES: &[(&str, &str)] = &[
    ("op_dw3_s1", "depthwise 3x3, [64,16,32,32], stride 1"),
    ("op_dw3_s2", "depthwise 3x3, [64,16,32,32], stride 2"),
    ("op_dw5_s1", "depthwise 5x5, [64,16,32,32], stride 1"),
    ("op_dw5_s2", "depthwise 5x5, [64,16,32,32], stride 2"),
    ("op_dil3_s1", "dilated (2) depthwise 3x3, [64,16,32,32], stride 1"),
    ("op_dil3_s2", "dilated (2) depthwise 3x3, [64,16,32,32], stride 2"),
    ("op_dil5_s1", "dilated (2) depthwise 5x5, [64,16,32,32], stride 1"),
    ("op_dil5_s2", "dilated (2) depthwise 5x5, [64,16,32,32], stride 2"),
    ("op_max_s1", "max pool 3x3 pad 1, [64,16,32,32], stride 1"),
    ("op_max_s2", "max pool 3x3 pad 1, [64,16,32,32], stride 2"),
    ("op_avg_s1", "avg pool 3x3 pad 1 (count_include_pad=False), [64,16,32,32], stride 1"),
    ("op_avg_s2", "avg pool 3x3 pad 1 (count_include_pad=False), [64,16,32,32], stride 2"),
    ("edge_64x16x32", "mixed edge (8 DARTS ops), [64,16,32,32], stride 1"),
    ("edge_64x32x16", "mixed edge (8 DARTS ops), [64,32,16,16], stride 1"),
    ("edge_64x64x8", "mixed edge (8 DARTS ops), [64,64,8,8], stride 1"),
    ("edge_64x16x32_s2", "mixed edge (8 DARTS ops), [64,16,32,32], stride 2"),
    ("search_darts", "DARTS search step (arch + weight, 1st order), C=16 L=8, batch 32, 3x32x32"),
    ("search_quick", "quick-pipeline search step, C=4 L=3, batch 32, 1x28x28"),
    ("eval_darts_v2", "DARTS_V2 eval net train step, C=36 L=20 + aux, batch 32, 3x32x32"),
];

fn main() -> Result<()> {
    // What the nasflow binary does at start (src/main.rs): same allocator settings.
    let tuned = nasflow_ops::tune_malloc();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(case) = args.first() else {
        bail!("usage: bench CASE | --list (cases: {})", case_names());
    };
    if case == "--list" {
        for (name, what) in CASES {
            println!("{name}\t{what}");
        }
        return Ok(());
    }
    let device = dev()?;
    let mut step = build(case)?;
    let iters = env_usize("BENCH_ITERS")?.unwrap_or(default_iters(case));
    let warmup = env_usize("BENCH_WARMUP")?.unwrap_or(2);
    for _ in 0..warmup {
        step()?;
    }
    device.synchronize()?;
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        step()?;
        device.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "side": "nasflow",
        "case": case,
        "median_ms": ms[ms.len() / 2],
        "min_ms": ms[0],
        "iters": ms.len(),
        "threads": rayon::current_num_threads(),
        "device": if device.is_cuda() { "cuda" } else { "cpu" },
        "peak_rss_mb": peak_rss_mb(),
        "tune_malloc": tuned,
    });
    println!("{line}");
    Ok(())
}

/// BENCH_UNFUSED=1: mixed edges and eval cells through candle's own graph (A/B runs of the fused nodes).
fn unfused() -> bool {
    std::env::var("BENCH_UNFUSED").is_ok_and(|v| v == "1")
}

fn case_names() -> String {
    CASES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
}

fn default_iters(case: &str) -> usize {
    match case.split('_').next() {
        Some("op") => 20,
        Some("edge") => 10,
        _ => 5,
    }
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={v} is not a whole number")),
        Err(_) => Ok(None),
    }
}

/// Peak resident set size of this process in MB (Linux /proc; None elsewhere).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

type Step = Box<dyn FnMut() -> Result<()>>;

/// The device every case runs on (BENCH_DEVICE), opened once.
fn dev() -> Result<&'static Device> {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    if let Some(d) = DEVICE.get() {
        return Ok(d);
    }
    let d = match std::env::var("BENCH_DEVICE").as_deref() {
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok("cuda") => Device::new_cuda(0).context("BENCH_DEVICE=cuda: no CUDA device (build with `--features cuda` on a machine with a GPU)")?,
        Ok(other) => bail!("BENCH_DEVICE={other}: expected cpu or cuda"),
    };
    Ok(DEVICE.get_or_init(|| d))
}

fn build(case: &str) -> Result<Step> {
    let mut rng = rng_for(0, 0);
    if let Some(op) = case.strip_prefix("op_") {
        return single_op(op, &mut rng);
    }
    let edge = match case {
        "edge_64x16x32" => Some((64, 16, 32, 1)),
        "edge_64x32x16" => Some((64, 32, 16, 1)),
        "edge_64x64x8" => Some((64, 64, 8, 1)),
        "edge_64x16x32_s2" => Some((64, 16, 32, 2)),
        _ => None,
    };
    if let Some((b, c, hw, stride)) = edge {
        return mixed_edge(b, c, hw, stride, &mut rng);
    }
    match case {
        "search_darts" => search_step(3, 32, 16, 8, &mut rng),
        "search_quick" => search_step(1, 28, 4, 3, &mut rng),
        "eval_darts_v2" => eval_step(&mut rng),
        _ => bail!("unknown case `{case}`; cases: {}", case_names()),
    }
}

fn uniform(shape: &[usize], scale: f32, rng: &mut Rng) -> Result<Tensor> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Ok(Tensor::from_vec(v, shape, dev()?)?)
}

fn labels(n: usize, classes: u32, rng: &mut Rng) -> Result<Tensor> {
    let v: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes)).collect();
    Ok(Tensor::from_vec(v, n, dev()?)?)
}

/// One kernel fwd + bwd of sum(y), gradients for x (and the weight).
fn single_op(op: &str, rng: &mut Rng) -> Result<Step> {
    let (kind, stride) = match op.rsplit_once("_s") {
        Some((k, "1")) => (k.to_string(), 1),
        Some((k, "2")) => (k.to_string(), 2),
        _ => bail!("op case `op_{op}`: expected a `_s1` or `_s2` suffix"),
    };
    let x = Var::from_tensor(&uniform(&[64, 16, 32, 32], 1.0, rng)?)?;
    // (kernel, padding, dilation) of the depthwise convs, as in the DARTS ops.
    let dw = match kind.as_str() {
        "dw3" => Some((3, 1, 1)),
        "dw5" => Some((5, 2, 1)),
        "dil3" => Some((3, 2, 2)),
        "dil5" => Some((5, 4, 2)),
        _ => None,
    };
    if let Some((k, pad, dil)) = dw {
        let w = Var::from_tensor(&uniform(&[16, 1, k, k], 0.3, rng)?)?;
        return Ok(Box::new(move || {
            let y = depthwise_conv2d(x.as_tensor(), w.as_tensor(), stride, pad, dil)?;
            y.sum_all()?.backward()?;
            Ok(())
        }));
    }
    let max = match kind.as_str() {
        "max" => true,
        "avg" => false,
        _ => bail!("op case `op_{op}`: unknown op `{kind}`"),
    };
    Ok(Box::new(move || {
        let y = if max {
            max_pool2d(x.as_tensor(), 3, stride, 1)?
        } else {
            avg_pool2d(x.as_tensor(), 3, stride, 1, false)?
        };
        y.sum_all()?.backward()?;
        Ok(())
    }))
}

/// The supernet's MixedOp (all 8 DARTS ops, softmax(α) weights, search-time
/// BN without affine) fwd + bwd of sum(y): gradients for x, the op weights and α.
fn mixed_edge(b: usize, c: usize, hw: usize, stride: usize, rng: &mut Rng) -> Result<Step> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, dev()?);
    let mut edge = MixedOp::new(&Primitive::DARTS, c, stride, vb)?;
    edge.set_fused(!unfused());
    init_pytorch_default(&vm, rng)?;
    let alpha = Var::from_tensor(&uniform(&[1, Primitive::DARTS.len()], 1e-3, rng)?)?;
    let x = Var::from_tensor(&uniform(&[b, c, hw, hw], 1.0, rng)?)?;
    Ok(Box::new(move || {
        let w = candle_nn::ops::softmax(alpha.as_tensor(), D::Minus1)?.squeeze(0)?;
        let y = edge.forward_t(x.as_tensor(), &w, true)?;
        y.sum_all()?.backward()?;
        Ok(())
    }))
}

/// One DARTS first-order search step as `run_search` does it: the
/// architecture step on a valid batch (fwd + bwd + Adam on α), then the
/// weight step on a train batch (fwd + bwd + clip 5 + SGD momentum).
fn search_step(
    in_channels: usize,
    hw: usize,
    init_channels: usize,
    layers: usize,
    rng: &mut Rng,
) -> Result<Step> {
    let batch = 32;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev()?);
    let net_cfg = SearchNetConfig {
        in_channels,
        num_classes: 10,
        init_channels,
        layers,
        steps: 4,
        multiplier: 4,
        stem_multiplier: 3,
    };
    let primitives = Primitive::DARTS;
    let mut net = SearchNetwork::new(&net_cfg, &primitives, vb)?;
    net.set_fused(!unfused());
    init_pytorch_default(&varmap, rng)?;
    let cfg = SearchConfig {
        layers,
        init_channels,
        batch_size: batch,
        ..SearchConfig::default()
    };
    let names: Vec<&'static str> = primitives.iter().map(|p| p.name()).collect();
    let mut darts = Darts::new(net.num_edges(), names, 4, &cfg, rng, dev()?)?;
    let weights = trainable_vars(&varmap);
    let buffers = non_trainable_vars(&varmap, &weights)?;
    let mut sgd = Sgd::new(weights.clone(), cfg.lr, cfg.momentum, cfg.weight_decay);
    let shape = [batch, in_channels, hw, hw];
    let (x, y) = (uniform(&shape, 1.0, rng)?, labels(batch, 10, rng)?);
    let (xv, yv) = (uniform(&shape, 1.0, rng)?, labels(batch, 10, rng)?);
    Ok(Box::new(move || {
        let netvars = NetVars {
            net: &net,
            weights: &weights,
            buffers: &buffers,
        };
        darts.arch_step(
            &netvars,
            &sgd,
            Batch { x: &x, y: &y },
            Batch { x: &xv, y: &yv },
        )?;
        let (mix_n, mix_r) = darts.mixing(true)?;
        let logits = net.forward_t(&x, &mix_n, &mix_r, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, &weights, cfg.grad_clip)?;
        sgd.step(&grads)?;
        Ok(())
    }))
}

/// One training step of the DARTS_V2 evaluation network as `train` does it:
/// drop path 0.2, loss + 0.4 · auxiliary loss, clip 5, SGD momentum.
fn eval_step(rng: &mut Rng) -> Result<Step> {
    let batch = 32;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev()?);
    let cfg = EvalNetConfig {
        in_channels: 3,
        num_classes: 10,
        init_channels: 36,
        layers: 20,
        auxiliary: true,
        stem_multiplier: 3,
    };
    let genotype = builtin("DARTS_V2").context("the built-in DARTS_V2 genotype")?;
    let mut net = EvalNetwork::new(&cfg, &genotype, vb)?;
    net.set_fused(!unfused());
    init_pytorch_default(&varmap, rng)?;
    let weights = trainable_vars(&varmap);
    let mut sgd = Sgd::new(weights.clone(), 0.025, 0.9, 3e-4);
    let x = uniform(&[batch, 3, 32, 32], 1.0, rng)?;
    let y = labels(batch, 10, rng)?;
    let mut drop_rng = rng_for(0, 1);
    Ok(Box::new(move || {
        let (logits, aux) = net.forward_t(&x, true, 0.2, &mut drop_rng)?;
        let mut loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        if let Some(aux) = aux {
            loss = (loss + (candle_nn::loss::cross_entropy(&aux, &y)? * 0.4)?)?;
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, &weights, 5.0)?;
        sgd.step(&grads)?;
        Ok(())
    }))
}
