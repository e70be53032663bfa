//! Arbitrary text as a sharded model's `model.safetensors.index.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pmedit_engine::load::model_dir::shard_names(text, std::path::Path::new("fuzz.index.json"));
    }
});
