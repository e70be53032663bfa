//! A config and weights together: the first two bytes give the length of the `config.json` text
//! that follows, the rest is `model.safetensors`. Loading must fail cleanly, and never allocate
//! what the config claims before the weights confirm it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pmedit_engine::Gpt2Tokenizer;
use pmedit_engine::load::{MemorySource, load_model_source};

static TOKENIZER: &[u8] = include_bytes!("../seeds/tokenizer/tokenizer.json");

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let Some(config) = data.get(2..2 + n) else { return };
    let weights = data[2 + n..].to_vec();
    let Ok(tokenizer) = Gpt2Tokenizer::from_tokenizer_json(TOKENIZER) else { return };
    let _ = load_model_source(
        "fuzz",
        config,
        tokenizer,
        MemorySource::new("fuzz.safetensors", weights),
        &burn::prelude::Device::flex(),
    );
});
