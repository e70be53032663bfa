//! The symmetric eigendecomposition on the host in f64 (AlphaEdit's projector, docs/MATH.md §11).
//!
//! burn has no eigensolver, and none of its backends would give the accuracy the projector needs
//! in f32 (eigenvalues of C0 span many orders of magnitude and the split at the threshold must
//! not depend on rounding). So C0 is read back once per layer, decomposed with faer (blocked
//! tridiagonalisation and divide and conquer, on every core natively, single-threaded on wasm32)
//! and only the basis that is needed goes back to the device.

use super::LinalgError;

/// Eigenvalues (ascending) and the eigenvectors of the selected ones, of a symmetric matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Eigenspace {
    /// Size of the matrix.
    pub n: usize,
    /// Every eigenvalue, ascending.
    pub values: Vec<f64>,
    /// The selected eigenvectors as columns, row-major `[n, k]`.
    pub basis: Vec<f64>,
    /// How many were selected (`k`).
    pub rank: usize,
}

/// Decomposes the symmetric `a` (row-major `[n, n]`; only its lower triangle is read) and keeps
/// the eigenvectors whose eigenvalue is below `threshold`.
pub fn eigenspace_below(a: &[f64], n: usize, threshold: f64) -> Result<Eigenspace, LinalgError> {
    if a.len() != n * n {
        return Err(LinalgError::Shape(format!(
            "a {n}×{n} matrix needs {} values, got {}",
            n * n,
            a.len()
        )));
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(LinalgError::NonFinite);
    }
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let eig = m
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|_| LinalgError::NoConvergence("the symmetric eigendecomposition"))?;
    let s = eig.S().column_vector();
    let u = eig.U();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| s[i].total_cmp(&s[j]));
    let values: Vec<f64> = order.iter().map(|&i| s[i]).collect();
    let kept: Vec<usize> = order.iter().copied().filter(|&i| s[i] < threshold).collect();
    let rank = kept.len();
    let mut basis = vec![0.0; n * rank];
    for (c, &j) in kept.iter().enumerate() {
        for i in 0..n {
            basis[i * rank + c] = u[(i, j)];
        }
    }
    Ok(Eigenspace { n, values, basis, rank })
}

#[cfg(test)]
mod tests {
    use super::eigenspace_below;

    /// A = Q diag(1, 2, 5, 10) Qᵀ with a Householder Q: the eigenvalues come back ascending and the
    /// basis below 3 spans Q's first two columns.
    #[test]
    fn recovers_a_known_spectrum() {
        let n = 4;
        let v = [1.0, -2.0, 0.5, 3.0];
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv;
        let lam = [5.0, 1.0, 10.0, 2.0];
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| q(i, k) * lam[k] * q(j, k)).sum();
            }
        }
        let e = eigenspace_below(&a, n, 3.0).unwrap();
        for (got, want) in e.values.iter().zip([1.0, 2.0, 5.0, 10.0]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(e.rank, 2);
        // P = B Bᵀ equals the projector onto Q's columns 1 and 3 (eigenvalues 1 and 2).
        for i in 0..n {
            for j in 0..n {
                let p: f64 = (0..2).map(|c| e.basis[i * 2 + c] * e.basis[j * 2 + c]).sum();
                let want = q(i, 1) * q(j, 1) + q(i, 3) * q(j, 3);
                assert!((p - want).abs() < 1e-12, "P[{i},{j}] = {p} vs {want}");
            }
        }
        assert_eq!(eigenspace_below(&a, n, 0.5).unwrap().rank, 0);
        assert_eq!(eigenspace_below(&a, n, f64::INFINITY).unwrap().rank, 4);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(eigenspace_below(&[1.0, 2.0, 3.0], 2, 1.0).is_err());
        assert!(eigenspace_below(&[1.0, f64::NAN, f64::NAN, 1.0], 2, 1.0).is_err());
    }
}
