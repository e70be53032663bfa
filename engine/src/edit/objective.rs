//! The preservation–memorization objective and its closed-form solutions (docs/MATH.md §2, eq. 1–9, 19).
//!
//! Layout: burn stores `c_proj.weight` as `[in, out]` = Wᵀ, so every Δ here is returned as
//! `[n, d]` (n = key dimension, d = model width) and is *added* to `c_proj.weight`. Keys are
//! the columns of `K: [n, E]`; residuals `R = V_E − W0 K_E` are rows, `R: [E, d]`.
//!
//! All three solutions share one shape. With `C = λ·C0` factored once (Cholesky, cached per
//! layer), `Q = C⁻¹K` and `G = KᵀQ` (E × E):
//! - EMMET (eq. 9/19): `Δᵀ = Q (G + αI)⁻¹ R` — equality constraints, α only when E > 1 (§5.1);
//! - ROME (eq. 3): the same with E = 1 and α = 0, i.e. `Δᵀ = q rᵀ / (kᵀq)`;
//! - MEMIT (eq. 5): `Δᵀ = Q (I + G)⁻¹ R`, since by Woodbury
//!   `(λC0 + KKᵀ)⁻¹K = C⁻¹K (I + KᵀC⁻¹K)⁻¹`.
//!
//! So every batch costs two triangular solves with the cached factor, one E × E SPD solve and
//! matmuls, all on the device.

use burn::prelude::*;

use crate::error::{EngineError, Result};
use crate::linalg::{CholeskyFactor, DEFAULT_BLOCK, LinalgError};

/// The preservation term of one layer: `C = λ·C0`, factored once.
#[derive(Debug, Clone)]
pub struct Preservation {
    /// Cholesky factor of `λ·C0`.
    pub factor: CholeskyFactor,
    /// λ (`mom2_update_weight`).
    pub lambda: f64,
}

impl Preservation {
    /// Factors `λ·c0` (`c0` is `[n, n]`, the uncentred second moment of the keys).
    pub async fn new(c0: Tensor<2>, lambda: f64) -> Result<Self> {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(EngineError::Input(format!(
                "λ must be positive and finite, got {lambda}"
            )));
        }
        let factor = CholeskyFactor::new(c0 * lambda, DEFAULT_BLOCK)
            .await
            .map_err(|e| match e {
                LinalgError::NotPositiveDefinite { index, pivot } => EngineError::Numerical(format!(
                    "C0 is not positive definite (pivot {index} = {pivot:e}): the statistics saw too few tokens \
                 for this key dimension; collect more (--max-tokens) or add a ridge to C0"
                )),
                other => EngineError::Numerical(other.to_string()),
            })?;
        Ok(Self { factor, lambda })
    }

    /// The same C0 weighted by another λ, from this factor (no new factorisation).
    pub fn with_lambda(&self, lambda: f64) -> Result<Self> {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(EngineError::Input(format!(
                "λ must be positive and finite, got {lambda}"
            )));
        }
        Ok(Self {
            factor: self.factor.scaled(lambda / self.lambda),
            lambda,
        })
    }

    /// `C⁻¹ K` for keys `k: [n, E]`.
    pub fn solve(&self, k: Tensor<2>) -> Tensor<2> {
        self.factor.solve(k)
    }
}

/// Which closed form to use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Eq. 3, one edit at a time (batches are applied one request after another).
    Rome,
    /// Eq. 5: least-squares memorization, weighted against preservation by λ.
    Memit,
    /// Eq. 9: exact memorization under equality constraints, D + αI regularised when E > 1.
    Emmet {
        /// α of §5.1 (0.1 in the paper).
        alpha: f64,
    },
}

/// Factors `λ·c0` and solves one system with it: the factorisation and the solve together, as a
/// one-off (benchmarks); editing goes through [`Editor`](super::Editor), which factors each
/// layer's C0 once.
pub async fn solve_with_c0(
    c0: Tensor<2>,
    lambda: f64,
    objective: Objective,
    k: Tensor<2>,
    r: Tensor<2>,
) -> Result<Tensor<2>> {
    solve_delta(&Preservation::new(c0, lambda).await?, objective, k, r).await
}

