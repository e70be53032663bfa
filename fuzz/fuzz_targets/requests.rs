//! Arbitrary text as an edit-requests file (any accepted shape).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(reqs) = pmedit_engine::edit::EditRequest::parse_many(text, "fuzz.json") {
            for r in reqs {
                let _ = r.filled_prompt();
            }
        }
    }
});
