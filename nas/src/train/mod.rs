//! Training utilities: optimisers with PyTorch semantics, schedules, clipping,
//! checkpoints, progress hooks, and the retrain/evaluate loops.

pub mod checkpoint;
pub mod metrics;
pub mod observer;
pub mod optim;
pub mod retrain;

pub use observer::{Observer, Silent};
pub use optim::{clip_grad_norm, cosine_lr, Adam, Sgd};
