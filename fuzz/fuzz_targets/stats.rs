//! Arbitrary bytes as a pmedit statistics file (`pmedit stats` output, `--stats` input).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((stats, _)) = pmedit_engine::load::stats_file::stats_from_bytes(data, "fuzz.safetensors", &burn::prelude::Device::flex()) {
        for s in &stats {
            let _ = s.c0();
        }
    }
});
