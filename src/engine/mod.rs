//! The pipeline engine: fingerprints, the content-addressed store, run
//! directories, locking and the scheduler. It knows ops only through
//! `op::OpSpec` and nothing of NAS.

pub mod atomic;
pub mod device;
pub mod exec;
pub mod fingerprint;
pub mod lock;
pub mod op;
pub mod rundir;
pub mod scheduler;
pub mod slurm;
pub mod status;
pub mod store;
