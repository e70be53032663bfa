//! Shared helpers for the engine's integration tests: the devices to run on, fixture paths and
//! the reference data written by `tests/fixtures/generate_gpt2_fixtures.py`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::prelude::*;

/// The wgpu device, initialised once per test process (`None` when no adapter exists).
fn wgpu_device() -> Option<Device> {
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    GPU.get_or_init(|| match Device::wgpu_options().init() {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                std::env::var("PMEDIT_REQUIRE_WGPU").is_err(),
                "PMEDIT_REQUIRE_WGPU is set but no wgpu adapter initialised: {e}"
            );
            eprintln!("no wgpu adapter ({e}): GPU half of the test skipped");
            None
        }
    })
    .clone()
}

/// The devices every engine test runs on: the flex CPU backend and, when an adapter exists
/// (lavapipe in CI, where `PMEDIT_REQUIRE_WGPU=1` makes its absence a failure), wgpu.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut v = vec![("cpu", Device::flex())];
    if let Some(gpu) = wgpu_device() {
        v.push(("wgpu", gpu));
    }
    v
}

/// Runs `f` once per device: one line makes a test backend-agnostic.
pub fn on_all_devices(f: impl Fn(&str, &Device)) {
    for (name, device) in devices() {
        f(name, &device);
    }
}

/// The built-in demo model shipped in `public/models/demo`.
pub fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../public/models/demo")
}

/// `tests/fixtures/<name>` at the repository root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The parsed `gpt2-reference.json`.
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("gpt2-reference.json")).expect("reference fixture");
    serde_json::from_str(&text).expect("reference JSON")
}

/// A JSON array of numbers as `Vec<f64>`.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// A JSON array of integers as `Vec<u32>`.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

/// Deterministic standard-normal-ish host values (Box–Muller over ChaCha8).
pub fn randn(seed: u64, n: usize) -> Vec<f64> {
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..n)
        .map(|_| (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos())
        .collect()
}

/// A host matrix as a device tensor of `dtype`.
pub fn upload(m: &pmedit_engine::linalg::host::Mat, device: &Device, dtype: burn::tensor::DType) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(m.data.clone(), [m.rows, m.cols]),
        (device, burn::tensor::DType::F64),
    )
    .cast(dtype)
}

/// A device tensor on the host in f64.
pub fn download(t: Tensor<2>) -> pmedit_engine::linalg::host::Mat {
    let [r, c] = t.dims();
    pmedit_engine::linalg::host::Mat::new(r, c, t.into_data().iter::<f64>().collect())
}

/// ‖a − b‖_F / ‖b‖_F.
pub fn rel_err(a: &pmedit_engine::linalg::host::Mat, b: &pmedit_engine::linalg::host::Mat) -> f64 {
    let diff: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    diff / b.norm()
}
