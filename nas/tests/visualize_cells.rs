//! Cell drawings: DOT content and SVG well-formedness for every built-in
//! genotype. Set NASFLOW_VIS_OUT=<folder> to also write the drawings there
//! for a look (e.g. `rsvg-convert -o x.png x.svg`).

use nasflow_nas::genotype::{builtin, builtin_names, Cell, Edge};
use nasflow_nas::visualize::{cell_dot, cell_svg};

/// Checks that tags nest and close properly (a small XML well-formedness check).
fn assert_balanced(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unclosed '<'") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        // Text between tags must not contain a raw '&' that is not an entity.
        let text = &rest[..rest.find('<').unwrap_or(rest.len())];
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "raw & in {text}"
            );
        }
    }
    assert!(stack.is_empty(), "unclosed tags {stack:?}");
}

fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_string())
        .collect()
}

fn dump(name: &str, cell: &Cell) {
    if let Ok(dir) = std::env::var("NASFLOW_VIS_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.svg"), cell_svg(cell, name)).unwrap();
        std::fs::write(format!("{dir}/{name}.dot"), cell_dot(cell, name)).unwrap();
    }
}

#[test]
fn every_builtin_draws_with_all_op_labels() {
    for name in builtin_names() {
        let g = builtin(name).unwrap();
        for (which, cell) in [("normal", &g.normal), ("reduce", &g.reduce)] {
            let title = format!("{name} {which}");
            let svg = cell_svg(cell, &title);
            dump(&format!("{name}_{which}"), cell);
            assert!(
                svg.starts_with("<?xml")
                    && svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\"")
            );
            assert_balanced(&svg);
            let labels = texts(&svg);
            let ops: Vec<&Edge> = cell
                .nodes
                .iter()
                .flatten()
                .filter(|e| e.op != "none")
                .collect();
            for e in &ops {
                assert!(labels.contains(&e.op), "{title}: no label {}", e.op);
            }
            // One label per drawn edge, plus 2 + nodes + 1 node labels and the title.
            assert_eq!(
                labels.len(),
                ops.len() + cell.nodes.len() + 3 + 1,
                "{title}"
            );
            assert!(
                !labels.iter().any(|t| t == "none"),
                "{title}: none edges are not drawn"
            );
            // One path per op edge and per concat edge (plus the arrowhead in defs).
            assert_eq!(
                svg.matches("<path").count(),
                ops.len() + cell.concat.len() + 1,
                "{title}"
            );

            let dot = cell_dot(cell, &title);
            assert_eq!(dot.matches("[label=").count(), ops.len(), "{title}");
            assert_eq!(
                dot.matches("-> \"c_{k}\"").count(),
                cell.concat.len(),
                "{title}"
            );
        }
    }
}

#[test]
fn dot_matches_darts_visualize_styling() {
    let g = builtin("DARTS_V2").unwrap();
    let dot = cell_dot(&g.normal, "normal");
    assert!(dot.starts_with("digraph \"normal\" {\n  rankdir=LR;"));
    assert!(dot.contains("\"c_{k-2}\" [fillcolor=darkseagreen2];"));
    assert!(dot.contains("\"3\" [fillcolor=lightblue];"));
    assert!(dot.contains("\"c_{k}\" [fillcolor=palegoldenrod];"));
    assert!(dot.contains("\"c_{k-1}\" -> \"0\" [label=\"sep_conv_3x3\", fillcolor=gray];"));
    assert!(dot.contains("\"0\" -> \"3\" [label=\"dil_conv_3x3\", fillcolor=gray];"));
    assert!(dot.contains("\"3\" -> \"c_{k}\""));
    assert!(dot.trim_end().ends_with('}'));
}

#[test]
fn multi_op_edges_are_parallel_and_names_are_escaped() {
    let cell = Cell {
        nodes: vec![
            vec![
                Edge::new("a<b", 0),
                Edge::new("max_pool", 0),
                Edge::new("ident", 0),
            ],
            vec![Edge::new("x\"y", 2)],
        ],
        concat: vec![2, 3],
    };
    let svg = cell_svg(&cell, "R&D <cell>");
    assert_balanced(&svg);
    assert!(
        svg.contains("a&lt;b") && svg.contains("x&quot;y") && svg.contains("R&amp;D &lt;cell&gt;")
    );
    // Three distinct curves from c_{k-2} to node 0: their control points differ.
    let paths: Vec<&str> = svg.lines().filter(|l| l.contains("marker-end")).collect();
    let mut firsts: Vec<&str> = paths[..3].to_vec();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3);
    let dot = cell_dot(&cell, "t");
    assert_eq!(dot.matches("\"c_{k-2}\" -> \"0\"").count(), 3);
    assert!(dot.contains("label=\"x\\\"y\""));
}

#[test]
fn empty_and_dangling_cells_do_not_panic() {
    let empty = Cell {
        nodes: vec![],
        concat: vec![],
    };
    assert_balanced(&cell_svg(&empty, ""));
    let dangling = Cell {
        nodes: vec![vec![Edge::new("a", 7), Edge::new("b", 1)]],
        concat: vec![2, 9],
    };
    let svg = cell_svg(&dangling, "bad");
    assert_balanced(&svg);
    assert!(svg.contains(">b<") && !svg.contains(">a<"));
}
