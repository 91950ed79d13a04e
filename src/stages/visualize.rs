//! `visualize`: DOT and SVG drawings of a genotype's cells.

use super::common::read_genotype;
use crate::engine::atomic;
use crate::engine::op::{port, DataUse, OpSpec, Ports, StageCtx};
use anyhow::Result;
use nasflow_nas::visualize::{cell_dot, cell_svg};

pub fn spec() -> OpSpec {
    OpSpec {
        name: "visualize",
        version: 1,
        doc: "Draw both cells of a genotype as DARTS's visualize.py does: normal.dot/.svg and reduce.dot/.svg (the SVG is laid out by nasflow; no Graphviz needed).",
        params: vec![],
        inputs: Ports::Fixed(vec![port("genotype", "", "a genotype (folder with genotype.json, or a file)")]),
        outputs: Ports::Fixed(vec![port("cells", "cells", "normal.dot, normal.svg, reduce.dot, reduce.svg")]),
        data: DataUse::None,
        folds_matrix: false,
        dep_param: None,
        uses_device: false,
        run,
    }
}

fn run(ctx: &StageCtx) -> Result<()> {
    let g = read_genotype(ctx.input("genotype")?)?;
    let dir = ctx.out_dir.join("cells");
    for (name, cell) in [("normal", &g.normal), ("reduce", &g.reduce)] {
        atomic::write(&dir.join(format!("{name}.dot")), cell_dot(cell, name).as_bytes())?;
        atomic::write(&dir.join(format!("{name}.svg")), cell_svg(cell, name).as_bytes())?;
    }
    Ok(())
}
