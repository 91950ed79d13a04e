//! `shell`: a command nasflow does not know, with declared dependency files
//! and outputs, cached like any other stage.

use crate::engine::op::{param, DataUse, OpSpec, ParamType, Ports, StageCtx};
use anyhow::{bail, Context, Result};
use serde_json::json;

pub fn spec() -> OpSpec {
    OpSpec {
        name: "shell",
        version: 1,
        doc: "Run a shell command (sh -c) in the pipeline file's folder. It gets NASFLOW_OUT (its output folder: write every `outs` entry there), NASFLOW_IN_<input> (the path of each input) and NASFLOW_PARAM_<name> (each param and each `vars` entry). Its fingerprint covers the command, params, input digests and the content of every `deps` file.",
        params: vec![
            param("cmd", ParamType::Str, None, "the command, run with `sh -c`"),
            param("deps", ParamType::StrList, json!([]), "files (relative to the pipeline file) whose content the command depends on"),
            param("outs", ParamType::StrList, json!([]), "paths the command writes under $NASFLOW_OUT; each is an output of the stage"),
            param("vars", ParamType::Any, json!({}), "extra values passed as NASFLOW_PARAM_<name>"),
            param("seed", ParamType::Int, json!(0), "a seed, passed as NASFLOW_PARAM_seed (useful with `matrix`)"),
        ],
        inputs: Ports::Any,
        outputs: Ports::FromParam("outs"),
        data: DataUse::Optional,
        folds_matrix: false,
        dep_param: Some("deps"),
        uses_device: false,
        run,
    }
}

fn env_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(env_value).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn env_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn run(ctx: &StageCtx) -> Result<()> {
    let cmd = ctx.str("cmd")?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&ctx.log_path).context("cannot open the stage log")?;
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(cmd).current_dir(&ctx.base_dir).stdin(std::process::Stdio::null());
    c.stdout(log.try_clone()?).stderr(log);
    c.env("NASFLOW_OUT", &ctx.out_dir).env("NASFLOW_WORK", &ctx.work_dir).env("NASFLOW_STAGE", &ctx.stage);
    for (name, paths) in &ctx.inputs {
        let joined: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        c.env(format!("NASFLOW_IN_{}", env_name(name)), joined.join(":"));
    }
    for (k, v) in &ctx.params {
        if k != "vars" {
            c.env(format!("NASFLOW_PARAM_{}", env_name(k)), env_value(v));
        }
    }
    if let Some(vars) = ctx.params.get("vars").and_then(|v| v.as_object()) {
        for (k, v) in vars {
            c.env(format!("NASFLOW_PARAM_{}", env_name(k)), env_value(v));
        }
    }
    if let Some(d) = &ctx.data {
        c.env("NASFLOW_DATA", &d.path);
    }
    let status = c.status().context("cannot start `sh`")?;
    if !status.success() {
        bail!("command exited with {status}: {cmd}");
    }
    for o in ctx.str_list("outs") {
        if !ctx.out_dir.join(&o).exists() {
            bail!("the command succeeded but did not write `{o}` under $NASFLOW_OUT (declared in `outs`)");
        }
    }
    Ok(())
}
