//! The unified JSON form of a genotype (spec §6.2). Written as:
//!
//! ```json
//! {
//!   "nodes": 4,
//!   "concat": [2, 3, 4, 5],
//!   "op_family": "darts",
//!   "normal": [
//!     {"node": 0, "input": 0, "op": "sep_conv_3x3"},
//!     ...
//!   ],
//!   "reduce": [
//!     ...
//!   ]
//! }
//! ```
//!
//! Node value = sum of its entries; entries keep their order within a node
//! (the DARTS rank order), `none` entries included. When the two cells differ
//! in node count or concat, `normal_nodes`/`normal_concat` and
//! `reduce_nodes`/`reduce_concat` replace `nodes`/`concat`. `op_family` is
//! written when every op belongs to one known family, and ignored on reading.
//! The layout is fixed by this code (not by a map's key order), so equal
//! genotypes give equal bytes.
//!
//! Also read: entries as `["op", input]` pairs (Python's
//! `json.dumps(genotype._asdict())`, split into nodes like the DARTS text
//! form), and serde's own form of [`Genotype`] (`"normal": {"nodes": [[...]], "concat": [...]}`).

use super::{
    default_concat, did_you_mean, Cell, Edge, Genotype, BAYESNAS_OPS, DARTS_EXTRA_OPS,
    DARTS_PRIMITIVES, MAX_NODES, NONE_OP,
};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

// ---------------------------------------------------------------- writing

pub(super) fn write(g: &Genotype) -> String {
    let mut out = String::from("{\n");
    let same_shape = g.normal.steps() == g.reduce.steps() && g.normal.concat == g.reduce.concat;
    if same_shape {
        out += &format!("  \"nodes\": {},\n", g.normal.steps());
        out += &format!("  \"concat\": {},\n", int_list(&g.normal.concat));
    } else {
        for (which, cell) in [("normal", &g.normal), ("reduce", &g.reduce)] {
            out += &format!("  \"{which}_nodes\": {},\n", cell.steps());
            out += &format!("  \"{which}_concat\": {},\n", int_list(&cell.concat));
        }
    }
    if let Some(family) = op_family(g) {
        out += &format!("  \"op_family\": \"{family}\",\n");
    }
    out += &format!("  \"normal\": {},\n", entries(&g.normal));
    out += &format!("  \"reduce\": {}\n", entries(&g.reduce));
    out += "}\n";
    out
}

fn int_list(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    format!("[{}]", items.join(", "))
}

fn entries(cell: &Cell) -> String {
    let lines: Vec<String> = cell
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, node)| {
            node.iter().map(move |e| {
                // serde_json escapes the op name exactly as JSON requires.
                let op = serde_json::to_string(&e.op).unwrap_or_else(|_| "\"?\"".into());
                format!(
                    "    {{\"node\": {i}, \"input\": {}, \"op\": {op}}}",
                    e.input
                )
            })
        })
        .collect();
    if lines.is_empty() {
        "[]".into()
    } else {
        format!("[\n{}\n  ]", lines.join(",\n"))
    }
}

/// "darts" or "bayesnas" when every op is of that family.
fn op_family(g: &Genotype) -> Option<&'static str> {
    let ops: Vec<&str> = [&g.normal, &g.reduce]
        .iter()
        .flat_map(|c| c.nodes.iter().flatten())
        .map(|e| e.op.as_str())
        .filter(|op| *op != NONE_OP)
        .collect();
    if ops.is_empty() {
        return None;
    }
    if ops
        .iter()
        .all(|op| DARTS_PRIMITIVES.contains(op) || DARTS_EXTRA_OPS.contains(op))
    {
        Some("darts")
    } else if ops.iter().all(|op| BAYESNAS_OPS.contains(op)) {
        Some("bayesnas")
    } else {
        None
    }
}

// ---------------------------------------------------------------- reading

const KEYS: [&str; 10] = [
    "nodes",
    "concat",
    "op_family",
    "normal",
    "reduce",
    "normal_nodes",
    "normal_concat",
    "reduce_nodes",
    "reduce_concat",
    "name",
];

