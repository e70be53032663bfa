//! The f32 device solve against an f64 reference, with C0 and keys from real activations
//! (facts-gpt2 over the wikitext excerpt, keys of CounterFact subjects): relative Frobenius
//! error of Δ ≤ 1e-3 for λ ∈ {1, 10⁴} and batches of 1, 16 and 256.

mod common;

use burn::prelude::*;
use burn::tensor::DType;
use common::{download, fixture, on_all_devices, randn, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::keys::compute_keys;
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::edit::{ContextTemplates, EditRequest, Objective, Preservation, solve_delta};
use pmedit_engine::linalg::host::Mat;
use pmedit_engine::load::load_model_dir;

/// C0 `[n, n]` and keys `[n, 256]` at layer 1 of facts-gpt2, on the host in f64.
fn real_problem() -> (Mat, Mat) {
    let device = Device::flex();
    let m = load_model_dir(&fixture("facts-gpt2"), &device).unwrap();
    let text = std::fs::read_to_string(fixture("wikitext-excerpt.txt")).unwrap();
    let ids = m.tokenizer.encode(&text).unwrap();
    let mut st = vec![LayerStats::new(1, m.config.d_inner(), &device)];
    accumulate(&m.model, &windows(&ids, 64), 16, &mut st).unwrap();
    let requests = EditRequest::parse_many(
        &std::fs::read_to_string(fixture("counterfact-256.json")).unwrap(),
        "counterfact-256.json",
    )
    .unwrap();
    let keys = compute_keys(&m.model, &m.tokenizer, 1, &requests, &ContextTemplates::bare()).unwrap();
    (download(st[0].c0().unwrap()), download(keys))
}

fn columns(m: &Mat, e: usize) -> Mat {
    let data = (0..m.rows)
        .flat_map(|i| (0..e).map(move |j| (i, j)))
        .map(|(i, j)| m[(i, j)])
        .collect();
    Mat::new(m.rows, e, data)
}

#[test]
fn f32_solves_match_f64_reference() {
    let (c0, keys) = real_problem();
    let d = 64;
    let reference_device = Device::flex();
    on_all_devices(|name, device| {
        for lambda in [1.0, 1e4] {
            for e in [1usize, 16, 256] {
                let k = columns(&keys, e);
                let r = Mat::new(e, d, randn(e as u64, e * d));
                for objective in [Objective::Memit, Objective::Emmet { alpha: 0.1 }] {
                    let solve = |dev: &Device, dtype: DType| {
                        let pres = block_on(Preservation::new(upload(&c0, dev, dtype), lambda)).unwrap();
                        download(
                            block_on(solve_delta(
                                &pres,
                                objective,
                                upload(&k, dev, dtype),
                                upload(&r, dev, dtype),
                            ))
                            .unwrap(),
                        )
                    };
                    let want = solve(&reference_device, DType::F64);
                    let got = solve(device, DType::F32);
                    let err = rel_err(&got, &want);
                    eprintln!("{name} λ={lambda} E={e} {objective:?}: relative error {err:.2e}");
                    assert!(err <= 1e-3, "{name} λ={lambda} E={e} {objective:?}: {err:e}");
                }
            }
        }
    });
}
