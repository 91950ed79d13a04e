//! BayesNAS (Zhou, Yang, Wang, Pan, ICML 2019; spec §4): a one-shot network
//! over its own search space (fixed 8-edge cells, pre-activation ops, scalar
//! edge and op switches), trained with a re-weighted group lasso whose
//! weights come from a Laplace approximation (diagonal Hessian), then pruned
//! by thresholding the switches' prior variances γ.
//!
//! * [`ops`]: the op family and CReduct preprocessing;
//! * [`space`]: its search space, an implementation of [`crate::space::SearchSpace`];
//! * [`supernet`]: the one-shot network with switches;
//! * [`hessian`], [`update`]: diagonal Hessian and the closed-form γ/ω step;
//! * [`search`]: the search loop; [`artifacts`]: its files;
//! * [`derive`]: cells from gammas; [`network`]: the retrain network.

pub mod artifacts;
pub mod derive;
pub mod hessian;
pub mod network;
pub mod ops;
pub mod search;
pub mod space;
pub mod supernet;
pub mod update;

pub use space::BayesNasSpace;
