//! Training utilities: optimisers with PyTorch semantics, schedules, clipping, checkpoints.
