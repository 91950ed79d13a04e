//! All randomness in nasflow comes from one seeded generator family: candle's
//! CPU generator cannot be seeded, so we never use it.

use rand::SeedableRng;

/// The generator used everywhere (portable and stable across rand versions).
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator for one purpose (`stream`) of a seeded run, so that e.g. data
/// order and weight initialisation do not perturb each other.
pub fn rng_for(seed: u64, stream: u64) -> Rng {
    let mut r = Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A generator for one purpose (< 8) of one epoch of a seeded run: a resumed
/// run draws exactly what an uninterrupted one would. Streams below 1000 are
/// left for whole-run purposes (weight init, ...).
pub fn epoch_rng(seed: u64, epoch: usize, purpose: u64) -> Rng {
    debug_assert!(purpose < 8);
    rng_for(seed, 1000 + 8 * epoch as u64 + purpose)
}
