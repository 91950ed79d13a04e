//! Named access to a network's parameters. candle's VarMap is a HashMap, so
//! its iteration order changes from run to run; everything that reduces over
//! parameters (grad norms, optimiser steps, checkpoints diffs) goes through
//! the sorted list here so that float sums are reproducible.

use candle_core::Var;
use candle_nn::VarMap;

/// BN running statistics live in the VarMap as Vars but are not trained.
fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Trainable vars (not BN running stats), sorted by name — the order used for grad norms and optimisers (VarMap iteration order is random).
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    // A poisoned lock only means another thread panicked mid-insert; the map
    // itself is still a valid HashMap, so read it anyway.
    let data = varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .filter(|(name, _)| !is_running_stat(name))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Number of trainable scalars, leaving out vars whose name starts with
/// `exclude_prefix` (DARTS reports the size without the "auxiliary" head).
pub fn count_params(varmap: &VarMap, exclude_prefix: Option<&str>) -> usize {
    trainable_vars(varmap)
        .iter()
        .filter(|(name, _)| exclude_prefix.is_none_or(|p| !name.starts_with(p)))
        .map(|(_, var)| var.elem_count())
        .sum()
}
