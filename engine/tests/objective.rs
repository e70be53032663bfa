//! The PM solutions (eq. 3, 5, 9) against their definitions, computed independently in f64 on
//! the host.

mod common;

use burn::tensor::DType;
use common::{download, on_all_devices, randn, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::{Objective, Preservation, solve_delta};
use pmedit_engine::linalg::host::{self, Mat};

/// C0 = K0 K0ᵀ / N from random keys, K, R for a problem with key dim n, width d, E edits.
fn problem(n: usize, d: usize, e: usize, seed: u64) -> (Mat, Mat, Mat) {
    let count = 4 * n;
    let k0 = Mat::new(n, count, randn(seed, n * count));
    let mut c0 = k0.matmul(&k0.t());
    for v in &mut c0.data {
        *v /= count as f64;
    }
    let k = Mat::new(n, e, randn(seed + 1, n * e));
    let r = Mat::new(e, d, randn(seed + 2, e * d));
    (c0, k, r)
}

fn scaled(m: &Mat, s: f64) -> Mat {
    Mat::new(m.rows, m.cols, m.data.iter().map(|v| v * s).collect())
}

/// MEMIT by its definition (eq. 5), transposed to `[n, d]`: (λC0 + KKᵀ)⁻¹ K R.
fn memit_reference(c0: &Mat, k: &Mat, r: &Mat, lambda: f64) -> Mat {
    let a = scaled(c0, lambda);
    let kk = k.matmul(&k.t());
    let a = Mat::new(
        a.rows,
        a.cols,
        a.data.iter().zip(&kk.data).map(|(x, y)| x + y).collect(),
    );
    host::spd_solve(&a, &k.matmul(r)).unwrap()
}

/// EMMET by its definition (eq. 9): C⁻¹K (KᵀC⁻¹K + αI)⁻¹ R.
fn emmet_reference(c0: &Mat, k: &Mat, r: &Mat, lambda: f64, alpha: f64) -> Mat {
    let q = host::spd_solve(&scaled(c0, lambda), k).unwrap();
    let g = k.t().matmul(&q).add_diag(alpha);
    q.matmul(&host::spd_solve(&g, r).unwrap())
}

fn device_delta(
    device: &burn::prelude::Device,
    dtype: DType,
    c0: &Mat,
    k: &Mat,
    r: &Mat,
    lambda: f64,
    o: Objective,
) -> Mat {
    let pres = block_on(Preservation::new(upload(c0, device, dtype), lambda)).unwrap();
    download(
        block_on(solve_delta(
            &pres,
            o,
            upload(k, device, dtype),
            upload(r, device, dtype),
        ))
        .unwrap(),
    )
}

#[test]
fn emmet_with_one_edit_is_rome() {
    on_all_devices(|name, device| {
        let (c0, k, r) = problem(24, 6, 1, 10);
        let rome = device_delta(device, DType::F32, &c0, &k, &r, 1.0, Objective::Rome);
        let emmet = device_delta(device, DType::F32, &c0, &k, &r, 1.0, Objective::Emmet { alpha: 0.1 });
        assert!(rel_err(&emmet, &rome) < 1e-6, "{name}");
        // Rank one: every row of Δᵀ is a multiple of r.
        let rr: f64 = r.data.iter().map(|v| v * v).sum();
        let coef = rome.matmul(&r.t());
        let rank1 = Mat::new(
            24,
            6,
            (0..24 * 6).map(|i| coef.data[i / 6] * r.data[i % 6] / rr).collect(),
        );
        assert!(rel_err(&rank1, &rome) < 1e-6, "{name}: ROME Δ is not rank one");
    });
}

#[test]
fn emmet_meets_its_equality_constraints() {
    on_all_devices(|name, device| {
        let (c0, k, r) = problem(32, 8, 6, 20);
        let delta = device_delta(device, DType::F32, &c0, &k, &r, 1.0, Objective::Emmet { alpha: 0.0 });
        // Ŵ k_i = v_i  ⇔  Kᵀ Δᵀ = R.
        let err = rel_err(&k.t().matmul(&delta), &r);
        assert!(err < 1e-4, "{name}: ‖KᵀΔ − R‖/‖R‖ = {err:e}");
        let want = emmet_reference(&c0, &k, &r, 1.0, 0.0);
        assert!(rel_err(&delta, &want) < 1e-4, "{name}");
    });
}

#[test]
fn memit_equals_its_definition() {
    on_all_devices(|name, device| {
        for lambda in [1.0, 100.0] {
            let (c0, k, r) = problem(32, 8, 12, 30);
            let got = device_delta(device, DType::F32, &c0, &k, &r, lambda, Objective::Memit);
            let want = memit_reference(&c0, &k, &r, lambda);
            assert!(
                rel_err(&got, &want) < 1e-4,
                "{name} λ={lambda}: {:e}",
                rel_err(&got, &want)
            );
        }
    });
}

#[test]
fn emmet_alpha_matches_definition() {
    on_all_devices(|name, device| {
        let (c0, k, r) = problem(32, 8, 12, 40);
        let got = device_delta(device, DType::F32, &c0, &k, &r, 10.0, Objective::Emmet { alpha: 0.1 });
        let want = emmet_reference(&c0, &k, &r, 10.0, 0.1);
        assert!(rel_err(&got, &want) < 1e-4, "{name}");
    });
}

#[test]
fn memit_update_vanishes_as_lambda_grows() {
    let device = burn::prelude::Device::flex();
    let (c0, k, r) = problem(16, 4, 3, 50);
    let small = device_delta(&device, DType::F64, &c0, &k, &r, 1.0, Objective::Memit).norm();
    let huge = device_delta(&device, DType::F64, &c0, &k, &r, 1e12, Objective::Memit).norm();
    assert!(huge < small * 1e-9, "{huge} vs {small}");
}

#[test]
fn duplicate_keys_without_alpha_are_refused() {
    let device = burn::prelude::Device::flex();
    let (c0, k, r) = problem(16, 4, 2, 60);
    let mut dup = k.clone();
    for i in 0..16 {
        dup[(i, 1)] = dup[(i, 0)];
    }
    let pres = block_on(Preservation::new(upload(&c0, &device, DType::F64), 1.0)).unwrap();
    let err = block_on(solve_delta(
        &pres,
        Objective::Emmet { alpha: 0.0 },
        upload(&dup, &device, DType::F64),
        upload(&r, &device, DType::F64),
    ));
    let err = err.expect_err("dependent keys must be refused");
    assert!(err.to_string().contains("raise α"), "{err}");
    // With α > 0 the same batch solves.
    let ok = block_on(solve_delta(
        &pres,
        Objective::Emmet { alpha: 0.1 },
        upload(&dup, &device, DType::F64),
        upload(&r, &device, DType::F64),
    ));
    assert!(ok.is_ok());
}

/// Nearly dependent keys pass Cholesky but leave no accurate digits: refused, naming α.
#[test]
fn nearly_dependent_keys_are_refused_with_advice() {
    let device = burn::prelude::Device::flex();
    let (c0, k, r) = problem(16, 4, 2, 70);
    let mut near = k.clone();
    for i in 0..16 {
        near[(i, 1)] = near[(i, 0)] * (1.0 + 1e-5 * (i as f64).sin());
    }
    let pres = block_on(Preservation::new(upload(&c0, &device, DType::F32), 1.0)).unwrap();
    let err = block_on(solve_delta(
        &pres,
        Objective::Emmet { alpha: 0.0 },
        upload(&near, &device, DType::F32),
        upload(&r, &device, DType::F32),
    ))
    .expect_err("an ill-conditioned batch must be refused");
    assert!(err.to_string().contains("raise α"), "{err}");
}
