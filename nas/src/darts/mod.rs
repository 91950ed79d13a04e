//! DARTS: search supernet, evaluation network and search method.
