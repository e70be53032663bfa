//! Arbitrary text as a context-templates JSON file (`--templates FILE`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = pmedit_engine::edit::ContextTemplates::from_json(text) {
            let _ = (t.len(), t.all().count());
        }
    }
});
