//! `nasflow report`: one self-contained HTML page. Styles, plots and cell
//! drawings are inline; a Content-Security-Policy forbids any fetch, so a page
//! that would need the network fails loudly instead of silently. A small
//! script records script errors into the page (`#js-errors`), which the tests
//! read back from the rendered DOM.

use super::compare::{self, Comparison};
use super::genodiff::GenotypeDiff;
use super::load::Run;
use super::plots::{self, Figure};
use super::seeds::{self, SeedGroup};
use anyhow::Result;
use std::fmt::Write as _;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.same{color:#2a7a2a}.differs{color:#b03030}\
.a{background:#fde8e8}.b{background:#e6f4e6}figure{display:inline-block;margin:.5em;vertical-align:top}\
figcaption{font-size:90%;color:#555}code{font-size:90%}.note{color:#8a5a00}";

/// Collects script errors into `#js-errors` (read by the tests) and marks the
/// body when the page has finished loading.
const SCRIPT: &str = "window.__nasflowErrors=[];window.addEventListener('error',function(e){\
var p=document.getElementById('js-errors');window.__nasflowErrors.push(String(e.message));\
if(p){p.textContent=window.__nasflowErrors.join('\\n');}});\
window.addEventListener('load',function(){document.body.setAttribute('data-loaded',document.querySelectorAll('section').length);});";

/// An SVG document as an inline element: no XML prolog, ids made unique
/// (several drawings in one page would otherwise share `#arrow`).
fn inline_svg(svg: &str, uid: usize) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    let mut s = body.to_string();
    for id in ids(body) {
        s = s.replace(&format!("id=\"{id}\""), &format!("id=\"{id}-{uid}\"")).replace(&format!("url(#{id})"), &format!("url(#{id}-{uid})")).replace(&format!("href=\"#{id}\""), &format!("href=\"#{id}-{uid}\""));
    }
    s
}

fn ids(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find(" id=\"") {
        rest = &rest[i + 5..];
        if let Some(j) = rest.find('"') {
            out.push(rest[..j].to_string());
            rest = &rest[j..];
        }
    }
    out.sort();
    out.dedup();
    out
}

fn table(head: &[String], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr>";
    for r in rows {
        s += "<tr>";
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s += "</tr>";
    }
    s + "</table>"
}

fn genotype_diff_html(d: &GenotypeDiff, la: &str, lb: &str) -> String {
    let mut s = String::new();
    if d.identical {
        return "<p class=\"same\">identical: the same entries on every node of both cells</p>".into();
    }
    let show = |v: &[super::genodiff::EdgeRef]| v.iter().map(|e| format!("{} &larr; {}", esc(&e.op), esc(&e.from))).collect::<Vec<_>>().join("<br>");
    for c in &d.cells {
        if c.identical {
            let _ = write!(s, "<p>{} cell: <span class=\"same\">identical</span></p>", c.cell);
            continue;
        }
        let _ = write!(s, "<p>{} cell: <span class=\"differs\">differs</span></p>", c.cell);
        let rows: Vec<Vec<String>> = c
            .nodes
            .iter()
            .map(|n| vec![format!("node {}", esc(&n.node)), show(&n.common), format!("<span class=\"a\">{}</span>", show(&n.only_a)), format!("<span class=\"b\">{}</span>", show(&n.only_b))])
            .chain((c.concat_a != c.concat_b).then(|| vec!["c_{k} concat".into(), String::new(), esc(&c.concat_a.join(", ")), esc(&c.concat_b.join(", "))]))
            .collect();
        s += &table(&["node".into(), "both".into(), format!("only {la}"), format!("only {lb}")], &rows);
    }
    s
}

fn seeds_html(groups: &[SeedGroup]) -> String {
    let mut s = String::new();
    for g in groups {
        let _ = write!(s, "<h3>{} over {} instances</h3><p><code>{}</code></p>", esc(&g.stage), g.members.len(), esc(&g.members.join(", ")));
        let rows: Vec<Vec<String>> = g.stats.iter().map(|st| vec![esc(&st.metric), format!("{:.4} &plusmn; {:.4}", st.mean, st.std), st.n.to_string()]).collect();
        s += &table(&["metric".into(), "mean ± std".into(), "n".into()], &rows);
        if !g.ops.is_empty() {
            let rows: Vec<Vec<String>> = g.ops.iter().map(|o| vec![format!("{} {} &larr; {}", o.cell, esc(&o.node), esc(&o.from)), esc(&o.op), format!("{}/{}", o.count, o.of)]).collect();
            s += &table(&["edge".into(), "op".into(), "chosen".into()], &rows);
        }
    }
    s
}

fn figures_html(figs: &[Figure], uid: &mut usize) -> String {
    let mut s = String::new();
    for f in figs {
        *uid += 1;
        let _ = write!(s, "<figure>{}<figcaption>{}</figcaption></figure>", inline_svg(&f.svg, *uid), esc(&f.title));
    }
    s
}

fn cells_html(runs: &[Run], uid: &mut usize) -> String {
    let mut s = String::new();
    for r in runs {
        for st in &r.stages {
            let drawings: Vec<(String, String)> = match &st.genotype {
                Some(g) => vec![("normal".into(), nasflow_nas::visualize::cell_svg(&g.normal, "normal")), ("reduce".into(), nasflow_nas::visualize::cell_svg(&g.reduce, "reduce"))],
                None => st.drawings.clone(),
            };
            if drawings.is_empty() {
                continue;
            }
            let _ = write!(s, "<h3>{} {}</h3>", esc(&r.label()), esc(&st.name));
            if let Some(g) = &st.genotype {
                let _ = write!(s, "<p><code>{}</code></p>", esc(&g.to_darts_text()));
            }
            for (name, svg) in drawings {
                *uid += 1;
                let _ = write!(s, "<figure class=\"cell\">{}<figcaption>{}</figcaption></figure>", inline_svg(&svg, *uid), esc(&name));
            }
        }
    }
    s
}

/// The whole page for `runs`.
pub fn page(runs: &[Run]) -> Result<String> {
    let c: Comparison = compare::compare(runs);
    let groups = seeds::seed_groups(runs);
    let curves = plots::learning_curves(runs)?;
    let mut heat = Vec::new();
    for r in runs {
        heat.extend(plots::alpha_heatmaps(r)?);
    }
    let labels: Vec<String> = c.runs.iter().enumerate().map(|(i, r)| format!("[{i}] {}", r.label)).collect();
    let mut head = vec![String::new()];
    head.extend(labels.iter().cloned());
    let mut uid = 0usize;

    let mut s = String::new();
    s += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
    s += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">";
    let _ = write!(s, "<title>nasflow report: {}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>", esc(&labels.join(", ")));
    let _ = write!(s, "<h1>nasflow report</h1><pre id=\"js-errors\"></pre>");

    let rows: Vec<Vec<String>> = c.runs.iter().enumerate().map(|(i, r)| vec![esc(&labels[i]), esc(&r.id), esc(&r.pipeline), esc(&r.status), format!("<code>{}</code>", esc(&r.path))]).collect();
    let _ = write!(s, "<section id=\"runs\"><h2>Runs</h2>{}", table(&["run".into(), "id".into(), "pipeline".into(), "status".into(), "folder".into()], &rows));
    for n in &c.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    s += "</section>";

    s += "<section id=\"params\"><h2>Params that differ</h2>";
    if c.params_differ.is_empty() {
        s += "<p>the same in every run</p>";
    } else {
        let rows: Vec<Vec<String>> = c.params_differ.iter().map(|p| std::iter::once(format!("<code>{}</code>", esc(&p.key))).chain(p.values.iter().map(|v| esc(&compare::fmt_json(v)))).collect()).collect();
        s += &table(&head, &rows);
    }
    if !c.stages_not_shared.is_empty() {
        let _ = write!(s, "<p>stages not in every run (params not compared): {}</p>", esc(&c.stages_not_shared.join(", ")));
    }
    s += "</section>";

    let rows: Vec<Vec<String>> = c.metrics.iter().map(|m| std::iter::once(esc(&m.metric)).chain(m.values.iter().map(|v| v.map(|v| esc(&compare::fmt_metric(&m.metric, v))).unwrap_or("-".into()))).collect()).collect();
    let _ = write!(s, "<section id=\"metrics\"><h2>Metrics</h2>{}</section>", table(&head, &rows));

    let rows: Vec<Vec<String>> = c
        .stages
        .iter()
        .map(|r| {
            std::iter::once(esc(&r.stage))
                .chain(r.runs.iter().map(|c| match c {
                    None => "-".into(),
                    Some(c) => format!("{} <small>{}</small>{}", esc(&c.status), esc(&c.op), c.seconds.map(|t| format!("<br>{}", esc(&crate::engine::scheduler::human(t)))).unwrap_or_default()),
                }))
                .collect()
        })
        .collect();
    let _ = write!(s, "<section id=\"stages\"><h2>Stages: ran or reused</h2>{}</section>", table(&head, &rows));

    s += "<section id=\"genotypes\"><h2>Genotype diff</h2>";
    if c.genotypes.is_empty() {
        s += "<p>fewer than two runs have a genotype from the same stage</p>";
    }
    for g in &c.genotypes {
        let _ = write!(s, "<h3>{}: [{}] vs [{}]</h3>{}", esc(&g.stage), g.a, g.b, genotype_diff_html(&g.diff, &format!("[{}]", g.a), &format!("[{}]", g.b)));
    }
    s += "</section>";

    let _ = write!(s, "<section id=\"seeds\"><h2>Across seeds</h2>{}</section>", if groups.is_empty() { "<p>no stage ran more than once</p>".to_string() } else { seeds_html(&groups) });
    let _ = write!(s, "<section id=\"curves\"><h2>Learning curves</h2>{}</section>", if curves.is_empty() { "<p>no stage wrote a metrics.jsonl</p>".to_string() } else { figures_html(&curves, &mut uid) });
    let _ = write!(s, "<section id=\"alphas\"><h2>Architecture weights</h2>{}</section>", if heat.is_empty() { "<p>no stage kept its architecture weights per epoch</p>".to_string() } else { figures_html(&heat, &mut uid) });
    let cells = cells_html(runs, &mut uid);
    let _ = write!(s, "<section id=\"cells\"><h2>Cells</h2>{}</section>", if cells.is_empty() { "<p>no genotypes</p>".to_string() } else { cells });
    s += "</body></html>\n";
    Ok(s)
}

/// Every figure of the page (curves, then heatmaps), for `--plots DIR`.
pub fn figures(runs: &[Run]) -> Result<Vec<Figure>> {
    let mut f = plots::learning_curves(runs)?;
    for r in runs {
        f.extend(plots::alpha_heatmaps(r)?);
    }
    Ok(f)
}
