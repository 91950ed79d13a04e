//! DARTS: search supernet, evaluation network and search method.
pub mod architect;
pub mod search;
