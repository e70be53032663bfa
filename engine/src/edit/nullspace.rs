//! AlphaEdit's objective (docs/MATH.md §11, eq. A1–A4): the update is confined to the null space
//! of the preserved keys, so their outputs cannot move, and the memorization is least squares.
//!
//! P = Û Ûᵀ projects onto the eigenvectors of C0 (the mean second moment, as the other objectives
//! use) whose eigenvalues are below a threshold. The authors solve, in pmedit's `[n, d]` layout,
//!
//!   Δ = (P (K_E K_Eᵀ + K_p K_pᵀ) + μ I)⁻¹ P K_E R          (A2)
//!
//! with K_p the keys of batches applied earlier to the same model. That n × n matrix is not
//! symmetric, but every solution lies in range(P) (μΔ = P(K_E R − A Δ)), so Δ = Û Y with
//!
//!   (Ûᵀ A Û + μ I) Y = Ûᵀ K_E R,   A = K_E K_Eᵀ + K_p K_pᵀ   (A3)
//!
//! an r × r symmetric positive definite system (r = dim of the null space): one Cholesky
//! factorisation on the device instead of a general n × n solve, and the same Δ.

use burn::prelude::*;

use crate::error::{EngineError, Result};
use crate::linalg::eigen::eigenspace_below;
use crate::linalg::{CholeskyFactor, DEFAULT_BLOCK, LinalgError, matmul};
use crate::readback::read_vec;

use super::objective::ensure_finite;

/// The null-space projector of one layer's C0, computed once per layer and threshold.
#[derive(Debug, Clone)]
pub struct NullSpace {
    /// Û `[n, r]`: orthonormal eigenvectors of C0 with eigenvalue below the threshold; `None` when
    /// every eigenvector is kept (P = I).
    basis: Option<Tensor<2>>,
    /// n.
    n: usize,
    /// r.
    rank: usize,
    /// The threshold (absolute, on the eigenvalues of the mean C0).
    pub threshold: f64,
    /// Smallest and largest eigenvalue of C0.
    pub spectrum: (f64, f64),
}

impl NullSpace {
    /// Decomposes `c0` (`[n, n]`, the mean second moment of the keys) and keeps the eigenvectors
    /// with eigenvalue below `threshold` (`f64::INFINITY` keeps all: P = I).
    pub async fn new(c0: Tensor<2>, threshold: f64) -> Result<Self> {
        if threshold.is_nan() || threshold <= 0.0 {
            return Err(EngineError::Input(format!(
                "the null-space threshold must be positive, got {threshold}"
            )));
        }
        let [n, n2] = c0.dims();
        if n != n2 {
            return Err(EngineError::Input(format!("C0 is {n}×{n2}, not square")));
        }
        let device = c0.device();
        let host = read_vec::<f64, 2, Float>(c0).await?;
        let space = eigenspace_below(&host, n, threshold).map_err(|e| match e {
            LinalgError::NonFinite => EngineError::Numerical("C0 holds non-finite values".into()),
            other => EngineError::Numerical(other.to_string()),
        })?;
        let spectrum = (
            space.values.first().copied().unwrap_or(0.0),
            space.values.last().copied().unwrap_or(0.0),
        );
        let basis = (space.rank < n).then(|| {
            let data: Vec<f32> = space.basis.iter().map(|&x| x as f32).collect();
            Tensor::<2>::from_data(TensorData::new(data, [n, space.rank]), &device)
        });
        Ok(Self {
            basis,
            n,
            rank: space.rank,
            threshold,
            spectrum,
        })
    }

    /// Dimension of the null space (r).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Key dimension (n).
    pub fn n(&self) -> usize {
        self.n
    }

    /// P = Û Ûᵀ `[n, n]` (for reports and tests; the solve never forms it).
    pub fn projector(&self, device: &Device) -> Tensor<2> {
        match &self.basis {
            Some(u) => matmul(u.clone(), u.clone().transpose()),
            None => Tensor::eye(self.n, device),
        }
    }

    /// Ûᵀ x (x itself when P = I).
    fn reduce(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.basis {
            Some(u) => matmul(u.clone().transpose(), x),
            None => x,
        }
    }

    /// Δ `[n, d]` of eq. A2/A3 for keys `k: [n, E]` and residuals `r: [E, d]`, with the keys of
    /// earlier batches as `preserved` = K_p K_pᵀ `[n, n]` (or none) and the ridge `l2` (μ).
    pub async fn solve(&self, k: Tensor<2>, r: Tensor<2>, preserved: Option<&Tensor<2>>, l2: f64) -> Result<Tensor<2>> {
        let [n, e] = k.dims();
        let [e2, _] = r.dims();
        if e != e2 {
            return Err(EngineError::Input(format!("{e} keys but {e2} residuals")));
        }
        if n != self.n {
            return Err(EngineError::Input(format!(
                "keys have dimension {n} but C0 is {0}×{0}",
                self.n
            )));
        }
        if !(l2 > 0.0 && l2.is_finite()) {
            return Err(EngineError::Input(format!(
                "AlphaEdit's L2 must be positive and finite, got {l2}"
            )));
        }
        if self.rank == 0 {
            return Err(EngineError::Numerical(format!(
                "the null space of C0 is empty: every eigenvalue is ≥ the threshold {:e} (they span {:.3e} … {:.3e}); \
                 raise --nullspace-threshold",
                self.threshold, self.spectrum.0, self.spectrum.1
            )));
        }
        let device = k.device();
        let kr = self.reduce(k); // Ûᵀ K_E, [r, E]
        let mut a = matmul(kr.clone(), kr.clone().transpose()); // Ûᵀ K_E K_Eᵀ Û
        if let Some(cp) = preserved {
            if cp.dims() != [n, n] {
                return Err(EngineError::Input(format!(
                    "the preserved keys' moment is {:?}, expected [{n}, {n}]",
                    cp.dims()
                )));
            }
            a = a + self.reduce(self.reduce(cp.clone()).transpose()); // Ûᵀ K_p K_pᵀ Û (symmetric)
        }
        let dtype = a.dtype();
        let a = a + Tensor::<2>::eye(self.rank, &device).cast(dtype) * l2;
        let factor = CholeskyFactor::new(a, DEFAULT_BLOCK).await.map_err(|err| {
            EngineError::Numerical(format!(
                "AlphaEdit's {0}×{0} system ÛᵀAÛ + L2·I is not positive definite ({err}); raise --l2",
                self.rank
            ))
        })?;
        let y = factor.solve(matmul(kr, r)); // [r, d]
        let delta = match &self.basis {
            Some(u) => matmul(u.clone(), y),
            None => y,
        };
        ensure_finite(&delta, "Δ").await?;
        Ok(delta)
    }
}
