//! Reading a pipeline file into a validated, fully resolved `Pipeline`.

use super::error::{did_you_mean, Diag};
use super::yaml::{self, Key, Loc, Node, Value};
use crate::engine::op::{DataUse, Ports, Registry};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// The file as given on the command line.
    pub file: PathBuf,
    /// Every file read, the pipeline first, then what it extends.
    pub sources: Vec<PathBuf>,
    pub params: BTreeMap<String, Json>,
    pub data: BTreeMap<String, DataSpec>,
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataSpec {
    pub format: String,
    /// Absolute (resolved against the pipeline file's folder).
    pub path: PathBuf,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    pub stage: String,
    pub output: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Resources {
    pub cpus: Option<u64>,
    pub gpus: Option<u64>,
    pub mem: Option<String>,
    pub time: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub name: String,
    pub op: String,
    pub description: Option<String>,
    /// Resolved: defaults filled, `${params.x}` substituted, overrides applied.
    pub params: BTreeMap<String, Json>,
    pub inputs: BTreeMap<String, InputRef>,
    pub data: Option<String>,
    pub matrix: BTreeMap<String, Vec<Json>>,
    pub resources: Resources,
    /// Folder the stage's relative paths resolve against (its file's folder).
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub loc: Loc,
    #[serde(skip)]
    pub input_locs: BTreeMap<String, Loc>,
}

const TOP_KEYS: &[&str] = &["pipeline", "description", "extends", "data", "params", "stages"];
const STAGE_KEYS: &[&str] = &["op", "description", "params", "inputs", "data", "matrix", "resources"];
const DATA_KEYS: &[&str] = &["format", "path"];
const RESOURCE_KEYS: &[&str] = &["cpus", "gpus", "mem", "time"];

struct Loader<'r> {
    files: Vec<PathBuf>,
    registry: &'r Registry,
}

impl Loader<'_> {
    fn diag(&self, loc: Loc, msg: impl Into<String>) -> Diag {
        Diag::new(&self.files[loc.file], loc, msg)
    }

    fn base_dir(&self, loc: Loc) -> PathBuf {
        let f = &self.files[loc.file];
        let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        }
    }

    /// Read a file and everything it extends, merged into one tree.
    fn read(&mut self, path: &Path, chain: &mut Vec<PathBuf>, from: Option<Loc>) -> Result<Node, Diag> {
        let canon = path.canonicalize().map_err(|e| {
            let msg = format!("cannot read pipeline file {}: {e}", path.display());
            match from {
                Some(loc) => self.diag(loc, msg).help("check the path in `extends:` (it is relative to the file that says it)"),
                None => Diag::new(path, Loc::default(), msg).help("give the path of a pipeline YAML file, e.g. pipelines/quick/darts.yaml"),
            }
        })?;
        if let Some(pos) = chain.iter().position(|p| p == &canon) {
            let cycle: Vec<String> = chain[pos..].iter().chain([&canon]).map(|p| p.display().to_string()).collect();
            let loc = from.unwrap_or_default();
            return Err(self.diag(loc, format!("`extends` loop: {}", cycle.join(" -> "))).help("a pipeline may not extend itself, directly or through other files"));
        }
        let text = std::fs::read_to_string(&canon)
            .map_err(|e| Diag::new(path, Loc::default(), format!("cannot read pipeline file: {e}")))?;
        let id = self.files.len();
        self.files.push(path.to_path_buf());
        let mut node = yaml::parse(&text).map_err(|(loc, msg)| {
            Diag::new(path, loc, format!("YAML syntax error: {msg}")).help("fix the YAML syntax at this position (indentation, a missing `:` or closing bracket)")
        })?;
        node.set_file(id);
        if !matches!(node.value, Value::Map(_)) {
            return Err(self.diag(node.loc, format!("a pipeline file must be a mapping, found {}", node.kind()))
                .help("start with `pipeline: NAME` and a `stages:` mapping"));
        }
        let Some(ext) = node.get("extends").cloned() else { return Ok(node) };
        let Some(rel) = ext.as_str() else {
            return Err(self.diag(ext.loc, format!("`extends` must be a string (a path), found {}", ext.kind())));
        };
        let base_path = self.base_dir(ext.loc).join(rel);
        chain.push(canon);
        let base = self.read(&base_path, chain, Some(ext.loc))?;
        chain.pop();
        Ok(merge(base, node))
    }
}

