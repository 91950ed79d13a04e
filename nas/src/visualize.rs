//! Cell drawings (DOT and SVG) as DARTS visualize.py draws them (spec §7):
//! inputs c_{k-2}, c_{k-1} (green), intermediate nodes 0..n-1 (blue), output
//! c_{k} (yellow); one edge per (op, input) entry labelled with the op, so a
//! multi-op edge (BayesNAS) becomes parallel labelled edges; an unlabelled
//! edge from every state in `concat` to c_{k}. `none` entries are omitted.
//!
//! The SVG is laid out here, without Graphviz: states are placed in layers
//! left to right by their longest path from the inputs, edges are cubic
//! curves bent around nodes they would cross, and labels are slid along
//! their edge until they overlap nothing.

use crate::genotype::{Cell, NONE_OP};
use std::fmt::Write as _;

const FONT: &str = "Times New Roman, Times, serif";
const FONT_SIZE: f64 = 20.0;
const SUB_SIZE: f64 = 14.0;
const NODE_H: f64 = 40.0;
const LABEL_H: f64 = 22.0;

fn state_name(j: usize) -> String {
    match j {
        0 => "c_{k-2}".into(),
        1 => "c_{k-1}".into(),
        _ => (j - 2).to_string(),
    }
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz source with DARTS's styling (render with `dot -Tpdf`).
pub fn cell_dot(cell: &Cell, title: &str) -> String {
    let n = cell.nodes.len();
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", dot_quote(title));
    s += "  rankdir=LR;\n";
    if !title.is_empty() {
        let _ = writeln!(
            s,
            "  label={}; labelloc=t; fontsize=22; fontname=\"times\";",
            dot_quote(title)
        );
    }
    s += "  edge [fontsize=20, fontname=\"times\"];\n";
    s += "  node [style=filled, shape=rect, align=center, fontsize=20, height=0.5, width=0.5, penwidth=2, fontname=\"times\"];\n";
    for j in 0..2 {
        let _ = writeln!(
            s,
            "  {} [fillcolor=darkseagreen2];",
            dot_quote(&state_name(j))
        );
    }
    for i in 0..n {
        let _ = writeln!(s, "  {} [fillcolor=lightblue];", dot_quote(&i.to_string()));
    }
    s += "  \"c_{k}\" [fillcolor=palegoldenrod];\n";
    for (i, node) in cell.nodes.iter().enumerate() {
        for e in node.iter().filter(|e| e.op != NONE_OP) {
            let _ = writeln!(
                s,
                "  {} -> {} [label={}, fillcolor=gray];",
                dot_quote(&state_name(e.input)),
                dot_quote(&i.to_string()),
                dot_quote(&e.op)
            );
        }
    }
    for &c in &cell.concat {
        let _ = writeln!(
            s,
            "  {} -> \"c_{{k}}\" [fillcolor=gray];",
            dot_quote(&state_name(c))
        );
    }
    s += "}\n";
    s
}

// ---------------------------------------------------------------- SVG layout

#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn around(cx: f64, cy: f64, w: f64, h: f64) -> Rect {
        Rect {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
        }
    }
    fn grow(&self, m: f64) -> Rect {
        Rect {
            x0: self.x0 - m,
            y0: self.y0 - m,
            x1: self.x1 + m,
            y1: self.y1 + m,
        }
    }
    fn contains(&self, (x, y): (f64, f64)) -> bool {
        x > self.x0 && x < self.x1 && y > self.y0 && y < self.y1
    }
    fn overlap(&self, o: &Rect) -> f64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        w * h
    }
}

/// Width of `s` at `size` px, estimated per character class on the wide
/// side: Times is narrower, but where it is missing the serif fallback
/// (often DejaVu Serif) is wider, and labels must not spill in either.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.32,
            'f' | 'r' | 't' | '-' | '(' | ')' | '[' | ']' => 0.42,
            'm' | 'w' | 'M' | 'W' => 0.9,
            '_' => 0.5,
            c if c.is_ascii_uppercase() => 0.72,
            _ => 0.6,
        })
        .sum::<f64>()
        * size
}

struct Node {
    state: usize, // 0..n+2 states, n+2 = output
    cx: f64,
    cy: f64,
    w: f64,
    fill: &'static str,
}

impl Node {
    fn rect(&self) -> Rect {
        Rect::around(self.cx, self.cy, self.w, NODE_H)
    }
}

