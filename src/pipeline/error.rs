//! Errors in pipeline files: one message with file:line:column, what is
//! wrong, and how to fix it.

use super::yaml::Loc;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Diag {
    pub file: PathBuf,
    pub loc: Loc,
    pub msg: String,
    pub help: Option<String>,
}

impl Diag {
    pub fn new(file: &Path, loc: Loc, msg: impl Into<String>) -> Self {
        Diag { file: file.to_path_buf(), loc, msg: msg.into(), help: None }
    }
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.loc.line > 0 {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.loc.line, self.loc.col, self.msg)?;
        } else {
            write!(f, "{}: {}", self.file.display(), self.msg)?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diag {}

/// "did you mean `x`?" when a candidate is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}
