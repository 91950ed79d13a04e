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

/// Allocator settings that matter on these machines (candle-notes.md): large
/// blocks straight from mmap with no trimming, so training steps do not
/// thrash brk and page faults. Set by nasflow itself, not left to the user.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
