//! Plots as SVG strings (plotters, SVG backend: pure Rust, no fonts needed):
//! learning curves of several runs overlaid, and the architecture weights of
//! a search as one heatmap per edge (ops x epochs).

use super::genodiff::state_name;
use super::load::{AlphaHistory, Run};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// A finished plot: a title (also the file stem) and its SVG.
#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub title: String,
    pub svg: String,
}

/// Distinct colours for runs (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub struct Series {
    pub label: String,
    pub color: usize,
    /// Validation and test curves are dashed, training curves solid.
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Lines on shared axes with a legend.
pub fn lines_svg(title: &str, y_desc: &str, series: &[Series]) -> Result<String> {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return Err(anyhow!("no points to plot for `{title}`"));
    }
    // Flat or single-point data still needs a non-empty range.
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (640, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart.configure_mesh().x_desc("epoch").y_desc(y_desc).light_line_style(WHITE.mix(0.0)).draw().map_err(err)?;
        for s in series {
            let c = COLORS[s.color % COLORS.len()];
            let style = c.stroke_width(2);
            let anno = if s.dashed {
                chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style)).map_err(err)?
            } else {
                chart.draw_series(LineSeries::new(s.points.iter().copied(), style)).map_err(err)?
            };
            anno.label(s.label.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK.mix(0.4)).draw().map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

const LOSS_KEYS: [&str; 3] = ["train_loss", "valid_loss", "test_loss"];
const ACC_KEYS: [&str; 3] = ["train_acc", "valid_acc", "test_acc"];

/// Per stage name with a metrics.jsonl in any run: a loss plot and an
/// accuracy plot with that stage of every run overlaid (one colour per run).
pub fn learning_curves(runs: &[Run]) -> Result<Vec<Figure>> {
    let mut stages: Vec<&str> = Vec::new();
    for r in runs {
        for s in r.stages.iter().filter(|s| !s.curve.is_empty()) {
            if !stages.contains(&s.name.as_str()) {
                stages.push(&s.name);
            }
        }
    }
    let mut out = Vec::new();
    for stage in stages {
        for (what, keys, y) in [("loss", LOSS_KEYS, "loss"), ("accuracy", ACC_KEYS, "accuracy (%)")] {
            let mut series = Vec::new();
            for (i, r) in runs.iter().enumerate() {
                let Some(s) = r.stages.iter().find(|s| s.name == stage) else { continue };
                for k in keys {
                    let points: Vec<(f64, f64)> = s
                        .curve
                        .iter()
                        .enumerate()
                        .filter_map(|(n, rec)| {
                            let y = rec.get(k)?.as_f64().filter(|v| v.is_finite())?;
                            let x = rec.get("epoch").and_then(|e| e.as_f64()).unwrap_or(n as f64);
                            Some((x, y))
                        })
                        .collect();
                    if !points.is_empty() {
                        series.push(Series { label: format!("{} {k}", r.label()), color: i, dashed: !k.starts_with("train"), points });
                    }
                }
            }
            if !series.is_empty() {
                let title = format!("{stage}: {what}");
                out.push(Figure { name: file_stem(&format!("curves_{stage}_{what}")), svg: lines_svg(&title, y, &series)?, title });
            }
        }
    }
    Ok(out)
}

/// A file name from a stage instance name (`search[seed=1]` -> `search_seed-1`).
pub fn file_stem(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else if c == '=' { '-' } else { '_' }).collect();
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Edge names in DARTS order (node 0's inputs, then node 1's, ...) when the
/// edge count fits a cell; else `edge N`.
pub fn edge_names(n_edges: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut node = 0;
    while names.len() < n_edges {
        for j in 0..node + 2 {
            names.push(format!("{} \u{2192} {}", state_name(j), state_name(node + 2)));
        }
        node += 1;
    }
    if names.len() == n_edges {
        names
    } else {
        (0..n_edges).map(|e| format!("edge {e}")).collect()
    }
}

/// Op names for the columns of an alpha matrix: the DARTS list when there are 8.
pub fn op_names(n_ops: usize) -> Vec<String> {
    if n_ops == nasflow_nas::genotype::DARTS_PRIMITIVES.len() {
        nasflow_nas::genotype::DARTS_PRIMITIVES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..n_ops).map(|k| format!("op {k}")).collect()
    }
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Viridis-like colour for t in [0, 1].
fn colormap(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// One panel per edge: rows are ops, columns epochs, colour the weight.
/// `softmax`: show softmax over ops (DARTS alphas, SNAS log-alphas) instead
/// of the raw values (BayesNAS gammas).
/// How a heatmap's values are shown: softmax over the ops of an edge (DARTS
/// alphas, SNAS log-alphas), raw, or log10 (BayesNAS γ spans decades).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scale {
    Softmax,
    Raw,
    Log10,
}

/// Row (op) and panel (edge) labels; None: DARTS names by count.
pub struct Labels {
    pub ops: Vec<String>,
    pub edges: Vec<String>,
}

