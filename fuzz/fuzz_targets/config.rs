//! Arbitrary text as `config.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = pmedit_engine::Gpt2Config::from_json(text) {
            let _ = (c.d_inner(), c.d_head(), c.num_params());
        }
    }
});
