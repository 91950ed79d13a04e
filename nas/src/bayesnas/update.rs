//! The closed-form re-weighting step of BayesNAS (spec §4.3, §4.6): from the
//! trained switches and the diagonal Hessian, the Laplace posterior variance
//! C, the group-lasso weights ω and the prior variances γ of every switch,
//! with the hierarchical coupling γ_child ← (γ_child⁻¹ + γ_edge⁻¹)⁻¹.
//!
//! Intended method, not the reference's defects (spec §9): ω uses each
//! cell's own γ_c (not a leaked loop index), and the first round starts from
//! γ = ω = 1 (a plain group lasso) instead of Uniform(0,1) draws.

use super::supernet::{EDGES, NUM_SWITCHES};

/// Smallest ω used as a divisor: ω = 0 means the loss has no curvature in
/// that switch group (no evidence either way), which leaves γ very large
/// (kept) rather than infinite.
const OMEGA_FLOOR: f64 = 1e-12;

/// γ, ω, H, C and s of every switch of one cell type, each a flat
/// row-major `[cells, 8 edges, 8 switches]` array. γ and ω are the same for
/// every cell of the type (one group per edge position and switch type).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwitchStats {
    pub cells: usize,
    pub gamma: Vec<f32>,
    pub omega: Vec<f32>,
    /// Diagonal Hessian of the summed NLL of the last batch (before the
    /// division by λ).
    pub hessian: Vec<f32>,
    pub cov: Vec<f32>,
    pub switch: Vec<f32>,
}

pub(crate) fn at(c: usize, e: usize, t: usize) -> usize {
    (c * EDGES + e) * NUM_SWITCHES + t
}

impl SwitchStats {
    /// Before the first update: γ = ω = 1, H = 0, C = γ, s = 1.
    pub fn initial(cells: usize) -> Self {
        let n = cells * EDGES * NUM_SWITCHES;
        Self { cells, gamma: vec![1.0; n], omega: vec![1.0; n], hessian: vec![0.0; n], cov: vec![1.0; n], switch: vec![1.0; n] }
    }

    /// The shared γ of (edge, switch) (cell 0's copy).
    pub fn gamma_of(&self, e: usize, t: usize) -> f32 {
        self.gamma[at(0, e, t)]
    }

    /// The shared ω of (edge, switch).
    pub fn omega_of(&self, e: usize, t: usize) -> f32 {
        self.omega[at(0, e, t)]
    }

    /// One update from the switch values `s` and the Hessian diagonal `h`
    /// (both `[cells, 8, 8]`, h ≥ 0), with λ_origin for `switch_all` and
    /// λ_child for the op switches.
    pub fn update(&mut self, s: &[f32], h: &[f32], lambda_origin: f64, lambda_child: f64) {
        let n = self.cells;
        for e in 0..EDGES {
            let mut gamma_edge = 0f64;
            // switch_all (t = 0) first: the op switches couple to its γ
            for t in 0..NUM_SWITCHES {
                let lambda = if t == 0 { lambda_origin } else { lambda_child };
                let mut omega_sq = 0f64;
                let mut s_sq = 0f64;
                for c in 0..n {
                    let i = at(c, e, t);
                    let g = self.gamma[i] as f64;
                    let hl = (h[i].max(0.0) as f64) / lambda;
                    // C = (1/γ + H/λ)⁻¹ ; |−C/γ² + 1/γ| = (H/λ) / (1 + γH/λ), cancellation-free
                    self.cov[i] = if g > 0.0 { (g / (1.0 + g * hl)) as f32 } else { 0.0 };
                    omega_sq += if g.is_finite() { hl / (1.0 + g * hl) } else { 0.0 };
                    s_sq += (s[i] as f64).powi(2);
                }
                let omega = omega_sq.sqrt();
                let gamma_raw = s_sq.sqrt() / omega.max(OMEGA_FLOOR);
                let gamma = if t == 0 {
                    gamma_edge = gamma_raw;
                    gamma_raw
                } else if gamma_raw + gamma_edge > 0.0 {
                    gamma_raw * gamma_edge / (gamma_raw + gamma_edge)
                } else {
                    0.0
                };
                for c in 0..n {
                    let i = at(c, e, t);
                    self.gamma[i] = gamma as f32;
                    self.omega[i] = omega as f32;
                    self.hessian[i] = h[i];
                    self.switch[i] = s[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_follows_the_closed_form() {
        let mut st = SwitchStats::initial(2);
        let n = 2 * EDGES * NUM_SWITCHES;
        let mut s = vec![1.0f32; n];
        let mut h = vec![1.0f32; n];
        // edge 3: switch_all at 0.5 in both cells, op switch 2 nearly off
        for c in 0..2 {
            s[at(c, 3, 0)] = 0.5;
            s[at(c, 3, 2)] = 1e-4;
            h[at(c, 3, 2)] = 4.0;
        }
        st.update(&s, &h, 0.5, 2.0);
        // γ=1, H/λ=2: C = 1/3, ω = sqrt(2·2/3), γ_edge = |(0.5,0.5)| / ω
        let omega = (2.0f64 * 2.0 / 3.0).sqrt();
        let g_edge = (0.5f64.powi(2) * 2.0).sqrt() / omega;
        assert!((st.cov[at(1, 3, 0)] as f64 - 1.0 / 3.0).abs() < 1e-6);
        assert!((st.omega_of(3, 0) as f64 - omega).abs() < 1e-6);
        assert!((st.gamma_of(3, 0) as f64 - g_edge).abs() < 1e-6);
        // child: H/λ = 2 again; γ_raw tiny, coupled γ below both
        let raw = (2.0f64 * 1e-8).sqrt() / omega;
        let want = raw * g_edge / (raw + g_edge);
        assert!((st.gamma_of(3, 2) as f64 - want).abs() < 1e-9);
        assert!(st.gamma_of(3, 2) < st.gamma_of(3, 1));
        // every child's γ is at most its edge's
        for e in 0..EDGES {
            for t in 1..NUM_SWITCHES {
                assert!(st.gamma_of(e, t) <= st.gamma_of(e, 0) + 1e-7);
            }
        }
    }
}
