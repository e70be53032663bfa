//! Arbitrary bytes as `tokenizer.json`, or as `vocab.json` + `merges.txt` (split at the first NUL).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pmedit_engine::Gpt2Tokenizer;

fuzz_target!(|data: &[u8]| {
    let tok = match data.iter().position(|&b| b == 0) {
        Some(i) => Gpt2Tokenizer::from_vocab_merges(&data[..i], &data[i + 1..]),
        None => Gpt2Tokenizer::from_tokenizer_json(data),
    };
    if let Ok(t) = tok {
        if let Ok(ids) = t.encode("The mother tongue of Danielle Darrieux is") {
            let _ = t.decode(&ids);
        }
    }
});
