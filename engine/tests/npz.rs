//! Importing the authors' `.npz` layer statistics (written here by numpy's `np.savez`).

mod common;

use burn::prelude::*;
use common::fixture;
use pmedit_engine::edit::npz::{import_npz, parse_npy};

#[test]
fn authors_npz_imports() {
    let bytes = std::fs::read(fixture("authors-stats-tiny.npz")).unwrap();
    let st = import_npz(&bytes, "authors-stats-tiny.npz", 17, &Device::flex()).unwrap();
    assert_eq!((st.layer, st.count), (17, 3));
    let c0: Vec<f32> = st.c0().unwrap().into_data().iter().collect();
    assert_eq!(c0.len(), 36);
    for (got, want) in c0[..3].iter().zip([0.147_800_31f32, 0.105_175_77, -0.137_283_25]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    // Symmetric, as a second moment is.
    assert!((c0[1] - c0[6]).abs() < 1e-6);
}

#[test]
fn bad_npz_files_are_refused() {
    let device = Device::flex();
    let bytes = std::fs::read(fixture("authors-stats-tiny.npz")).unwrap();
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
