//! Device Cholesky and SPD solves against the f64 host reference.

mod common;

use burn::tensor::DType;
use common::{download, on_all_devices, randn, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::linalg::host::{self, Mat};
use pmedit_engine::linalg::{CholeskyFactor, LinalgError};

/// Both factorisation paths of `a` on `device`: `new` (in place in host memory on the CPU
/// backend, tensor ops elsewhere) and the tensor-op path every backend can run.
fn factors(a: &Mat, device: &burn::prelude::Device, dtype: DType, block: usize) -> Vec<(&'static str, CholeskyFactor)> {
    let t = upload(a, device, dtype);
    vec![
        ("new", block_on(CholeskyFactor::new(t.clone(), block)).unwrap()),
        (
            "tensor ops",
            block_on(CholeskyFactor::with_tensor_ops(t, block)).unwrap(),
        ),
    ]
}

/// A well-conditioned SPD matrix `X Xᵀ / m + 0.1 I`.
fn spd(n: usize, seed: u64) -> Mat {
    let m = 2 * n;
    let x = Mat::new(n, m, randn(seed, n * m));
    let mut a = x.matmul(&x.t());
    for v in &mut a.data {
        *v /= m as f64;
    }
    a.add_diag(0.1)
}

/// The host routines against their definitions: `L Lᵀ = A` with `L` lower triangular, and
/// `L · L⁻¹ = I` (sizes around the 8-wide partial sums of the dot product).
#[test]
fn host_factor_and_inverse_satisfy_their_definitions() {
    for n in [1, 7, 8, 9, 37] {
        let a = spd(n, 10 + n as u64);
        let l = host::cholesky(&a).unwrap();
        assert!(
            (0..n).all(|i| (i + 1..n).all(|j| l[(i, j)] == 0.0)),
            "n = {n}: not lower"
        );
        assert!(rel_err(&l.matmul(&l.t()), &a) < 1e-14, "n = {n}: L Lᵀ ≠ A");
        let inv = host::invert_lower(&l);
        assert!(
            (0..n).all(|i| (i + 1..n).all(|j| inv[(i, j)] == 0.0)),
            "n = {n}: inverse not lower"
        );
        assert!(rel_err(&l.matmul(&inv), &Mat::eye(n)) < 1e-13, "n = {n}: L L⁻¹ ≠ I");
    }
}

#[test]
fn blocked_factor_matches_host_factor() {
    on_all_devices(|name, device| {
        // 40 with blocks of 16: two full blocks and a ragged one.
        let a = spd(40, 1);
        let want = host::cholesky(&a).unwrap();
        for dtype in [DType::F32, DType::F64] {
            if !device.supports_dtype(dtype) {
                continue;
            }
            for (path, f) in factors(&a, device, dtype, 16) {
                let got = download(f.l());
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                let err = rel_err(&got, &want);
                assert!(err < tol, "{name} {path} {dtype:?}: {err}");
                let diag: Vec<f64> = (0..40).map(|i| want[(i, i)]).collect();
                let (max, min) = (
                    diag.iter().cloned().fold(0.0, f64::max),
                    diag.iter().cloned().fold(f64::INFINITY, f64::min),
                );
                let (got_max, got_min) = f.diag_range;
                assert!(
                    (got_max / max - 1.0).abs() < 1e-5 && (got_min / min - 1.0).abs() < 1e-5,
                    "{name} {path}: diagonal range {:?} vs ({max}, {min})",
                    f.diag_range
                );
            }
        }
    });
}

#[test]
fn solves_match_host_solve() {
    on_all_devices(|name, device| {
        let a = spd(37, 2);
        let b = Mat::new(37, 5, randn(3, 37 * 5));
        let want = host::spd_solve(&a, &b).unwrap();
        for (path, f) in factors(&a, device, DType::F32, 8) {
            let got = download(f.solve(upload(&b, device, DType::F32)));
            assert!(rel_err(&got, &want) < 1e-4, "{name} {path}: {}", rel_err(&got, &want));
            // L (Lᵀ X) = B, one triangle at a time.
            let y = download(f.solve_lower(upload(&b, device, DType::F32)));
            let l = download(f.l());
            assert!(rel_err(&l.matmul(&y), &b) < 1e-5, "{name} {path}");
            let z = download(f.solve_upper(upload(&y, device, DType::F32)));
            assert!(rel_err(&z, &want) < 1e-4, "{name} {path}: Lᵀ X = Y");
        }
    });
}

/// On the CPU backend the factor is computed in place in host memory; elsewhere with tensor ops.
#[test]
fn cpu_backend_factors_in_host_memory() {
    on_all_devices(|name, device| {
        let f = block_on(CholeskyFactor::new(upload(&spd(9, 7), device, DType::F32), 4)).unwrap();
        assert_eq!(f.on_host(), name == "cpu", "{name}");
    });
}

/// A factor scaled by `s` solves `s·A X = B` like a fresh factorisation of `s·A` (the λ sweep of
/// the teaching view factors C0 once).
#[test]
fn scaled_factor_solves_the_scaled_system() {
    on_all_devices(|name, device| {
        let a = spd(37, 5);
        let b = Mat::new(37, 3, randn(6, 37 * 3));
        for (path, f) in factors(&a, device, DType::F32, 8) {
            for s in [1e-2, 3.0, 1e4] {
                let scaled = Mat::new(37, 37, a.data.iter().map(|x| x * s).collect());
                let want = host::spd_solve(&scaled, &b).unwrap();
                let g = f.scaled(s);
                let got = download(g.solve(upload(&b, device, DType::F32)));
                assert!(
                    rel_err(&got, &want) < 1e-4,
                    "{name} {path} s = {s}: {}",
                    rel_err(&got, &want)
                );
                // √s·L itself, not only its solves.
                let l = download(f.l());
                let want_l = Mat::new(37, 37, l.data.iter().map(|x| x * s.sqrt()).collect());
                assert!(rel_err(&download(g.l()), &want_l) < 1e-6, "{name} {path} s = {s}: √s·L");
                let direct = block_on(CholeskyFactor::new(upload(&scaled, device, DType::F32), 8)).unwrap();
                let ratio = g.condition_estimate() / direct.condition_estimate();
                assert!(
                    (ratio - 1.0).abs() < 1e-4,
                    "{name} {path} s = {s}: condition estimates differ ({ratio})"
                );
            }
        }
    });
}

#[test]
fn indefinite_matrix_is_reported() {
    on_all_devices(|name, device| {
        let mut a = spd(12, 4);
        a[(7, 7)] = -5.0;
        let t = upload(&a, device, DType::F32);
        for err in [
            block_on(CholeskyFactor::new(t.clone(), 4)).unwrap_err(),
            block_on(CholeskyFactor::with_tensor_ops(t.clone(), 4)).unwrap_err(),
        ] {
            assert!(
                matches!(err, LinalgError::NotPositiveDefinite { index: 7, .. }),
                "{name}: {err}"
            );
        }
        // A NaN is refused, not factored.
        let mut nan = spd(12, 4);
        nan[(9, 2)] = f64::NAN;
        nan[(2, 9)] = f64::NAN;
        let err = block_on(CholeskyFactor::new(upload(&nan, device, DType::F32), 4)).unwrap_err();
        assert!(matches!(err, LinalgError::NonFinite), "{name}: {err}");
    });
}

#[test]
fn condition_estimate_grows_with_conditioning() {
    let device = burn::prelude::Device::flex();
    let good = block_on(CholeskyFactor::new(upload(&Mat::eye(8), &device, DType::F64), 4)).unwrap();
    assert!((good.condition_estimate() - 1.0).abs() < 1e-12);
    let mut a = Mat::eye(8);
    a[(3, 3)] = 1e-8;
    let bad = block_on(CholeskyFactor::new(upload(&a, &device, DType::F64), 4)).unwrap();
    assert!(bad.condition_estimate() > 1e7);
}
