//! What an op declares to the engine: params with types and defaults, named
//! inputs and outputs, and the function that runs it. The engine knows ops
//! only through this interface.

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub enum ParamType {
    Int,
    Float,
    Bool,
    Str,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    StrList,
    /// Any JSON value (checked by the op itself).
    Any,
}

impl ParamType {
    pub fn describe(&self) -> String {
        match self {
            ParamType::Int => "integer".into(),
            ParamType::Float => "number".into(),
            ParamType::Bool => "boolean".into(),
            ParamType::Str => "string".into(),
            ParamType::Choice(c) => format!("one of {}", c.join(" | ")),
            ParamType::StrList => "list of strings".into(),
            ParamType::Any => "any value".into(),
        }
    }

    /// Check (and normalise: an integer where a number is wanted) a value.
    pub fn check(&self, v: &Json) -> Result<Json, String> {
        let bad = || Err(format!("expected {}, found {}", self.describe(), json_kind(v)));
        match self {
            ParamType::Int => match v.as_i64() {
                Some(i) => Ok(Json::from(i)),
                None => bad(),
            },
            ParamType::Float => match v.as_f64() {
                Some(f) if v.is_number() => Ok(Json::from(f)),
                _ => bad(),
            },
            ParamType::Bool => if v.is_boolean() { Ok(v.clone()) } else { bad() },
            ParamType::Str => if v.is_string() { Ok(v.clone()) } else { bad() },
            ParamType::Choice(c) => match v.as_str() {
                Some(s) if c.contains(&s) => Ok(v.clone()),
                Some(s) => Err(format!("`{s}` is not one of {}", c.join(", "))),
                None => bad(),
            },
            ParamType::StrList => match v {
                Json::Array(a) if a.iter().all(Json::is_string) => Ok(v.clone()),
                Json::String(_) => Ok(Json::Array(vec![v.clone()])),
                Json::Array(a) => {
                    let odd = a.iter().find(|x| !x.is_string()).map(json_kind).unwrap_or("a value");
                    Err(format!("expected a list of strings, but it holds {odd} (YAML reads y, n, yes, no, on, off and numbers as non-strings: quote it)"))
                }
                _ => bad(),
            },
            ParamType::Any => Ok(v.clone()),
        }
    }
}

pub fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// None: required.
    pub default: Option<Json>,
    pub doc: &'static str,
}

#[derive(Clone, Debug)]
pub struct PortSpec {
    pub name: &'static str,
    /// Where the artifact lives inside the stage's output folder (file or folder).
    pub path: &'static str,
    pub doc: &'static str,
}

