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

/// Found by `fuzz/fuzz_targets/tokenizer.rs`: a JSON syntax error inside the `decoder` object
/// made the `tokenizers` crate panic ("Helper") instead of returning an error.
#[test]
fn tokenizer_json_with_a_broken_decoder_is_an_error() {
    let bytes = std::fs::read(fixture("fuzz-regressions/tokenizer-decoder-syntax-error.json")).unwrap();
    let Err(err) = Gpt2Tokenizer::from_tokenizer_json(&bytes) else {
        panic!("a broken file must be refused")
    };
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    // A key inside the decoder that is not UTF-8 (the second finding).
    let mut broken = br#"{"version":"1.0","decoder":{"type":"ByteLevel","add_prefix_s"#.to_vec();
    broken.push(0xE0); // a lone lead byte
    broken.extend_from_slice(br#"pace":true},"model":{"type":"BPE","vocab":{},"merges":[]}}"#);
    let Err(err) = Gpt2Tokenizer::from_tokenizer_json(&broken) else {
        panic!("invalid UTF-8 must be refused")
    };
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

/// A corpus tokenised chunk by chunk (`pmedit stats` reads it that way, so a huge file is read
/// only as far as `--max-tokens`) gives exactly the ids of the whole text, for every chunk size,
/// with GPT-2's tokenizer and the demo model's, `<|endoftext|>` included.
#[test]
fn a_corpus_read_in_chunks_has_the_ids_of_the_whole_text() {
    use pmedit_engine::load::corpus::{CorpusChunks, corpus_ids, corpus_text};
    let mut text = std::fs::read_to_string(common::fixture("wikitext-excerpt.txt")).unwrap();
    text.truncate(text.floor_char_boundary(20_000));
    text.push_str("\nOne.<|endoftext|>\n<|endoftext|> Two\n\n\n  three\n");
    for dir in [common::fixture("facts-gpt2"), common::demo_dir()] {
        let tok = pmedit_engine::Gpt2Tokenizer::from_dir(&dir).unwrap();
        let whole = tok.encode(&corpus_text(text.as_bytes(), "c").unwrap()).unwrap();
        for chunk in [1, 7, 100, 4096, usize::MAX] {
            let ids = corpus_ids(CorpusChunks::new(text.as_bytes(), "c", chunk), &tok, None).unwrap();
            assert_eq!(ids, whole, "{} with chunks of {chunk} bytes", dir.display());
        }
        let some = corpus_ids(CorpusChunks::new(text.as_bytes(), "c", 100), &tok, Some(500)).unwrap();
        assert_eq!(some, whole[..500]);
    }
}