pub(super) fn parse(s: &str) -> Result<Genotype> {
    let v: Value = serde_json::from_str(s).context("cannot read the genotype JSON")?;
    let Value::Object(map) = &v else {
        bail!("cannot read the genotype JSON: expected an object {{\"normal\": [...], \"reduce\": [...], ...}}")
    };
    // serde's own form of the struct: {"normal": {"nodes": [[...]], "concat": [...]}, ...}
    if map.get("normal").is_some_and(Value::is_object) {
        return serde_json::from_value(v.clone()).context(
            "cannot read the genotype JSON: \"normal\" is an object, so it must be \
             {\"nodes\": [[{\"op\": ..., \"input\": ...}, ...], ...], \"concat\": [...]}",
        );
    }
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            let hint = did_you_mean(key, &KEYS)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            bail!(
                "cannot read the genotype JSON: unknown key \"{key}\"{hint}; known keys: {}",
                KEYS.join(", ")
            );
        }
    }
    if let Some(f) = map.get("op_family") {
        if !f.is_string() {
            bail!(
                "cannot read the genotype JSON: \"op_family\" must be a string such as \"darts\""
            );
        }
    }
    let cell = |which: &str| -> Result<Cell> {
        let nodes = opt_usize(
            map.get(&format!("{which}_nodes")).or(map.get("nodes")),
            which,
            "nodes",
        )?;
        let concat = match map.get(&format!("{which}_concat")).or(map.get("concat")) {
            None => None,
            Some(c) => Some(
                usize_list(c)
                    .with_context(|| format!("cannot read the genotype JSON: {which} concat"))?,
            ),
        };
        let entries = map
            .get(which)
            .ok_or_else(|| anyhow!("cannot read the genotype JSON: \"{which}\" is missing"))?;
        if nodes.is_some_and(|n| n > MAX_NODES) {
            bail!("cannot read the genotype JSON: {which} nodes is implausibly large (at most {MAX_NODES})");
        }
        cell_from_entries(entries, nodes, concat, which)
    };
    Ok(Genotype {
        normal: cell("normal")?,
        reduce: cell("reduce")?,
    })
}

fn opt_usize(v: Option<&Value>, which: &str, key: &str) -> Result<Option<usize>> {
    match v {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| anyhow!("cannot read the genotype JSON: {which} {key} must be a non-negative integer, found {x}")),
    }
}

fn usize_list(v: &Value) -> Result<Vec<usize>> {
    let arr = v.as_array().ok_or_else(|| {
        anyhow!("expected a list of state indices such as [2, 3, 4, 5], found {v}")
    })?;
    arr.iter()
        .map(|x| {
            x.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| anyhow!("expected a non-negative integer, found {x}"))
        })
        .collect()
}

fn cell_from_entries(
    v: &Value,
    nodes: Option<usize>,
    concat: Option<Vec<usize>>,
    which: &str,
) -> Result<Cell> {
    let arr = v.as_array().ok_or_else(|| {
        anyhow!("cannot read the genotype JSON: \"{which}\" must be a list of entries, found {v}")
    })?;
    let where_ = |k: usize| format!("cannot read the genotype JSON: {which}[{k}]");
    if arr.iter().any(Value::is_array) {
        // Python-style ["op", input] pairs: a flat list, split as the DARTS text form does.
        let mut edges = Vec::new();
        for (k, e) in arr.iter().enumerate() {
            match e.as_array().map(|p| p.as_slice()) {
                Some([Value::String(op), input]) => {
                    let input = input.as_u64().ok_or_else(|| {
                        anyhow!(
                            "{}: the input must be a non-negative integer, found {input}",
                            where_(k)
                        )
                    })?;
                    edges.push(Edge {
                        op: op.clone(),
                        input: input as usize,
                    });
                }
                _ => bail!(
                    "{}: expected [\"op\", input] like the other entries, found {e}",
                    where_(k)
                ),
            }
        }
        return super::text::split_flat(edges, concat, which)
            .map_err(|msg| anyhow!("cannot read the genotype JSON: {msg}"));
    }
    let mut cells: Vec<Vec<Edge>> = Vec::new();
    for (k, e) in arr.iter().enumerate() {
        let obj = e.as_object().ok_or_else(|| {
            anyhow!(
                "{}: expected {{\"node\": 0, \"input\": 1, \"op\": \"sep_conv_3x3\"}}, found {e}",
                where_(k)
            )
        })?;
        for key in obj.keys() {
            if !["node", "input", "op"].contains(&key.as_str()) {
                bail!(
                    "{}: unknown key \"{key}\"; an entry has \"node\", \"input\" and \"op\"",
                    where_(k)
                );
            }
        }
        let field = |name: &str| {
            obj.get(name)
                .ok_or_else(|| anyhow!("{}: \"{name}\" is missing", where_(k)))
        };
        let node = field("node")?
            .as_u64()
            .ok_or_else(|| anyhow!("{}: \"node\" must be a non-negative integer", where_(k)))?
            as usize;
        let input = field("input")?
            .as_u64()
            .ok_or_else(|| anyhow!("{}: \"input\" must be a non-negative integer", where_(k)))?
            as usize;
        let op = field("op")?
            .as_str()
            .ok_or_else(|| anyhow!("{}: \"op\" must be a string", where_(k)))?;
        if let Some(n) = nodes {
            if node >= n {
                bail!(
                    "{}: node {node} is out of range; the cell has {n} nodes (0..{})",
                    where_(k),
                    n.saturating_sub(1)
                );
            }
        }
        if node >= MAX_NODES {
            bail!("{}: node {node} is implausibly large", where_(k));
        }
        if cells.len() <= node {
            cells.resize(node + 1, Vec::new());
        }
        cells[node].push(Edge {
            op: op.to_string(),
            input,
        });
    }
    if let Some(n) = nodes {
        cells.resize(n, Vec::new());
    }
    let concat = concat.unwrap_or_else(|| default_concat(cells.len()));
    Ok(Cell {
        nodes: cells,
        concat,
    })
}

