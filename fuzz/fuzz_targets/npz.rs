//! Arbitrary bytes as the authors' `.npz` layer statistics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pmedit_engine::load::npz::import_npz(data, "fuzz.npz", 0, &burn::prelude::Device::flex());
});
