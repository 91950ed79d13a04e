//! nasflow: neural architecture search experiments from declarative YAML
//! pipelines. `pipeline` reads and checks pipeline files, `engine` runs them
//! with a content-addressed cache, `stages` glues ops to the NAS code in the
//! `nasflow-nas` crate, `cli` is the command line.

pub mod cli;
pub mod engine;
mod genotype_cli;
pub mod pipeline;
pub mod report;
pub mod stages;
