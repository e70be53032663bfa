//! Tokenizer ids against transformers' `GPT2Tokenizer`, from both file layouts.

mod common;

use common::{fixture, ids, reference};
use pmedit_engine::Gpt2Tokenizer;

fn check(tok: &Gpt2Tokenizer) {
    let r = reference();
    for case in r["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "ids of {text:?}");
        assert_eq!(tok.decode(&ids(&case["ids"])).unwrap(), text, "round trip of {text:?}");
    }
    assert_eq!(tok.eos_id(), Some(50256));
}

#[test]
fn vocab_and_merges_match_transformers() {
    check(&Gpt2Tokenizer::from_dir(&fixture("tiny-gpt2")).unwrap());
}

#[test]
fn tokenizer_json_matches_transformers() {
    check(&Gpt2Tokenizer::from_dir(&fixture("tiny-gpt2-hub")).unwrap());
}

#[test]
fn eiffel_tower_ids() {
    let tok = Gpt2Tokenizer::from_dir(&fixture("tiny-gpt2")).unwrap();
    assert_eq!(
        tok.encode("The Eiffel Tower is located in the city of Paris.").unwrap(),
        vec![464, 412, 733, 417, 8765, 318, 5140, 287, 262, 1748, 286, 6342, 13]
    );
}

#[test]
fn malformed_merges_is_an_error() {
    let vocab = std::fs::read(fixture("tiny-gpt2/vocab.json")).unwrap();
    let err = Gpt2Tokenizer::from_vocab_merges(&vocab, b"#version: 0.2\na b c\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = Gpt2Tokenizer::from_vocab_merges(b"{not json", b"").unwrap_err();
    assert!(matches!(err, pmedit_engine::EngineError::Tokenizer { .. }), "{err}");
}
