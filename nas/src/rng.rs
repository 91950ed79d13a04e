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
