//! Progress hooks for the training loops. The stage glue plugs progress bars
//! and metrics files into them; the loops themselves only log through tracing.

/// Called by the search and retrain loops. Every method has an empty default.
pub trait Observer {
    /// Before the first step of `epoch` (0-based) of `epochs`, which has `steps` steps.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// After training step `step` (0-based) with the running mean loss and
    /// accuracy (percent) of the epoch so far.
    fn step(&mut self, _step: usize, _loss: f64, _acc: f64) {}
    /// After an epoch, with its metrics record (the same object the loop returns).
    fn epoch_end(&mut self, _record: &serde_json::Value) {}
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {}
