//! DARTS: search supernet, evaluation network and search method.
pub mod model;
pub mod model_search;
pub mod architect;
pub mod search;