/// Child over base: mappings merge key by key, everything else replaces.
fn merge(base: Node, child: Node) -> Node {
    match (base.value, child.value) {
        (Value::Map(mut b), Value::Map(c)) => {
            for (k, v) in c {
                if k.name == "extends" {
                    continue;
                }
                match b.iter().position(|(bk, _)| bk.name == k.name) {
                    Some(i) => {
                        let old = b.remove(i).1;
                        b.insert(i, (k, merge(old, v)));
                    }
                    None => b.push((k, v)),
                }
            }
            Node { value: Value::Map(b), loc: child.loc }
        }
        (_, c) => Node { value: c, loc: child.loc },
    }
}

/// Load, merge, resolve and validate a pipeline file. `overrides` are the
/// `-p stage.key=value` (or `params.key=value`) strings of the command line.
pub fn load(path: &Path, overrides: &[String], registry: &Registry) -> Result<Pipeline, Diag> {
    let mut loader = Loader { files: Vec::new(), registry };
    let root = loader.read(path, &mut Vec::new(), None)?;
    let l = &loader;
    let map = root.as_map().unwrap_or_default();
    check_keys(l, map, TOP_KEYS, "top-level key", "a pipeline file has: pipeline, description, extends, data, params, stages")?;

    let name = match root.get("pipeline") {
        Some(n) => match n.as_str() {
            Some(s) if valid_name(s) => s.to_string(),
            Some(s) => return Err(l.diag(n.loc, format!("pipeline name `{s}` is not valid")).help("use letters, digits, `-` and `_` only")),
            None => return Err(type_err(l, n, "a string")),
        },
        None => return Err(l.diag(root.loc, "missing `pipeline:` (the pipeline's name)").help("add e.g. `pipeline: darts` at the top of the file")),
    };
    let description = match root.get("description") {
        Some(n) => n.as_str().ok_or_else(|| type_err(l, n, "a string"))?.to_string(),
        None => String::new(),
    };

    let mut params = BTreeMap::new();
    if let Some(p) = root.get("params") {
        let m = p.as_map().ok_or_else(|| type_err(l, p, "a mapping of names to values"))?;
        for (k, v) in m {
            params.insert(k.name.clone(), v.to_json());
        }
    }
    // Global param overrides first: stages interpolate them.
    let (global_ov, stage_ov) = split_overrides(overrides)?;
    for (key, value) in global_ov {
        params.insert(key, value);
    }

    let mut data = BTreeMap::new();
    if let Some(d) = root.get("data") {
        let m = d.as_map().ok_or_else(|| type_err(l, d, "a mapping of data set names to {format, path}"))?;
        for (k, v) in m {
            let dm = v.as_map().ok_or_else(|| type_err(l, v, "a mapping with `format` and `path`"))?;
            check_keys(l, dm, DATA_KEYS, "data set key", "a data set has `format` and `path`")?;
            let format = req_str(l, v, "format", &format!("data set `{}`", k.name))?;
            let formats = l.registry.data_formats();
            if !formats.is_empty() && !formats.contains(&format.as_str()) {
                let loc = v.get("format").map(|n| n.loc).unwrap_or(v.loc);
                let hint = did_you_mean(&format, formats.iter().copied()).map(|h| format!("{h} ")).unwrap_or_default();
                return Err(l.diag(loc, format!("unknown data format `{format}` for data set `{}`", k.name)).help(format!("{hint}known formats: {} (see datasets/README.md)", formats.join(", "))));
            }
            let raw = req_str(l, v, "path", &format!("data set `{}`", k.name))?;
            let path_node = v.get("path").cloned().unwrap_or(v.clone());
            let raw = interpolate_str(l, &raw, &params, path_node.loc)?;
            let base = l.base_dir(path_node.loc);
            let path = if base == Path::new(".") { PathBuf::from(raw) } else { base.join(raw) };
            data.insert(k.name.clone(), DataSpec { format, path });
        }
    }

    let stages_node = root.get("stages").ok_or_else(|| {
        l.diag(root.loc, "missing `stages:`").help("add a `stages:` mapping; see pipelines/example.yaml for the shape")
    })?;
    let stage_map = stages_node.as_map().ok_or_else(|| type_err(l, stages_node, "a mapping of stage names to stages"))?;
    if stage_map.is_empty() {
        return Err(l.diag(stages_node.loc, "`stages:` is empty").help("add at least one stage"));
    }
    let mut stages = Vec::new();
    for (k, v) in stage_map {
        stages.push(read_stage(l, k, v, &params, &data)?);
    }
    apply_stage_overrides(l, &mut stages, stage_ov)?;
    check_inputs(l, &stages)?;
    let pipeline = Pipeline { name, description, file: path.to_path_buf(), sources: loader.files.clone(), params, data, stages };
    super::dag::Dag::build(&pipeline, registry).map_err(|e| match e {
        super::dag::DagError::Cycle(names, loc) => l
            .diag(loc, format!("the stages form a cycle: {}", names.join(" -> ")))
            .help("a stage cannot depend on its own outputs; remove one of these inputs"),
    })?;
    Ok(pipeline)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn type_err(l: &Loader, n: &Node, want: &str) -> Diag {
    l.diag(n.loc, format!("expected {want}, found {}", n.kind()))
}

fn req_str(l: &Loader, n: &Node, key: &str, what: &str) -> Result<String, Diag> {
    match n.get(key) {
        Some(v) => v.as_str().map(String::from).ok_or_else(|| type_err(l, v, "a string")),
        None => Err(l.diag(n.loc, format!("{what} has no `{key}`")).help(format!("add `{key}:`"))),
    }
}

fn check_keys(l: &Loader, map: &[(Key, Node)], allowed: &[&str], what: &str, help: &str) -> Result<(), Diag> {
    for (k, _) in map {
        if !allowed.contains(&k.name.as_str()) {
            let hint = did_you_mean(&k.name, allowed.iter().copied()).unwrap_or_else(|| help.to_string());
            return Err(l.diag(k.loc, format!("unknown {what} `{}`", k.name)).help(hint));
        }
    }
    Ok(())
}

fn read_stage(l: &Loader, key: &Key, node: &Node, params: &BTreeMap<String, Json>, data: &BTreeMap<String, DataSpec>) -> Result<Stage, Diag> {
    let name = &key.name;
    if !valid_name(name) {
        return Err(l.diag(key.loc, format!("stage name `{name}` is not valid")).help("use letters, digits, `-` and `_` (no dots: `stage.output` names an input)"));
    }
    let map = node.as_map().ok_or_else(|| type_err(l, node, &format!("a mapping (stage `{name}` needs at least `op:`)")))?;
    check_keys(l, map, STAGE_KEYS, &format!("key in stage `{name}`"), "a stage has: op, description, params, inputs, data, matrix, resources")?;
    let op_node = node.get("op").ok_or_else(|| l.diag(key.loc, format!("stage `{name}` has no `op:`")).help(format!("add `op: NAME`; known ops: {}", known_ops(l))))?;
    let op_name = op_node.as_str().ok_or_else(|| type_err(l, op_node, "a string (an op name)"))?;
    let Some(op) = l.registry.get(op_name) else {
        let hint = did_you_mean(op_name, l.registry.names()).map(|h| format!("{h} ")).unwrap_or_default();
        return Err(l.diag(op_node.loc, format!("unknown op `{op_name}` in stage `{name}`"))
            .help(format!("{hint}known ops: {} (`nasflow ops` describes them)", known_ops(l))));
    };

    // Params: typed, defaults filled, `${params.x}` substituted.
    let mut resolved = BTreeMap::new();
    if let Some(pn) = node.get("params") {
        let pm = pn.as_map().ok_or_else(|| type_err(l, pn, "a mapping of param names to values"))?;
        for (k, v) in pm {
            let Some(spec) = op.param(&k.name) else {
                let hint = did_you_mean(&k.name, op.params.iter().map(|p| p.name))
                    .unwrap_or_else(|| format!("op `{}` takes: {}", op.name, param_names(op)));
                return Err(l.diag(k.loc, format!("op `{}` has no param `{}`", op.name, k.name)).help(hint));
            };
            let value = interpolate(l, v, params)?;
            let checked = spec.ty.check(&value).map_err(|e| {
                l.diag(v.loc, format!("param `{}` of stage `{name}`: {e}", k.name)).help(format!("{}: {}", spec.name, spec.doc))
            })?;
            resolved.insert(k.name.clone(), checked);
        }
    }
    for spec in &op.params {
        if resolved.contains_key(spec.name) {
            continue;
        }
        match &spec.default {
            Some(d) => {
                resolved.insert(spec.name.to_string(), d.clone());
            }
            None => {
                return Err(l.diag(key.loc, format!("stage `{name}` (op `{}`) needs param `{}`", op.name, spec.name))
                    .help(format!("add `params: {{ {}: ... }}` ({}: {})", spec.name, spec.ty.describe(), spec.doc)))
            }
        }
    }

    let mut inputs = BTreeMap::new();
    let mut input_locs = BTreeMap::new();
    if let Some(inode) = node.get("inputs") {
        let im = inode.as_map().ok_or_else(|| type_err(l, inode, "a mapping of input names to `stage.output`"))?;
        for (k, v) in im {
            if let Ports::Fixed(ports) = &op.inputs {
                if !ports.iter().any(|p| p.name == k.name) {
                    let names: Vec<&str> = ports.iter().map(|p| p.name).collect();
                    let hint = did_you_mean(&k.name, names.iter().copied()).unwrap_or_else(|| format!("op `{}` takes inputs: {}", op.name, if names.is_empty() { "none".into() } else { names.join(", ") }));
                    return Err(l.diag(k.loc, format!("op `{}` has no input `{}`", op.name, k.name)).help(hint));
                }
            }
            let s = v.as_str().ok_or_else(|| type_err(l, v, "a string `stage.output`"))?;
            let Some((st, out)) = s.split_once('.') else {
                return Err(l.diag(v.loc, format!("input `{}` = `{s}` does not name an output", k.name)).help("write `STAGE.OUTPUT`, e.g. `search.alphas`"));
            };
            inputs.insert(k.name.clone(), InputRef { stage: st.to_string(), output: out.to_string() });
            input_locs.insert(k.name.clone(), v.loc);
        }
    }
    if let Ports::Fixed(ports) = &op.inputs {
        for p in ports {
            if !inputs.contains_key(p.name) && !p.doc.starts_with("(optional)") {
                return Err(l.diag(key.loc, format!("stage `{name}` (op `{}`) needs input `{}`", op.name, p.name))
                    .help(format!("add `inputs: {{ {}: STAGE.OUTPUT }}` ({})", p.name, p.doc)));
            }
        }
    }

    let data_ref = match node.get("data") {
        Some(d) => {
            let s = d.as_str().ok_or_else(|| type_err(l, d, "a string (a name from `data:`)"))?;
            if op.data == DataUse::None {
                return Err(l.diag(d.loc, format!("op `{}` does not read a data set", op.name)).help("remove `data:` from this stage"));
            }
            if !data.contains_key(s) {
                let hint = did_you_mean(s, data.keys().map(String::as_str)).unwrap_or_else(|| {
                    if data.is_empty() { "declare it under a top-level `data:` mapping".into() } else { format!("declared data sets: {}", data.keys().cloned().collect::<Vec<_>>().join(", ")) }
                });
                return Err(l.diag(d.loc, format!("unknown data set `{s}`")).help(hint));
            }
            Some(s.to_string())
        }
        None if op.data == DataUse::Required => {
            return Err(l.diag(key.loc, format!("stage `{name}` (op `{}`) needs a data set", op.name)).help("add `data: NAME` with NAME declared under the top-level `data:`"))
        }
        None => None,
    };

    let mut matrix = BTreeMap::new();
    if let Some(mn) = node.get("matrix") {
        let mm = mn.as_map().ok_or_else(|| type_err(l, mn, "a mapping of param names to lists of values"))?;
        for (k, v) in mm {
            let Some(spec) = op.param(&k.name) else {
                let hint = did_you_mean(&k.name, op.params.iter().map(|p| p.name)).unwrap_or_else(|| format!("op `{}` takes: {}", op.name, param_names(op)));
                return Err(l.diag(k.loc, format!("matrix key `{}`: op `{}` has no such param", k.name, op.name)).help(hint));
            };
            let Value::Seq(items) = &v.value else { return Err(type_err(l, v, "a list of values")) };
            if items.is_empty() {
                return Err(l.diag(v.loc, format!("matrix `{}` is empty", k.name)).help("give at least one value"));
            }
            let mut vals = Vec::new();
            for it in items {
                let j = interpolate(l, it, params)?;
                vals.push(spec.ty.check(&j).map_err(|e| l.diag(it.loc, format!("matrix `{}`: {e}", k.name)))?);
            }
            matrix.insert(k.name.clone(), vals);
        }
    }

    let mut resources = Resources::default();
    if let Some(rn) = node.get("resources") {
        let rm = rn.as_map().ok_or_else(|| type_err(l, rn, "a mapping (cpus, gpus, mem, time)"))?;
        check_keys(l, rm, RESOURCE_KEYS, "resource", "resources are: cpus, gpus, mem, time")?;
        for (k, v) in rm {
            match k.name.as_str() {
                "cpus" | "gpus" => {
                    let n = match v.value { Value::Int(i) if i >= 0 => i as u64, _ => return Err(type_err(l, v, "a non-negative integer")) };
                    if k.name == "cpus" { resources.cpus = Some(n) } else { resources.gpus = Some(n) }
                }
                _ => {
                    let s = match &v.value { Value::Str(s) => s.clone(), Value::Int(i) => i.to_string(), _ => return Err(type_err(l, v, "a string such as \"8G\" or \"24:00:00\"")) };
                    if k.name == "mem" { resources.mem = Some(s) } else { resources.time = Some(s) }
                }
            }
        }
    }
    let description = node.get("description").and_then(Node::as_str).map(String::from);
    Ok(Stage { name: name.clone(), op: op.name.to_string(), description, params: resolved, inputs, data: data_ref, matrix, resources, base_dir: l.base_dir(key.loc), loc: key.loc, input_locs })
}

fn known_ops(l: &Loader) -> String {
    l.registry.names().collect::<Vec<_>>().join(", ")
}

fn param_names(op: &crate::engine::op::OpSpec) -> String {
    if op.params.is_empty() {
        "no params".into()
    } else {
        op.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    }
}

/// `${params.x}` as a whole value keeps x's type; inside a string it is text.
fn interpolate(l: &Loader, n: &Node, params: &BTreeMap<String, Json>) -> Result<Json, Diag> {
    match &n.value {
        Value::Str(s) => {
            let t = s.trim();
            if t.starts_with("${") && t.ends_with('}') && t.matches("${").count() == 1 {
                return lookup(l, &t[2..t.len() - 1], params, n.loc);
            }
            Ok(Json::String(interpolate_str(l, s, params, n.loc)?))
        }
        Value::Seq(items) => items.iter().map(|i| interpolate(l, i, params)).collect::<Result<Vec<_>, _>>().map(Json::Array),
        Value::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                o.insert(k.name.clone(), interpolate(l, v, params)?);
            }
            Ok(Json::Object(o))
        }
        _ => Ok(n.to_json()),
    }
}

