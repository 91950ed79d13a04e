//! The built-in stage ops: the thin glue between a stage's params and inputs
//! and the code that does the work.

pub mod aggregate;
pub mod shell;

use crate::engine::op::Registry;
use std::sync::OnceLock;

pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry::default();
        r.add(shell::spec());
        r.add(aggregate::spec());
        r
    })
}
