//! The stage graph (petgraph) and its expansion into instances: a stage with
//! a `matrix` fans out, stages downstream fan out with it, and ops that fold
//! a matrix (aggregate) take every instance at once.

use super::load::{Pipeline, Stage};
use super::yaml::Loc;
use crate::engine::op::Registry;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;
use std::collections::BTreeMap;

pub enum DagError {
    Cycle(Vec<String>, Loc),
}

/// One runnable unit: a stage at one point of its matrix.
#[derive(Clone, Debug)]
pub struct Instance {
    /// `search` or `search[seed=1]`.
    pub id: String,
    pub stage: usize,
    pub coords: BTreeMap<String, Json>,
    /// Per input name, the (instance index, output name) it reads; several
    /// when the op folds a matrix.
    pub inputs: BTreeMap<String, Vec<(usize, String)>>,
    pub deps: Vec<usize>,
}

pub struct Dag {
    /// Stage indices in execution order.
    pub order: Vec<usize>,
    /// Instances in execution order (dependencies first).
    pub instances: Vec<Instance>,
    pub graph: DiGraph<usize, ()>,
}

impl Dag {
    pub fn build(p: &Pipeline, registry: &Registry) -> Result<Dag, DagError> {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..p.stages.len()).map(|i| graph.add_node(i)).collect();
        let index = |name: &str| p.stages.iter().position(|s| s.name == name);
        for (i, s) in p.stages.iter().enumerate() {
            let mut ups: Vec<usize> = s.inputs.values().filter_map(|r| index(&r.stage)).collect();
            ups.sort();
            ups.dedup();
            for u in ups {
                graph.add_edge(nodes[u], nodes[i], ());
            }
        }
        let order: Vec<usize> = match toposort(&graph, None) {
            Ok(o) => o.into_iter().map(|n| graph[n]).collect(),
            Err(c) => {
                let start = graph[c.node_id()];
                let cycle = find_cycle(p, start);
                return Err(DagError::Cycle(cycle, p.stages[start].loc));
            }
        };
        // Stable order: among ready stages, keep file order (toposort may not).
        let order = stable_topo(p, &order);
        let instances = expand(p, &order, registry);
        Ok(Dag { order, instances, graph })
    }

    /// Instances of one stage.
    pub fn of_stage(&self, stage: usize) -> impl Iterator<Item = (usize, &Instance)> {
        self.instances.iter().enumerate().filter(move |(_, i)| i.stage == stage)
    }

    /// Graphviz text of the stage graph.
    pub fn dot(&self, p: &Pipeline) -> String {
        let mut s = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", p.name);
        for &i in &self.order {
            let st = &p.stages[i];
            s.push_str(&format!("  \"{}\" [label=\"{}\\n({})\"];\n", st.name, st.name, st.op));
        }
        for &i in &self.order {
            let st = &p.stages[i];
            for (name, r) in &st.inputs {
                s.push_str(&format!("  \"{}\" -> \"{}\" [label=\"{}\"];\n", r.stage, st.name, if *name == r.output { name.clone() } else { format!("{}→{}", r.output, name) }));
            }
        }
        s.push_str("}\n");
        s
    }
}

fn stable_topo(p: &Pipeline, order: &[usize]) -> Vec<usize> {
    let mut done = vec![false; p.stages.len()];
    let mut out = Vec::new();
    while out.len() < order.len() {
        let next = (0..p.stages.len()).find(|&i| {
            !done[i] && p.stages[i].inputs.values().all(|r| p.stages.iter().position(|s| s.name == r.stage).is_none_or(|u| done[u]))
        });
        match next {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => return order.to_vec(),
        }
    }
    out
}

fn find_cycle(p: &Pipeline, start: usize) -> Vec<String> {
    // Depth-first search from `start` along input edges until we come back.
    fn dfs(p: &Pipeline, at: usize, start: usize, path: &mut Vec<usize>, seen: &mut Vec<bool>) -> bool {
        for r in p.stages[at].inputs.values() {
            let Some(u) = p.stages.iter().position(|s| s.name == r.stage) else { continue };
            if u == start {
                return true;
            }
            if !seen[u] {
                seen[u] = true;
                path.push(u);
                if dfs(p, u, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = vec![false; p.stages.len()];
    dfs(p, start, start, &mut path, &mut seen);
    // path follows inputs (downstream to upstream); print it the way data flows.
    let mut names: Vec<String> = path.iter().rev().map(|&i| p.stages[i].name.clone()).collect();
    names.push(p.stages[*path.last().unwrap_or(&start)].name.clone());
    let first = names[0].clone();
    if names.last() != Some(&first) {
        names.push(first);
    }
    names
}

fn instance_id(stage: &Stage, coords: &BTreeMap<String, Json>) -> String {
    if coords.is_empty() {
        return stage.name.clone();
    }
    let parts: Vec<String> = coords.iter().map(|(k, v)| format!("{k}={}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))).collect();
    format!("{}[{}]", stage.name, parts.join(","))
}

fn expand(p: &Pipeline, order: &[usize], registry: &Registry) -> Vec<Instance> {
    let registry_folds = |s: &Stage| registry.get(&s.op).is_some_and(|o| o.folds_matrix);
    let mut instances: Vec<Instance> = Vec::new();
    for &si in order {
        let stage = &p.stages[si];
        let ups: Vec<(String, usize, String)> = stage
            .inputs
            .iter()
            .filter_map(|(n, r)| p.stages.iter().position(|s| s.name == r.stage).map(|u| (n.clone(), u, r.output.clone())))
            .collect();
        // Combinations of upstream instances that agree on shared coordinates.
        let mut combos: Vec<(BTreeMap<String, Json>, BTreeMap<String, Vec<(usize, String)>>)> = vec![(BTreeMap::new(), BTreeMap::new())];
        if registry_folds(stage) {
            let mut inputs = BTreeMap::new();
            for (name, u, out) in &ups {
                let all: Vec<(usize, String)> = instances.iter().enumerate().filter(|(_, i)| i.stage == *u).map(|(k, _)| (k, out.clone())).collect();
                inputs.insert(name.clone(), all);
            }
            combos = vec![(BTreeMap::new(), inputs)];
        } else {
            for (name, u, out) in &ups {
                let mut next = Vec::new();
                for (coords, inputs) in &combos {
                    for (k, inst) in instances.iter().enumerate().filter(|(_, i)| i.stage == *u) {
                        let agrees = inst.coords.iter().all(|(ck, cv)| coords.get(ck).is_none_or(|v| v == cv));
                        if !agrees {
                            continue;
                        }
                        let mut c = coords.clone();
                        c.extend(inst.coords.clone());
                        let mut ins = inputs.clone();
                        ins.insert(name.clone(), vec![(k, out.clone())]);
                        next.push((c, ins));
                    }
                }
                combos = next;
            }
        }
        // Own matrix on top.
        for (key, values) in &stage.matrix {
            let mut next = Vec::new();
            for (coords, inputs) in &combos {
                for v in values {
                    let mut c = coords.clone();
                    c.insert(key.clone(), v.clone());
                    next.push((c, inputs.clone()));
                }
            }
            combos = next;
        }
        for (coords, inputs) in combos {
            let mut deps: Vec<usize> = inputs.values().flatten().map(|(k, _)| *k).collect();
            deps.sort();
            deps.dedup();
            instances.push(Instance { id: instance_id(stage, &coords), stage: si, coords, inputs, deps });
        }
    }
    instances
}
