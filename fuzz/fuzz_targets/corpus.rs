//! Arbitrary bytes as a statistics corpus (plain text or JSON lines), read whole and in chunks:
//! both must agree or both fail.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pmedit_engine::load::corpus::{CorpusChunks, corpus_text};

fuzz_target!(|data: &[u8]| {
    let whole = corpus_text(data, "fuzz.txt");
    let chunked: Result<Vec<String>, _> = CorpusChunks::new(data, "fuzz.txt", 7).collect();
    match (whole, chunked) {
        (Ok(w), Ok(c)) => assert_eq!(w, c.concat()),
        (Err(_), Err(_)) => {}
        (w, c) => panic!("whole {w:?} vs chunked {c:?}"),
    }
});
