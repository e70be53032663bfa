//! Arbitrary text as a CounterFact / zsRE / known_1000 dataset file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pmedit_engine::eval::dataset::read_records(text, "fuzz.json", false);
        let _ = pmedit_engine::eval::dataset::read_records(text, "fuzz.json", true);
    }
});
