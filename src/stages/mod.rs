//! The built-in stage ops: the thin glue between a stage's params and inputs
//! and the code that does the work.

pub mod aggregate;
pub mod bayesnas;
mod common;
pub mod darts;
pub mod genotype;
mod progress;
pub mod shell;
pub mod snas;
mod supernet;
pub mod train;
pub mod visualize;

use crate::engine::op::Registry;
use std::sync::OnceLock;

pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry::default();
        r.set_data_formats(nasflow_nas::data::known_formats());
        r.add(shell::spec());
        r.add(aggregate::spec());
        r.add(darts::spec());
        r.add(snas::spec());
        r.add(genotype::spec());
        r.add(bayesnas::search_spec()); r.add(bayesnas::derive_spec());
        r.add(train::train_spec());
        r.add(train::evaluate_spec());
        r.add(visualize::spec());
        r
    })
}
