//! Property tests of the solvers (proptest): for random SPD C0, keys and residuals, EMMET with
//! α = 0 satisfies its equality constraint, MEMIT satisfies its optimality condition, and no
//! α > 0 ever yields a non-finite Δ — even for a batch with repeated keys. f64 on the CPU backend.

mod common;

use burn::prelude::Device;
use burn::tensor::DType;
use common::{download, randn, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::{Objective, Preservation, solve_delta};
use pmedit_engine::linalg::host::Mat;
use proptest::prelude::*;

/// C0 = K0 K0ᵀ / N + ridge·I, keys K [n, E], residuals R [E, d].
fn problem(n: usize, d: usize, e: usize, seed: u64, ridge: f64) -> (Mat, Mat, Mat) {
    let count = 2 * n;
    let k0 = Mat::new(n, count, randn(seed, n * count));
    let mut c0 = k0.matmul(&k0.t());
    for v in &mut c0.data {
        *v /= count as f64;
    }
    let c0 = c0.add_diag(ridge);
    (
        c0,
        Mat::new(n, e, randn(seed + 1, n * e)),
        Mat::new(e, d, randn(seed + 2, e * d)),
    )
}

fn delta(c0: &Mat, k: &Mat, r: &Mat, lambda: f64, o: Objective) -> pmedit_engine::Result<Mat> {
    let device = Device::flex();
    let pres = block_on(Preservation::new(upload(c0, &device, DType::F64), lambda))?;
    block_on(solve_delta(
        &pres,
        o,
        upload(k, &device, DType::F64),
        upload(r, &device, DType::F64),
    ))
    .map(download)
}

fn sub(a: &Mat, b: &Mat) -> Mat {
    Mat::new(a.rows, a.cols, a.data.iter().zip(&b.data).map(|(x, y)| x - y).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// EMMET, α = 0: the edited layer maps every key to its value, Kᵀ Δᵀ = R.
    #[test]
    fn emmet_meets_its_constraints(n in 6usize..24, d in 2usize..8, e in 1usize..5, seed in 0u64..10_000,
                                   lambda in 0.1f64..1e3) {
        prop_assume!(e < n);
        let (c0, k, r) = problem(n, d, e, seed, 1e-2);
        let dt = delta(&c0, &k, &r, lambda, Objective::Emmet { alpha: 0.0 }).unwrap();
        let err = sub(&k.t().matmul(&dt), &r).norm() / r.norm();
        prop_assert!(err < 1e-6, "‖KᵀΔ − R‖/‖R‖ = {err}");
    }

    /// MEMIT: Δ minimises λ‖ΔᵀK0‖² + ‖KᵀΔ − R‖², so (λC0 + KKᵀ) Δ = K R.
    #[test]
    fn memit_is_optimal(n in 6usize..24, d in 2usize..8, e in 1usize..12, seed in 0u64..10_000,
                        lambda in 0.1f64..1e3) {
        let (c0, k, r) = problem(n, d, e, seed, 1e-2);
        let dt = delta(&c0, &k, &r, lambda, Objective::Memit).unwrap();
        let mut a = c0.clone();
        for v in &mut a.data {
            *v *= lambda;
        }
        let kk = k.matmul(&k.t());
        let a = Mat::new(n, n, a.data.iter().zip(&kk.data).map(|(x, y)| x + y).collect());
        let rhs = k.matmul(&r);
        let err = sub(&a.matmul(&dt), &rhs).norm() / rhs.norm();
        prop_assert!(err < 1e-8, "optimality residual {err}");
    }

    /// Any α > 0 gives a finite Δ or a clear refusal — never NaN — even when the batch repeats a
    /// key (a subject edited twice), which makes KᵀC⁻¹K singular.
    #[test]
    fn emmet_never_returns_nan(n in 6usize..16, d in 2usize..6, e in 2usize..6, seed in 0u64..10_000,
                               alpha in 1e-6f64..10.0) {
        let (c0, k, r) = problem(n, d, e, seed, 1e-2);
        let mut dup = k.clone();
        for row in 0..n {
            dup.data[row * e + 1] = dup.data[row * e];
        }
        match delta(&c0, &dup, &r, 1.0, Objective::Emmet { alpha }) {
            Ok(dt) => prop_assert!(dt.data.iter().all(|x| x.is_finite())),
            Err(err) => prop_assert!(err.to_string().contains("raise α"), "{err}"),
        }
    }
}
