//! nasflow-nas: search spaces, genotypes, networks, data sets and search
//! methods. It knows nothing of YAML, pipelines or caching: the stage ops in
//! the `nasflow` crate call into it with plain config structs and folders.

pub mod data;
pub mod bayesnas;
pub mod darts;
pub mod genotype;
pub mod params;
pub mod rng;
pub mod snas;
pub mod space;
pub mod train;
pub mod visualize;
