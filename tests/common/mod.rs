//! Helpers for the end-to-end tests: a temp project folder, the nasflow
//! binary, and run.json reading.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::tempdir().unwrap() }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn nasflow(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "nasflow panicked: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nasflow"));
        c.args(args).current_dir(self.path()).env_remove("NASFLOW_CACHE");
        c
    }
    /// `nasflow run FILE --json` and the parsed result.
    pub fn run(&self, file: &str, extra: &[&str]) -> Value {
        let mut args = vec!["run", file, "--json"];
        args.extend_from_slice(extra);
        let out = self.nasflow(&args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad --json output ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Stage name -> status of a run's JSON.
pub fn statuses(run: &Value) -> Vec<(String, String)> {
    run["stages"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string())).collect()
}

pub fn ran(run: &Value) -> Vec<String> {
    let mut v: Vec<String> = statuses(run).into_iter().filter(|(_, s)| s == "ran").map(|(n, _)| n).collect();
    v.sort();
    v
}