#[cfg(test)]
mod tests {
    use super::super::builtin;
    use super::*;

    #[test]
    fn darts_json_layout_is_fixed() {
        let g = builtin("DARTS_V2").unwrap();
        let j = write(&g);
        assert!(j.starts_with(
            "{\n  \"nodes\": 4,\n  \"concat\": [2, 3, 4, 5],\n  \"op_family\": \"darts\",\n  \"normal\": [\n    {\"node\": 0, \"input\": 0, \"op\": \"sep_conv_3x3\"},\n"
        ), "{j}");
        assert!(
            j.ends_with("    {\"node\": 3, \"input\": 1, \"op\": \"max_pool_3x3\"}\n  ]\n}\n"),
            "{j}"
        );
        assert_eq!(parse(&j).unwrap(), g);
        // The output is valid JSON for any reader.
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["normal"].as_array().unwrap().len(), 8);
    }

    #[test]
    fn differing_cells_use_per_cell_keys() {
        let mut g = builtin("BAYESNAS_0_01").unwrap();
        g.reduce.concat = vec![3, 4, 5];
        let j = write(&g);
        assert!(
            j.contains("\"normal_concat\": [2, 3, 4, 5]")
                && j.contains("\"reduce_concat\": [3, 4, 5]"),
            "{j}"
        );
        assert!(j.contains("\"op_family\": \"bayesnas\""), "{j}");
        assert_eq!(parse(&j).unwrap(), g);
    }

    #[test]
    fn reads_python_asdict_and_serde_forms() {
        let py = r#"{"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["skip_connect", 0], ["dil_conv_3x3", 2]],
                     "normal_concat": [2, 3], "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}"#;
        let g = parse(py).unwrap();
        assert_eq!(
            g.normal.nodes[1],
            vec![Edge::new("skip_connect", 0), Edge::new("dil_conv_3x3", 2)]
        );
        assert_eq!(g.reduce.nodes.len(), 1);
        let serde_form = serde_json::to_string(&g).unwrap();
        assert_eq!(parse(&serde_form).unwrap(), g);
    }

    #[test]
    fn entries_may_come_in_any_node_order() {
        let j = r#"{"nodes": 2, "concat": [2, 3],
            "normal": [{"node": 1, "input": 2, "op": "b"}, {"node": 0, "input": 0, "op": "a"}, {"node": 1, "input": 0, "op": "c"}],
            "reduce": []}"#;
        let g = parse(j).unwrap();
        assert_eq!(
            g.normal.nodes,
            vec![
                vec![Edge::new("a", 0)],
                vec![Edge::new("b", 2), Edge::new("c", 0)]
            ]
        );
        assert_eq!(g.reduce.nodes, vec![vec![], vec![]]);
    }

    #[test]
    fn errors_name_the_entry_and_the_fix() {
        let e = parse(r#"{"normal": [{"node": 0, "input": "x", "op": "a"}], "reduce": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("normal[0]: \"input\" must be a non-negative integer"),
            "{e}"
        );
        let e = parse(r#"{"normal": [], "reduce": [], "concta": [2]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key \"concta\" (did you mean \"concat\"?)"),
            "{e}"
        );
        let e =
            parse(r#"{"nodes": 1, "normal": [{"node": 3, "input": 0, "op": "a"}], "reduce": []}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("node 3 is out of range"), "{e}");
        let e = parse(r#"{"nodes": 100000000000, "normal": [], "reduce": []}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("implausibly large"), "{e}");
        let e =
            parse(r#"{"normal": [{"node": 99999999999, "input": 0, "op": "a"}], "reduce": []}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("implausibly large"), "{e}");
        let e = parse(r#"{"normal": []}"#).unwrap_err().to_string();
        assert!(e.contains("\"reduce\" is missing"), "{e}");
        let e = parse("{\"normal\": [").unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
        let e = parse(
            r#"{"normal": [["a", 0], ["b", 1], ["c", 0]], "normal_concat": [2, 3], "reduce": []}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 entries"), "{e}");
    }
}
