//! The training loops' observer for a stage: a progress bar per epoch (loss,
//! accuracy, ETA) when a terminal is watching, a line per epoch in the log.

use indicatif::{ProgressBar, ProgressStyle};
use nasflow_nas::train::Observer;

pub struct StageProgress {
    stage: String,
    show: bool,
    bar: Option<ProgressBar>,
    /// Epoch records as they happen (`logs/<stage>.metrics.jsonl` in the run
    /// directory), so a long run can be followed before its stage finishes.
    live: Option<std::path::PathBuf>,
}

impl StageProgress {
    pub fn new(ctx: &crate::engine::op::StageCtx) -> StageProgress {
        let live = ctx.log_path.with_extension("metrics.jsonl");
        StageProgress { stage: ctx.stage.clone(), show: ctx.show_progress, bar: None, live: Some(live) }
    }
}

impl Observer for StageProgress {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        if !self.show {
            return;
        }
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} epoch {}/{}", self.stage, epoch + 1, epochs));
        self.bar = Some(bar);
    }

    fn step(&mut self, step: usize, loss: f64, acc: f64) {
        if let Some(b) = &self.bar {
            b.set_position(step as u64 + 1);
            b.set_message(format!("loss {loss:.4} acc {acc:.2}%"));
        }
    }

    fn epoch_end(&mut self, record: &serde_json::Value) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let get = |k: &str| record.get(k).and_then(|v| v.as_f64());
        let mut parts = Vec::new();
        for k in ["train_loss", "train_acc", "valid_acc", "test_acc", "seconds"] {
            if let Some(v) = get(k) {
                parts.push(format!("{k} {v:.3}"));
            }
        }
        if let Some(path) = &self.live {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{record}");
            }
        }
        let epoch = record.get("epoch").and_then(|v| v.as_u64()).unwrap_or(0);
        tracing::info!("{} epoch {}: {}", self.stage, epoch, parts.join(", "));
        if self.show {
            eprintln!("  {} epoch {}: {}", self.stage, epoch, parts.join(", "));
        }
    }
}