fn interpolate_str(l: &Loader, s: &str, params: &BTreeMap<String, Json>, loc: Loc) -> Result<String, Diag> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            return Err(l.diag(loc, format!("unclosed `${{` in `{s}`")).help("write `${params.NAME}`"));
        };
        let v = lookup(l, &rest[i + 2..i + j], params, loc)?;
        match v {
            Json::String(t) => out.push_str(&t),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(l: &Loader, expr: &str, params: &BTreeMap<String, Json>, loc: Loc) -> Result<Json, Diag> {
    let Some(key) = expr.trim().strip_prefix("params.") else {
        return Err(l.diag(loc, format!("cannot resolve `${{{expr}}}`")).help("only `${params.NAME}` is supported, with NAME under the top-level `params:`"));
    };
    params.get(key).cloned().ok_or_else(|| {
        let hint = did_you_mean(key, params.keys().map(String::as_str)).unwrap_or_else(|| format!("add `{key}` under the top-level `params:`"));
        l.diag(loc, format!("`${{{expr}}}`: there is no param `{key}`")).help(hint)
    })
}

type Override = (String, String, Json);

fn override_diag(o: &str, msg: impl Into<String>) -> Diag {
    Diag::new(Path::new("command line"), Loc::default(), format!("-p {o}: {}", msg.into()))
}

fn split_overrides(overrides: &[String]) -> Result<(Vec<(String, Json)>, Vec<Override>), Diag> {
    let mut global = Vec::new();
    let mut stage = Vec::new();
    for o in overrides {
        let Some((path, raw)) = o.split_once('=') else {
            return Err(override_diag(o, "expected STAGE.PARAM=VALUE").help("e.g. `-p search.epochs=1` or `-p params.seed=3`"));
        };
        let Some((st, key)) = path.trim().split_once('.') else {
            return Err(override_diag(o, format!("`{path}` must be STAGE.PARAM or params.NAME")).help("e.g. `-p search.epochs=1`"));
        };
        let value = yaml::parse(raw).map(|n| n.to_json()).unwrap_or(Json::String(raw.to_string()));
        let value = if raw.trim().is_empty() { Json::String(String::new()) } else { value };
        if st == "params" {
            global.push((key.to_string(), value));
        } else {
            stage.push((st.to_string(), key.to_string(), value));
        }
    }
    Ok((global, stage))
}

fn apply_stage_overrides(l: &Loader, stages: &mut [Stage], ovs: Vec<Override>) -> Result<(), Diag> {
    for (st, key, value) in ovs {
        let text = format!("{st}.{key}={}", value.as_str().map(String::from).unwrap_or(value.to_string()));
        let names: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
        let Some(stage) = stages.iter_mut().find(|s| s.name == st) else {
            let hint = did_you_mean(&st, names.iter().map(String::as_str)).unwrap_or_else(|| format!("stages: {}", names.join(", ")));
            return Err(override_diag(&text, format!("no stage `{st}`")).help(hint));
        };
        let op = l.registry.get(&stage.op).ok_or_else(|| override_diag(&text, "unknown op"))?;
        let Some(spec) = op.param(&key) else {
            let hint = did_you_mean(&key, op.params.iter().map(|p| p.name)).unwrap_or_else(|| format!("op `{}` takes: {}", op.name, param_names(op)));
            return Err(override_diag(&text, format!("stage `{st}` (op `{}`) has no param `{key}`", op.name)).help(hint));
        };
        let checked = spec.ty.check(&value).map_err(|e| override_diag(&text, e).help(format!("{}: {}", spec.name, spec.doc)))?;
        stage.params.insert(key, checked);
    }
    Ok(())
}

fn check_inputs(l: &Loader, stages: &[Stage]) -> Result<(), Diag> {
    for s in stages {
        for (name, r) in &s.inputs {
            let loc = s.input_locs.get(name).copied().unwrap_or(s.loc);
            let Some(up) = stages.iter().find(|u| u.name == r.stage) else {
                let hint = did_you_mean(&r.stage, stages.iter().map(|u| u.name.as_str()))
                    .unwrap_or_else(|| format!("stages: {}", stages.iter().map(|u| u.name.as_str()).collect::<Vec<_>>().join(", ")));
                return Err(l.diag(loc, format!("input `{name}` of stage `{}` names stage `{}`, which does not exist", s.name, r.stage)).help(hint));
            };
            let op = l.registry.get(&up.op).ok_or_else(|| l.diag(loc, "unknown op"))?;
            let outs: Vec<String> = op.output_ports(&up.params).into_iter().map(|(n, _)| n).collect();
            if !outs.contains(&r.output) {
                let hint = did_you_mean(&r.output, outs.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("stage `{}` (op `{}`) outputs: {}", up.name, up.op, if outs.is_empty() { "nothing".into() } else { outs.join(", ") }));
                return Err(l.diag(loc, format!("input `{name}` of stage `{}`: stage `{}` has no output `{}`", s.name, up.name, r.output)).help(hint));
            }
        }
    }
    Ok(())
}

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}