#[derive(Clone, Debug)]
pub enum Ports {
    Fixed(Vec<PortSpec>),
    /// Any names (the shell op's inputs).
    Any,
    /// Names listed in a string-list param (the shell op's `outs`).
    FromParam(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataUse {
    None,
    Optional,
    Required,
}

/// Everything a running op gets. Inputs are paths to upstream artifacts; an
/// op that folds a matrix gets one path per upstream instance.
pub struct StageCtx {
    pub stage: String,
    pub params: BTreeMap<String, Json>,
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    pub data: Option<DataRef>,
    pub out_dir: PathBuf,
    /// Private, persistent across attempts of this exact stage (same
    /// fingerprint): checkpoints go here so a killed stage resumes.
    pub work_dir: PathBuf,
    /// The folder of the pipeline file: relative paths in params resolve here.
    pub base_dir: PathBuf,
    pub log_path: PathBuf,
    /// True when progress bars may be drawn (a terminal, one stage at a time).
    pub show_progress: bool,
    /// The device class the stage runs on: "cpu" or "cuda" (see
    /// `engine::device`); part of its fingerprint. Ops that run no model ignore it.
    pub device: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DataRef {
    pub name: String,
    pub format: String,
    pub path: PathBuf,
}

impl StageCtx {
    pub fn input(&self, name: &str) -> anyhow::Result<&PathBuf> {
        match self.inputs.get(name).map(Vec::as_slice) {
            Some([p]) => Ok(p),
            Some([]) | None => anyhow::bail!("stage `{}`: input `{name}` is not connected", self.stage),
            Some(_) => anyhow::bail!("stage `{}`: input `{name}` has several upstream instances; fold them with an `aggregate` stage", self.stage),
        }
    }
    fn param(&self, name: &str) -> anyhow::Result<&Json> {
        self.params.get(name).ok_or_else(|| anyhow::anyhow!("stage `{}`: missing param `{name}`", self.stage))
    }
    pub fn int(&self, name: &str) -> anyhow::Result<i64> {
        self.param(name)?.as_i64().ok_or_else(|| anyhow::anyhow!("param `{name}` must be an integer"))
    }
    pub fn usize(&self, name: &str) -> anyhow::Result<usize> {
        let v = self.int(name)?;
        usize::try_from(v).map_err(|_| anyhow::anyhow!("stage `{}`: param `{name}` must not be negative (got {v})", self.stage))
    }
    pub fn float(&self, name: &str) -> anyhow::Result<f64> {
        self.param(name)?.as_f64().ok_or_else(|| anyhow::anyhow!("param `{name}` must be a number"))
    }
    pub fn bool(&self, name: &str) -> anyhow::Result<bool> {
        self.param(name)?.as_bool().ok_or_else(|| anyhow::anyhow!("param `{name}` must be a boolean"))
    }
    pub fn str(&self, name: &str) -> anyhow::Result<&str> {
        self.param(name)?.as_str().ok_or_else(|| anyhow::anyhow!("param `{name}` must be a string"))
    }
    pub fn opt_str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Json::as_str)
    }
    pub fn str_list(&self, name: &str) -> Vec<String> {
        match self.params.get(name) {
            Some(Json::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        }
    }
}

pub type RunFn = fn(&StageCtx) -> anyhow::Result<()>;

#[derive(Clone)]
pub struct OpSpec {
    pub name: &'static str,
    /// Bumped when the op's results would change: part of every fingerprint.
    pub version: u32,
    pub doc: &'static str,
    pub params: Vec<ParamSpec>,
    pub inputs: Ports,
    pub outputs: Ports,
    pub data: DataUse,
    /// Takes every instance of a matrix upstream at once instead of fanning out.
    pub folds_matrix: bool,
    /// A string-list param naming files whose content is part of the
    /// fingerprint (the shell op's `deps`).
    pub dep_param: Option<&'static str>,
    /// The op runs models, so the engine picks its device (`nasflow run
    /// --device`, `resources.gpus`); false: it always gets "cpu".
    pub uses_device: bool,
    pub run: RunFn,
}

impl OpSpec {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Output names and their paths in the output folder, given resolved params.
    pub fn output_ports(&self, params: &BTreeMap<String, Json>) -> Vec<(String, String)> {
        match &self.outputs {
            Ports::Fixed(v) => v.iter().map(|p| (p.name.to_string(), p.path.to_string())).collect(),
            Ports::Any => Vec::new(),
            Ports::FromParam(key) => match params.get(*key) {
                Some(Json::Array(a)) => a.iter().filter_map(|v| v.as_str()).map(|s| (s.to_string(), s.to_string())).collect(),
                _ => Vec::new(),
            },
        }
    }
}

/// The set of ops a pipeline may name.
#[derive(Clone, Default)]
pub struct Registry {
    ops: BTreeMap<&'static str, OpSpec>,
    /// Data set formats the ops can read (checked when a pipeline is loaded).
    data_formats: Vec<&'static str>,
}

impl Registry {
    pub fn set_data_formats(&mut self, formats: &[&'static str]) {
        self.data_formats = formats.to_vec();
    }
    pub fn data_formats(&self) -> &[&'static str] {
        &self.data_formats
    }
    pub fn add(&mut self, op: OpSpec) {
        self.ops.insert(op.name, op);
    }
    pub fn get(&self, name: &str) -> Option<&OpSpec> {
        self.ops.get(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.ops.keys().copied()
    }
    pub fn all(&self) -> impl Iterator<Item = &OpSpec> {
        self.ops.values()
    }
}

/// Shorthand for op declarations.
pub fn param(name: &'static str, ty: ParamType, default: impl Into<Option<Json>>, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default: default.into(), doc }
}

pub fn port(name: &'static str, path: &'static str, doc: &'static str) -> PortSpec {
    PortSpec { name, path, doc }
}
