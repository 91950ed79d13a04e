//! `nasflow-ops`: the DARTS candidate operations as candle modules, with custom CPU kernels.
//!
//! Layout NCHW, dtype f32. Module semantics follow DARTS `operations.py` and PyTorch
//! (checked against PyTorch fixtures in `ops/fixtures`, see `make_fixtures.py` there).
//!
//! # Kernels
//! On CPU with f32, these are candle custom ops with forward and backward, multi-threaded with
//! rayon over (batch, channel) planes (they run on the current rayon pool: the global one, or
//! candle's when called inside `Device::with_context`):
//! * [`depthwise_conv2d`] / [`relu_depthwise_conv2d`] (ReLU fused into the input read; every
//!   DARTS depthwise conv is preceded by a ReLU), any k, stride, padding, dilation;
//! * [`max_pool2d`] (pad -inf, gradient to the first maximum like PyTorch) and [`avg_pool2d`]
//!   (count_include_pad either way), any kernel, stride, padding;
//! * [`BatchNorm`] in training mode (fused statistics, normalisation and backward) and eval mode;
//! * [`relu`], [`subsample`] and the 1x1 case of [`conv2d`] (one GEMM per sample).
//!
//! The window kernels copy each plane into a padded polyphase layout so that every kernel tap is
//! one contiguous vector loop; the plane loops are compiled twice and pick AVX2+FMA at run time
//! (the workspace itself is built for baseline x86-64). All reductions (weight gradients, BN
//! statistics) are summed in a fixed order: results do not depend on the thread count.
//!
//! On other devices or dtypes every function falls back to a composition of candle's stock ops
//! ([`mod@reference`]), which is differentiable but slow.
//!
//! # Fused nodes ([`mod@tape`])
//! candle's backward gives every graph node a zero-filled gradient buffer and sums each
//! contribution into a fresh tensor. [`fused`] runs a composition of this crate's ops (a DARTS
//! mixed edge, a whole search or evaluation cell) as *one* candle node: inside, the ops are
//! recorded on a small tape of our own, whose backward calls the same kernels' backward and sums
//! gradients without zero-filling (in place from the third contribution on). Values and
//! gradients equal candle's graph up to float summation order (tested on the edge, both cells
//! and the whole supernet). CPU f32 only; elsewhere `fused` runs the composition in candle's graph.
//!
//! # CUDA (feature `cuda`)
//! With the `cuda` feature, f32 tensors on a CUDA device use CUDA kernels (`ops/cuda/*.cu`,
//! compiled to PTX by `build.rs` with nvcc) for the depthwise conv, the pools, subsample, ReLU and
//! batch norm, forward and backward (gather-style backward, no float atomics); the 1x1 and dense
//! convs use candle's own CUDA conv / matmul. Compiled but not yet run on a GPU: see
//! `docs/cuda.md`. Without the feature nothing CUDA is built.
//!
//! # Speed notes
//! The GEMMs (1x1 and dense convs) use the `gemm` crate with its AVX-512 kernels enabled (chosen
//! at run time). Kernel outputs are zeroed chunk by chunk by the worker that fills them, or not
//! at all where a GEMM overwrites them, instead of by one serial memset up front.
//! Call [`tune_malloc`] once at program start (glibc): it avoids one mmap + page faults per
//! activation tensor, worth 2-3x on a training step. `cargo run --release -p nasflow-ops
//! --example edge_bench` times one DARTS mixed edge.

pub mod reference;
mod kernels;
mod conv;
mod bn;
mod blocks;
mod primitive;
mod init;
mod alloc;
pub mod tape;

pub use alloc::tune_malloc;
pub use blocks::{Conv7x1_1x7, DilConv, FactorizedReduce, ReLUConvBN, SepConv};
pub use bn::BatchNorm;
pub use conv::{conv2d, depthwise_conv2d, relu_depthwise_conv2d};
pub use init::{drop_path, init_pytorch_default};
pub use kernels::pointwise::{relu_conv1x1, scale_leading};
pub use kernels::{avg_pool2d, max_pool2d, relu, subsample};
pub use primitive::{Op, Primitive};
pub use tape::fused;