pub fn heatmap_svg(title: &str, epochs: &[Vec<Vec<f32>>], scale: Scale, labels: Option<&Labels>) -> Result<String> {
    let softmax_ops = scale == Scale::Softmax;
    let n_epochs = epochs.len();
    let n_edges = epochs.first().map(|e| e.len()).unwrap_or(0);
    let n_ops = epochs.first().and_then(|e| e.first()).map(|o| o.len()).unwrap_or(0);
    if n_epochs == 0 || n_edges == 0 || n_ops == 0 {
        return Err(anyhow!("no architecture weights to plot for `{title}`"));
    }
    if epochs.iter().any(|e| e.len() != n_edges || e.iter().any(|o| o.len() != n_ops)) {
        return Err(anyhow!("`{title}`: the epochs' weight arrays differ in shape; expected {n_edges} x {n_ops} each"));
    }
    // values[edge][op][epoch]
    let mut values = vec![vec![vec![0f64; n_epochs]; n_ops]; n_edges];
    for (t, ep) in epochs.iter().enumerate() {
        for (e, row) in ep.iter().enumerate() {
            let row = if softmax_ops { softmax(row) } else { row.clone() };
            for (k, v) in row.into_iter().enumerate() {
                // γ ≥ 0; floor at 1e-12 so a switch pruned to 0 stays on the scale
                values[e][k][t] = if scale == Scale::Log10 { (v as f64).max(1e-12).log10() } else { v as f64 };
            }
        }
    }
    let (lo, hi) = if softmax_ops {
        (0.0, values.iter().flatten().flatten().copied().fold(0.0, f64::max).max(1e-9))
    } else {
        let lo = values.iter().flatten().flatten().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().flatten().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, if hi - lo < 1e-12 { lo + 1.0 } else { hi })
    };
    let (ops, edges) = match labels {
        Some(l) if l.ops.len() == n_ops && l.edges.len() == n_edges => (l.ops.clone(), l.edges.clone()),
        _ => (op_names(n_ops), edge_names(n_edges)),
    };
    let cols = 4usize.min(n_edges);
    let rows = n_edges.div_ceil(cols);
    let (pw, ph) = (260u32, (n_ops as u32) * 14 + 70);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (pw * cols as u32, ph * rows as u32 + 70)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let scale = format!("{title} (colour: {} from {lo:.3} to {hi:.3})", match scale {
            Scale::Softmax => "softmax over ops",
            Scale::Raw => "raw value",
            Scale::Log10 => "log10 of the value",
        });
        let (head, body) = root.split_vertically(40);
        head.titled(&scale, ("sans-serif", 16)).map_err(err)?;
        let panels = body.split_evenly((rows, cols));
        for (e, area) in panels.iter().enumerate().take(n_edges) {
            let mut chart = ChartBuilder::on(area)
                .caption(&edges[e], ("sans-serif", 13))
                .margin(4)
                .x_label_area_size(18)
                .y_label_area_size(if e % cols == 0 { 90 } else { 8 })
                .build_cartesian_2d(0..n_epochs, 0..n_ops)
                .map_err(err)?;
            let ops_ref = &ops;
            let first_col = e % cols == 0;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(n_epochs.min(5))
                .y_labels(n_ops)
                .y_label_formatter(&|k| if first_col { ops_ref.get(*k).cloned().unwrap_or_default() } else { String::new() })
                .label_style(("sans-serif", 10))
                .draw()
                .map_err(err)?;
            let cells = (0..n_ops).flat_map(|k| (0..n_epochs).map(move |t| (k, t)));
            chart
                .draw_series(cells.map(|(k, t)| Rectangle::new([(t, k), (t + 1, k + 1)], colormap((values[e][k][t] - lo) / (hi - lo)).filled())))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// The heatmaps of every search stage of a run that kept its weights per epoch.
pub fn alpha_heatmaps(run: &Run) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for s in &run.stages {
        let Some(AlphaHistory { normal, reduce, bayes_gamma }) = &s.alphas else { continue };
        // DARTS alphas and SNAS log-alphas are logits over ops; BayesNAS γ spans decades; others raw.
        let scale = if *bayes_gamma {
            Scale::Log10
        } else if matches!(s.op.as_str(), "darts.search" | "snas.search") {
            Scale::Softmax
        } else {
            Scale::Raw
        };
        let (what, steps) = if *bayes_gamma { ("switch gammas per edge", "rounds") } else { ("weights per edge", "epochs") };
        for (cell, epochs, reduction) in [("normal", normal, false), ("reduce", reduce, true)] {
            if epochs.is_empty() {
                continue;
            }
            let labels = bayes_gamma.then(|| bayes_labels(reduction));
            let title = format!("{} {}: {cell} cell {what} over {} {steps}", run.label(), s.name, epochs.len());
            let svg = heatmap_svg(&title, epochs, scale, labels.as_ref())?;
            out.push(Figure { name: file_stem(&format!("alphas_{}_{}_{cell}", run.info.id, s.name)), svg, title });
        }
    }
    Ok(out)
}

/// BayesNAS rows are its switches, panels its named edges ("in1_3: c_{k-2} → 3").
fn bayes_labels(reduction: bool) -> Labels {
    use nasflow_nas::bayesnas::space::{BayesNasSpace, SearchSpace, SWITCHES};
    Labels {
        ops: SWITCHES.iter().map(|s| s.to_string()).collect(),
        edges: BayesNasSpace
            .edges(reduction)
            .iter()
            .map(|e| format!("{}: {} \u{2192} {}", e.name, state_name(e.input), state_name(e.node + 2)))
            .collect(),
    }
}

/// Writes figures as `<dir>/<name>.svg`; returns the paths.
pub fn write_svgs(dir: &std::path::Path, figs: &[Figure]) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create plot folder {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for f in figs {
        let p = dir.join(format!("{}.svg", f.name));
        crate::engine::atomic::write(&p, f.svg.as_bytes())?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bayesnas_heatmap_names_switches_and_edges() {
        let epochs = vec![vec![vec![1.0f32; 8]; 8]; 2];
        let svg = heatmap_svg("t", &epochs, Scale::Log10, Some(&bayes_labels(true))).unwrap();
        for label in ["switch_all", "switch_ident", "sel_0_3", "in0_0"] {
            assert!(svg.contains(label), "{label} missing");
        }
        // without labels an 8-column matrix would be read as DARTS ops
        assert!(!svg.contains("sep_conv_3x3"));
    }
}
