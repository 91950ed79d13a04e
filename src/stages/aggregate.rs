//! `aggregate`: folds a matrix back into one result: mean, std, min and max
//! of every numeric metric across instances, and the best instance by one
//! metric (its `select` input is copied out as `best`).

use crate::engine::op::{param, port, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;

pub fn spec() -> OpSpec {
    OpSpec {
        name: "aggregate",
        version: 1,
        doc: "Fold the instances of a matrix: mean, std (sample, n-1), min and max of each numeric metric, and the best instance by `by`.",
        params: vec![
            param("by", ParamType::Str, json!(""), "metric that picks the best instance (empty: the first instance)"),
            param("mode", ParamType::Choice(&["max", "min"]), json!("max"), "whether larger or smaller `by` is better"),
        ],
        inputs: Ports::Fixed(vec![
            port("metrics", "", "a JSON object of metrics per instance"),
            port("select", "", "(optional) an artifact per instance; the best one is copied to `best`"),
        ]),
        outputs: Ports::Fixed(vec![
            port("metrics", "summary.json", "n, per-metric mean/std/min/max and the best instance"),
            port("best", "best", "the `select` input (else the metrics) of the best instance"),
        ]),
        data: DataUse::None,
        folds_matrix: true,
        dep_param: None,
        uses_device: false,
        run,
    }
}

fn run(ctx: &StageCtx) -> Result<()> {
    let files = ctx.inputs.get("metrics").cloned().unwrap_or_default();
    if files.is_empty() {
        bail!("stage `{}`: no `metrics` inputs", ctx.stage);
    }
    let mut rows: Vec<Map<String, Json>> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        match serde_json::from_str::<Json>(&text) {
            Ok(Json::Object(m)) => rows.push(m),
            _ => bail!("{} is not a JSON object of metrics", f.display()),
        }
    }
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &rows {
        for (k, v) in r {
            if let Some(x) = v.as_f64() {
                values.entry(k.clone()).or_default().push(x);
            }
        }
    }
    let mut stats = Map::new();
    for (k, xs) in &values {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let std = if xs.len() > 1 { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        stats.insert(k.clone(), json!({"mean": mean, "std": std, "min": min, "max": max, "n": xs.len()}));
    }
    let by = ctx.str("by")?;
    let maximise = ctx.str("mode")? == "max";
    let best = if by.is_empty() {
        0
    } else {
        let mut best: Option<(usize, f64)> = None;
        for (i, r) in rows.iter().enumerate() {
            let Some(x) = r.get(by).and_then(Json::as_f64) else {
                bail!("instance {} has no numeric metric `{by}` (it has: {})", i, r.keys().cloned().collect::<Vec<_>>().join(", "));
            };
            if best.is_none_or(|(_, b)| if maximise { x > b } else { x < b }) {
                best = Some((i, x));
            }
        }
        best.map(|(i, _)| i).unwrap_or(0)
    };
    let summary = json!({"n": rows.len(), "metrics": stats, "best": {"index": best, "by": by, "value": rows[best].get(by).cloned().unwrap_or(Json::Null)}});
    crate::engine::atomic::write_json(&ctx.out_dir.join("summary.json"), &summary)?;
    let src = ctx.inputs.get("select").and_then(|v| v.get(best)).unwrap_or(&files[best]);
    copy_any(src, &ctx.out_dir.join("best"))
}

fn copy_any(src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)?.flatten() {
            copy_any(&e.path(), &dst.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(src, dst).with_context(|| format!("cannot copy {}", src.display()))?;
    }
    Ok(())
}
