//! Data sets: IDX (MNIST) and CIFAR-10 binary readers, splits, augmentation, batching.
