//! Reports on finished runs: `nasflow compare` (params, metrics, stages,
//! genotype diffs), seed statistics, plots and the HTML page of `nasflow
//! report`, and the filters of `nasflow runs`. Reads run directories only;
//! the engine knows nothing of this module. It may know NAS artifacts (it
//! reads them by what a stage wrote, see [`load`]).

pub mod cmd;
pub mod compare;
pub mod genodiff;
pub mod html;
pub mod load;
pub mod plots;
pub mod seeds;
pub mod select;