/// Δᵀ `[n, d]` for keys `k: [n, E]` and residuals `r: [E, d]` (eq. 3, 5, 9).
pub async fn solve_delta(pres: &Preservation, objective: Objective, k: Tensor<2>, r: Tensor<2>) -> Result<Tensor<2>> {
    let (q, y) = solve_factors(pres, objective, k, r).await?;
    let delta = crate::linalg::matmul(q, y);
    ensure_finite(&delta, "Δ").await?;
    Ok(delta)
}

/// [`solve_delta`]'s Δ = Q Y in its two factors, Q = C⁻¹K `[n, E]` and Y = (KᵀC⁻¹K + μI)⁻¹R
/// `[E, d]`: Δ has rank ≤ E, and quantities of Δ (the teaching view's errors) cost n²E through
/// them instead of n²d.
pub async fn solve_factors(
    pres: &Preservation,
    objective: Objective,
    k: Tensor<2>,
    r: Tensor<2>,
) -> Result<(Tensor<2>, Tensor<2>)> {
    let [n, e] = k.dims();
    let [e2, _] = r.dims();
    if e != e2 {
        return Err(EngineError::Input(format!("{e} keys but {e2} residuals")));
    }
    if n != pres.factor.n() {
        return Err(EngineError::Input(format!(
            "keys have dimension {n} but C0 is {0}×{0}",
            pres.factor.n()
        )));
    }
    let q = pres.solve(k.clone()); // C⁻¹K, [n, E]
    let g = crate::linalg::matmul(k.transpose(), q.clone()); // KᵀC⁻¹K, [E, E]
    let (mu, knob) = match objective {
        Objective::Rome => {
            if e != 1 {
                return Err(EngineError::Input(format!(
                    "ROME's eq. 3 takes one key at a time, got {e}"
                )));
            }
            (0.0, "λ")
        }
        Objective::Memit => (1.0, "λ"),
        Objective::Emmet { alpha } => (if e > 1 { alpha } else { 0.0 }, "α"),
    };
    let device = g.device();
    let d = g + Tensor::<2>::eye(e, &device).cast(q.dtype()) * mu;
    let dtype = d.dtype();
    let system = if mu > 0.0 { "KᵀC⁻¹K + μI" } else { "KᵀC⁻¹K" };
    let factor = CholeskyFactor::new(d, DEFAULT_BLOCK).await.map_err(|err| {
        EngineError::Numerical(format!(
            "the {e}×{e} system {system} is singular ({err}): keys of the batch are (nearly) linearly \
             dependent; raise {knob} or drop duplicate subjects"
        ))
    })?;
    // Refuse a system whose conditioning leaves no accurate digits in this precision
    // (relative error grows like cond · ε): (max Lᵢᵢ / min Lᵢᵢ)² bounds cond from below.
    let limit = if dtype == burn::tensor::DType::F64 { 1e13 } else { 1e6 };
    let cond = factor.condition_estimate();
    if cond > limit {
        return Err(EngineError::Numerical(format!(
            "the {e}×{e} system {system} has condition number ≥ {cond:.1e} (limit {limit:.0e} in {dtype:?}): \
             keys of the batch are nearly dependent; raise {knob}"
        )));
    }
    let y = factor.solve(r);
    Ok((q, y))
}

/// Fails when `t` holds NaN or infinity, naming `what`.
pub async fn ensure_finite<const D: usize>(t: &Tensor<D>, what: &str) -> Result<()> {
    let bad = crate::readback::any(t.clone().is_finite().bool_not()).await?;
    if bad {
        return Err(EngineError::Numerical(format!(
            "{what} holds non-finite values; nothing was written"
        )));
    }
    Ok(())
}
