//! Arbitrary bytes as a model's `model.safetensors` (with a fixed tiny GPT-2 config): parsing,
//! reading every tensor and building the model must fail cleanly, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pmedit_engine::Gpt2Config;
use pmedit_engine::load::{MemorySource, SafetensorsFile, WeightFiles, build_gpt2};

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = SafetensorsFile::open(MemorySource::new("fuzz.safetensors", data.to_vec())) else {
        return;
    };
    let names: Vec<String> = file.names().map(String::from).collect();
    for n in &names {
        let _ = file.read_f32(n);
    }
    let config = Gpt2Config::new(16, 8, 8, 1, 2);
    let mut w = WeightFiles::new(vec![file], "fuzz".into());
    let _ = build_gpt2(&config, &mut w, &burn::prelude::Device::flex());
});
