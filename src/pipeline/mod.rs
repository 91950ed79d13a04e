//! Pipeline files: the YAML schema, `extends`, `${params.x}`, `-p` overrides,
//! validation against the op registry, and the stage DAG.

pub mod dag;
pub mod error;
pub mod load;
pub mod yaml;

pub use dag::{Dag, Instance};
pub use error::Diag;
pub use load::{load, DataSpec, InputRef, Pipeline, Resources, Stage};
