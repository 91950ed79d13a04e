//! SNAS's temperature schedule (spec §3.3): linear decay from `initial` to
//! `minimum` over a fixed horizon (the code hard-codes 150 epochs, whatever
//! the number of search epochs), clamped at the minimum.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Temperature {
    pub initial: f64,
    pub minimum: f64,
    /// Epochs over which λ falls from `initial` to `minimum` (150 in the code).
    pub horizon: usize,
    /// true (the code): epoch e uses λ(e+1), because the scheduler steps
    /// before the epoch, so the 150th epoch runs at the minimum.
    pub step_at_start: bool,
}

impl Default for Temperature {
    /// `--temp 1 --temp_min 0.03 --temp_annealing`, horizon 150.
    fn default() -> Self {
        Self {
            initial: 1.0,
            minimum: 0.03,
            horizon: 150,
            step_at_start: true,
        }
    }
}

impl Temperature {
    /// λ(t) = (1 − t/horizon)·(initial − minimum) + minimum, at least `minimum`.
    pub fn at_step(&self, t: usize) -> f64 {
        if self.horizon == 0 {
            return self.minimum;
        }
        let frac = 1.0 - t as f64 / self.horizon as f64;
        (frac * (self.initial - self.minimum) + self.minimum).max(self.minimum)
    }

    /// The temperature that (0-based) epoch `epoch` samples with.
    pub fn for_epoch(&self, epoch: usize) -> f64 {
        self.at_step(if self.step_at_start { epoch + 1 } else { epoch })
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.minimum > 0.0 && self.initial >= self.minimum && self.initial.is_finite()) {
            anyhow::bail!(
                "snas: the temperature needs 0 < temp_min <= temp (got temp {}, temp_min {})",
                self.initial,
                self.minimum
            );
        }
        Ok(())
    }
}