/// A node's label: main text and an optional subscript (c_{k-2} → c, k-2).
fn node_label(state: usize, n: usize) -> (String, Option<String>) {
    match state {
        0 => ("c".into(), Some("k\u{2212}2".into())),
        1 => ("c".into(), Some("k\u{2212}1".into())),
        s if s == n + 2 => ("c".into(), Some("k".into())),
        s => ((s - 2).to_string(), None),
    }
}

fn label_width(state: usize, n: usize) -> f64 {
    let (main, sub) = node_label(state, n);
    text_width(&main, FONT_SIZE) + sub.map_or(0.0, |s| text_width(&s, SUB_SIZE))
}

/// Box width: the label plus padding, at least a little wider than tall.
fn node_width(state: usize, n: usize) -> f64 {
    (label_width(state, n) + 28.0).max(NODE_H + 10.0)
}

type Curve = [(f64, f64); 4];

fn bezier(c: &Curve, t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let (a, b, cc, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (
        a * c[0].0 + b * c[1].0 + cc * c[2].0 + d * c[3].0,
        a * c[0].1 + b * c[1].1 + cc * c[2].1 + d * c[3].1,
    )
}

/// A curve from `from`'s right side to `to`'s left side, bent by `bend`.
/// `ports` shift the two ends up or down the box sides.
fn curve(from: &Node, to: &Node, ports: (f64, f64), bend: f64) -> Curve {
    let p0 = (from.cx + from.w / 2.0, from.cy + ports.0);
    let p3 = (to.cx - to.w / 2.0, to.cy + ports.1);
    let dx = ((p3.0 - p0.0) * 0.5).max(40.0);
    [p0, (p0.0 + dx, p0.1 + bend), (p3.0 - dx, p3.1 + bend), p3]
}

/// The bend nearest to `base` whose curve stays clear of all nodes but its ends.
fn route(from: &Node, to: &Node, ports: (f64, f64), base: f64, nodes: &[Node]) -> Curve {
    let obstacles: Vec<Rect> = nodes
        .iter()
        .filter(|o| o.state != from.state && o.state != to.state)
        .map(|o| o.rect().grow(8.0))
        .collect();
    let clear = |c: &Curve| {
        (1..40).all(|k| {
            obstacles
                .iter()
                .all(|r| !r.contains(bezier(c, k as f64 / 40.0)))
        })
    };
    for step in 0..=16 {
        let delta = 24.0 * (step / 2 + step % 2) as f64 * if step % 2 == 0 { 1.0 } else { -1.0 };
        let c = curve(from, to, ports, base + delta);
        if clear(&c) {
            return c;
        }
    }
    curve(from, to, ports, base)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A standalone SVG 1.1 drawing of the cell, laid out left to right.
pub fn cell_svg(cell: &Cell, title: &str) -> String {
    let n = cell.nodes.len();
    let out = n + 2;
    let exists = |j: usize| j < n + 2;
    // Edges drawn: (source state, target node index, op); `none` and dangling inputs skipped.
    let edges: Vec<(usize, usize, &str)> = cell
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, node)| {
            node.iter()
                .filter(|e| e.op != NONE_OP && exists(e.input))
                .map(move |e| (e.input, i, e.op.as_str()))
        })
        .collect();

    // Layers: inputs at 0, a node one right of its furthest earlier input, output last.
    let mut layer = vec![0usize; n + 3];
    for i in 0..n {
        let deepest = edges
            .iter()
            .filter(|(s, t, _)| *t == i && *s < i + 2)
            .map(|(s, _, _)| layer[*s])
            .max();
        layer[i + 2] = deepest.map_or(1, |l| l + 1);
    }
    layer[out] = layer[..out].iter().max().copied().unwrap_or(0) + 1;
    let n_layers = layer[out] + 1;

    // Order within a layer by the mean row of the predecessors (fewer crossings).
    let mut row = vec![0.0f64; n + 3];
    let mut columns: Vec<Vec<usize>> = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let mut members: Vec<usize> = (0..n + 3).filter(|&s| layer[s] == l).collect();
        let key = |s: usize| -> f64 {
            let preds: Vec<f64> = if s == out {
                cell.concat
                    .iter()
                    .filter(|&&c| exists(c))
                    .map(|&c| row[c])
                    .collect()
            } else if s >= 2 {
                edges
                    .iter()
                    .filter(|(_, t, _)| *t + 2 == s)
                    .map(|(src, _, _)| row[*src])
                    .collect()
            } else {
                vec![]
            };
            if preds.is_empty() {
                s as f64
            } else {
                preds.iter().sum::<f64>() / preds.len() as f64
            }
        };
        if l > 0 {
            members.sort_by(|a, b| key(*a).total_cmp(&key(*b)).then(a.cmp(b)));
        }
        let k = members.len() as f64;
        for (r, &s) in members.iter().enumerate() {
            row[s] = r as f64 - (k - 1.0) / 2.0;
        }
        columns.push(members);
    }

    // Column spacing leaves room for the widest edge label.
    let widest_label = edges
        .iter()
        .map(|(_, _, op)| text_width(op, FONT_SIZE))
        .fold(0.0, f64::max);
    let col_w: Vec<f64> = columns
        .iter()
        .map(|c| c.iter().map(|&s| node_width(s, n)).fold(0.0, f64::max))
        .collect();
    let gap = |l: usize| {
        let leaving = edges.iter().filter(|(src, _, _)| layer[*src] == l).count() as f64;
        widest_label + 80.0 + 12.0 * leaving
    };
    // Rows spread further apart when nodes take many edges, to keep labels apart.
    let max_in = (0..n)
        .map(|i| edges.iter().filter(|e| e.1 == i).count())
        .max()
        .unwrap_or(0) as f64;
    let row_gap = 110.0 + 10.0 * max_in;
    let mut x = 0.0;
    let mut nodes: Vec<Node> = Vec::with_capacity(n + 3);
    for (l, members) in columns.iter().enumerate() {
        let cx = x + col_w[l] / 2.0;
        for &s in members {
            let fill = match s {
                0 | 1 => "#b4eeb4",         // darkseagreen2
                s if s == out => "#eee8aa", // palegoldenrod
                _ => "#add8e6",             // lightblue
            };
            nodes.push(Node {
                state: s,
                cx,
                cy: row[s] * row_gap,
                w: node_width(s, n),
                fill,
            });
        }
        x += col_w[l] + gap(l);
    }
    let node_of = |s: usize| nodes.iter().position(|nd| nd.state == s);

    // Connections: (source state, target state, label); concat edges are unlabelled.
    let conns: Vec<(usize, usize, Option<&str>)> = edges
        .iter()
        .map(|&(s, t, op)| (s, t + 2, Some(op)))
        .chain(
            cell.concat
                .iter()
                .filter(|&&c| exists(c))
                .map(|&c| (c, out, None)),
        )
        .collect();
    let cy_of = |s: usize| node_of(s).map_or(0.0, |k| nodes[k].cy);
    // Ports: a node's edges leave (or enter) spread along its side, ordered by
    // the other end's height, so that they do not all meet in one point.
    let port = |k: usize,
                mine: fn(&(usize, usize, Option<&str>)) -> usize,
                other: fn(&(usize, usize, Option<&str>)) -> usize| {
        let mut same: Vec<usize> = (0..conns.len())
            .filter(|&m| mine(&conns[m]) == mine(&conns[k]))
            .collect();
        same.sort_by(|&a, &b| {
            cy_of(other(&conns[a]))
                .total_cmp(&cy_of(other(&conns[b])))
                .then(a.cmp(&b))
        });
        let m = same.len() as f64;
        let rank = same.iter().position(|&x| x == k).unwrap_or(0) as f64;
        let spread = (NODE_H - 14.0).min((m - 1.0) * 7.0);
        if m > 1.0 {
            -spread / 2.0 + rank * spread / (m - 1.0)
        } else {
            0.0
        }
    };
    let mut curves: Vec<(Curve, Option<&str>)> = Vec::new();
    for (k, &(s, t, op)) in conns.iter().enumerate() {
        // Parallel edges (same source and target) also bend apart.
        let same: Vec<usize> = (0..conns.len())
            .filter(|&m| conns[m].0 == s && conns[m].1 == t)
            .collect();
        let rank = same.iter().position(|&m| m == k).unwrap_or(0) as f64;
        let base = (rank - (same.len() as f64 - 1.0) / 2.0) * 26.0;
        let ports = (port(k, |c| c.0, |c| c.1), port(k, |c| c.1, |c| c.0));
        if let (Some(a), Some(b)) = (node_of(s), node_of(t)) {
            curves.push((route(&nodes[a], &nodes[b], ports, base, &nodes), op));
        }
    }

    // Labels: slide along the edge to the spot that overlaps the fewest things:
    // nodes and placed labels weigh most, then other edges, then distance from the middle.
    let samples: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|(c, _)| (0..=60).map(|k| bezier(c, k as f64 / 60.0)).collect())
        .collect();
    let mut taken: Vec<Rect> = nodes.iter().map(|nd| nd.rect().grow(4.0)).collect();
    let mut labels: Vec<(Rect, &str)> = Vec::new();
    for (ci, (c, op)) in curves.iter().enumerate() {
        let Some(op) = op else { continue };
        let w = text_width(op, FONT_SIZE) + 8.0;
        let cost = |t: f64| {
            let (px, py) = bezier(c, t);
            let r = Rect::around(px, py, w, LABEL_H);
            let boxes: f64 = taken.iter().map(|o| r.overlap(o)).sum();
            let lines = samples
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != ci)
                .map(|(_, pts)| pts.iter().filter(|p| r.contains(**p)).count())
                .sum::<usize>();
            (
                boxes * 100.0 + lines as f64 * 10.0 + (t - 0.5).abs() * 20.0,
                r,
            )
        };
        let best = (0..=30)
            .map(|k| cost(0.2 + 0.6 * k as f64 / 30.0))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, r)| r)
            .unwrap_or_else(|| cost(0.5).1);
        taken.push(best.grow(2.0));
        labels.push((best, op));
    }

    // Bounds of everything drawn, then a margin and room for the title.
    let mut b = Rect {
        x0: f64::MAX,
        y0: f64::MAX,
        x1: f64::MIN,
        y1: f64::MIN,
    };
    let mut add = |r: Rect| {
        b = Rect {
            x0: b.x0.min(r.x0),
            y0: b.y0.min(r.y0),
            x1: b.x1.max(r.x1),
            y1: b.y1.max(r.y1),
        };
    };
    nodes.iter().for_each(|nd| add(nd.rect()));
    labels.iter().for_each(|(r, _)| add(*r));
    for (c, _) in &curves {
        (0..=20).for_each(|k| {
            let p = bezier(c, k as f64 / 20.0);
            add(Rect::around(p.0, p.1, 2.0, 2.0));
        });
    }
    let margin = 20.0;
    let title_h = if title.is_empty() { 0.0 } else { 40.0 };
    let title_w = text_width(title, 22.0);
    let content_w = b.x1 - b.x0;
    let width = (content_w.max(title_w) + 2.0 * margin).ceil();
    let height = (b.y1 - b.y0 + 2.0 * margin + title_h).ceil();
    let (tx, ty) = (
        margin - b.x0 + (width - 2.0 * margin - content_w) / 2.0,
        margin + title_h - b.y0,
    );

    let mut s = String::new();
    s += "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n";
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    let _ = writeln!(s, "<title>{}</title>", esc(title));
    s += "<defs>\n<marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"11\" markerHeight=\"11\" orient=\"auto\">\n<path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#404040\"/>\n</marker>\n</defs>\n";
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
    );
    if !title.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"28\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"22\" font-weight=\"bold\">{}</text>",
            width / 2.0,
            esc(title)
        );
    }
    let _ = writeln!(s, "<g transform=\"translate({tx:.1},{ty:.1})\">");
    for (c, _) in &curves {
        let _ = writeln!(
            s,
            "<path d=\"M {:.1} {:.1} C {:.1} {:.1} {:.1} {:.1} {:.1} {:.1}\" fill=\"none\" stroke=\"#404040\" stroke-width=\"1.6\" marker-end=\"url(#arrow)\"/>",
            c[0].0, c[0].1, c[1].0, c[1].1, c[2].0, c[2].1, c[3].0, c[3].1
        );
    }
    for nd in &nodes {
        let r = nd.rect();
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{NODE_H}\" fill=\"{}\" stroke=\"black\" stroke-width=\"2\"/>",
            r.x0, r.y0, nd.w, nd.fill
        );
        let (main, sub) = node_label(nd.state, n);
        let sub = sub
            .map(|t| {
                format!(
                    "<tspan font-size=\"{SUB_SIZE}\" dy=\"5\">{}</tspan>",
                    esc(&t)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"{FONT_SIZE}\">{}{sub}</text>",
            nd.cx,
            nd.cy + FONT_SIZE * 0.33,
            esc(&main)
        );
    }
    for (r, op) in &labels {
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{LABEL_H}\" rx=\"3\" fill=\"white\" fill-opacity=\"0.85\"/>",
            r.x0,
            r.y0,
            r.x1 - r.x0
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"{FONT_SIZE}\">{}</text>",
            (r.x0 + r.x1) / 2.0,
            (r.y0 + r.y1) / 2.0 + FONT_SIZE * 0.33,
            esc(op)
        );
    }
    s += "</g>\n</svg>\n";
    s
}
