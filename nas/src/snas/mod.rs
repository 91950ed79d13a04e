//! SNAS (Xie et al., ICLR 2019; spec gradient-nas.md §3): stochastic NAS on
//! the DARTS supernet. What differs from DARTS is only the mixing weights (a
//! Gumbel-softmax sample at an annealed temperature), the loss (plus a
//! resource penalty) and the single-level update; the supernet, ops and the
//! search loop are DARTS's ([`crate::darts`]).

pub mod cost;
pub mod gumbel;
pub mod method;
pub mod resource;
pub mod schedule;
pub mod search;

pub use cost::{cell_costs, network_costs, op_cost, CellCosts, OpCost};
pub use method::{ArchOptimizer, Snas, SnasSettings};
pub use resource::{concrete_log_density, Estimator, Penalty, ResourceConfig, ResourceModel};
pub use schedule::Temperature;
pub use search::{search, SnasConfig};
