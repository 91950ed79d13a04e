//! `nasflow-ops`: the DARTS candidate operations as candle modules, with custom CPU kernels.
//!
//! Layout is NCHW, dtype f32. The kernels ([`depthwise_conv2d`], [`max_pool2d`], [`avg_pool2d`],
//! [`BatchNorm`] in training mode) are candle custom ops with forward and backward, multi-threaded
//! with rayon over (batch, channel) planes. On a non-CPU device every function falls back to a
//! slower composition of candle's stock ops ([`reference`]).

pub mod reference;
mod kernels;
mod conv;
mod bn;
mod blocks;
mod primitive;
mod init;
mod alloc;

pub use alloc::tune_malloc;
pub use blocks::{Conv7x1_1x7, DilConv, FactorizedReduce, ReLUConvBN, SepConv};
pub use bn::BatchNorm;
pub use conv::{conv2d, depthwise_conv2d, relu_depthwise_conv2d};
pub use init::{drop_path, init_pytorch_default};
pub use kernels::{avg_pool2d, max_pool2d, relu, subsample};
pub use primitive::{Op, Primitive};
