//! Importing the authors' `.npz` layer statistics (written here by numpy's `np.savez`).

mod common;

use burn::prelude::*;
use burn::tensor::DType;
use common::{download, fixture, on_all_devices, randn, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::{Objective, Preservation, solve_delta};
use pmedit_engine::linalg::host::Mat;
use pmedit_engine::load::npz::{import_npz, layer_from_file_name, parse_npy};

/// The fixture written the authors' way (`tests/fixtures/generate_authors_npz.py`: a float32
/// running sum Σ k kᵀ and a count) and the keys it was made from.
const AUTHORS: &str = "authors-npz/transformer.h.17.mlp.c_proj_float32_mom2_120.npz";

/// C0 = the mean of k kᵀ over the fixture's keys, in f64, independent of the file and of pmedit.
fn mean_from_keys() -> (Mat, u64) {
    let text = std::fs::read_to_string(fixture(&format!("{AUTHORS}.keys.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<Vec<f64>> = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let n = keys[0].len();
    let mut c0 = Mat::new(n, n, vec![0.0; n * n]);
    for k in &keys {
        for i in 0..n {
            for j in 0..n {
                c0.data[i * n + j] += k[i] * k[j] / keys.len() as f64;
            }
        }
    }
    (c0, json["count"].as_u64().unwrap())
}

fn import_authors(device: &Device) -> pmedit_engine::edit::stats::LayerStats {
    let name = fixture(AUTHORS).to_string_lossy().into_owned();
    let layer = layer_from_file_name(&name).unwrap();
    import_npz(&std::fs::read(&name).unwrap(), &name, layer, device).unwrap()
}

#[test]
fn authors_npz_holds_a_sum_and_imports_as_the_mean() {
    let (want, count) = mean_from_keys();
    on_all_devices(|dev, device| {
        let st = import_authors(device);
        assert_eq!((st.layer, st.count), (17, count), "{dev}");
        let got = download(st.c0().unwrap());
        let err = rel_err(&got, &want);
        assert!(err < 1e-6, "{dev}: C0 is {err:e} off the keys' mean");
    });
}

/// What the misreading did: MEMIT and EMMET solved with C0 `count` times too large. With the
/// mean, their Δ equals the one solved from the keys' own C0.
#[test]
fn edits_with_authors_statistics_equal_edits_with_the_true_c0() {
    let (c0, _) = mean_from_keys();
    let n = c0.rows;
    let k = Mat::new(n, 4, randn(7, n * 4));
    let r = Mat::new(4, 5, randn(8, 4 * 5));
    on_all_devices(|dev, device| {
        let st = import_authors(device);
        let imported = st.c0().unwrap();
        for objective in [Objective::Memit, Objective::Emmet { alpha: 0.1 }] {
            let solve = |c0: Tensor<2>| {
                let pres = block_on(Preservation::new(c0, 1.0)).unwrap();
                download(
                    block_on(solve_delta(
                        &pres,
                        objective,
                        upload(&k, device, DType::F32),
                        upload(&r, device, DType::F32),
                    ))
                    .unwrap(),
                )
            };
            let want = solve(upload(&c0, device, DType::F32));
            let err = rel_err(&solve(imported.clone()), &want);
            // What reading `mom2.mom2` as the mean gave: C0 `count` times too large.
            let misread = rel_err(&solve(imported.clone() * st.count as f64), &want);
            eprintln!("{dev} {objective:?}: ΔW relative error {err:.1e} (read as the mean: {misread:.2})");
            assert!(err < 1e-4, "{dev} {objective:?}: ΔW is {err:e} off");
            assert!(
                misread > 0.1,
                "{dev} {objective:?}: the fixture cannot tell the sum from the mean"
            );
        }
    });
}

#[test]
fn the_layer_is_read_from_the_authors_file_names() {
    for (name, layer) in [
        ("transformer.h.17.mlp.c_proj_float32_mom2_100000.npz", 17),
        (
            "stats/gpt2-xl/wikipedia_stats/transformer.h.3.mlp.c_proj_float32_mom2_100000.npz",
            3,
        ),
        ("model.layers.5.mlp.down_proj_float32_mom2_100000.npz", 5),
        ("layer12.npz", 12),
        ("Layer_0.npz", 0),
        ("l7.npz", 7),
    ] {
        assert_eq!(layer_from_file_name(name).unwrap(), layer, "{name}");
    }
    let err = layer_from_file_name("mom2.npz").unwrap_err().to_string();
    assert!(err.contains("mom2.npz") && err.contains("layer17.npz"), "{err}");
    assert!(layer_from_file_name("lemon.npz").is_err());
}

#[test]
fn bad_npz_files_are_refused() {
    let device = Device::flex();
    let bytes = std::fs::read(fixture(AUTHORS)).unwrap();
    let err = import_npz(&bytes[..bytes.len() - 30], "cut.npz", 0, &device).unwrap_err();
    assert!(err.to_string().contains("cut.npz"), "{err}");
    let err = import_npz(b"hello", "x.npz", 0, &device).unwrap_err();
    assert!(err.to_string().contains("zip"), "{err}");
    let compressed = std::fs::read(fixture("authors-stats-tiny-compressed.npz")).unwrap();
    let err = import_npz(&compressed, "c.npz", 0, &device).unwrap_err();
    assert!(err.to_string().contains("np.savez"), "{err}");
    assert!(parse_npy(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<c8'}", "y").is_err());
}

/// Found by `fuzz/fuzz_targets/npz.rs`: a zip64 locator whose record offset is near `usize::MAX`
/// made `offset + 32` overflow (a panic with overflow checks). Now a clear error.
#[test]
fn npz_with_offsets_past_the_end_is_refused() {
    let bytes = std::fs::read(fixture("fuzz-regressions/npz-offset-overflow.npz")).unwrap();
    let err = import_npz(&bytes, "fuzzed.npz", 0, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("fuzzed.npz"), "{err}");
}
