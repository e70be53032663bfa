//! Generation: the KV-cache path agrees with full forward passes, and a seed fixes the text.

mod common;

use burn::prelude::*;
use common::{fixture, on_all_devices};
use pmedit_engine::block_on;
use pmedit_engine::generate::{GenerateOptions, generate, generate_ids};
use pmedit_engine::load::load_model_dir;
use pmedit_engine::predict::next_token_logprobs;

#[test]
fn greedy_with_cache_equals_argmax_of_full_forward() {
    on_all_devices(|name, device: &Device| {
        let m = load_model_dir(&fixture("tiny-gpt2"), device).unwrap();
        let prompt = m.tokenizer.encode("The Eiffel Tower is in").unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 8,
            top_k: 1,
            stop_at_eos: false,
            ..Default::default()
        };
        let cached = block_on(generate_ids(&m.model, &prompt, &opts, None)).unwrap();
        assert_eq!(cached.len(), 8);
        let mut ids = prompt.clone();
        for (step, &got) in cached.iter().enumerate() {
            let lp = block_on(next_token_logprobs(&m.model, &ids)).unwrap();
            let best = (0..lp.len())
                .max_by(|&a, &b| lp[a].total_cmp(&lp[b]).then(b.cmp(&a)))
                .unwrap() as u32;
            assert_eq!(got, best, "{name}: step {step}");
            ids.push(best);
        }
    });
}

#[test]
fn seeded_sampling_is_deterministic() {
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture("tiny-gpt2"), device).unwrap();
        let opts = |seed| GenerateOptions {
            max_new_tokens: 12,
            top_k: 5,
            seed,
            ..Default::default()
        };
        let a = block_on(generate(&m.model, &m.tokenizer, "Hello", &opts(7))).unwrap();
        let b = block_on(generate(&m.model, &m.tokenizer, "Hello", &opts(7))).unwrap();
        let c = block_on(generate(&m.model, &m.tokenizer, "Hello", &opts(8))).unwrap();
        assert_eq!(a, b, "{name}");
        assert_ne!(a, c, "{name}: different seeds gave the same text");
    });
}

/// The new text reads as it follows the prompt: with a SentencePiece-style tokenizer the first
/// word keeps its leading space, and the end-of-text token generation stopped at is not shown.
#[test]
fn generated_text_continues_the_prompt_without_special_tokens() {
    let device = Device::flex();
    let m = load_model_dir(&fixture("facts-llama"), &device).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 10,
        top_k: 1,
        ..Default::default()
    };
    let text = block_on(generate(
        &m.model,
        &m.tokenizer,
        "The mother tongue of Danielle Darrieux is",
        &opts,
    ))
    .unwrap();
    // The model learnt "… is French" followed by its end-of-text token.
    assert_eq!(text, " French");
    let ids = m.tokenizer.encode("The mother tongue of Danielle Darrieux is").unwrap();
    let new = block_on(generate_ids(&m.model, &ids, &opts, m.tokenizer.eos_id())).unwrap();
    assert_eq!(new.last().copied(), m.tokenizer.eos_id(), "{new:?}");
    assert_eq!(
        m.tokenizer.decode(&new[..1]).unwrap(),
        "French",
        "decoded alone the space is lost"
    );
    // A next-token list shows the token as it reads in text.
    assert_eq!(m.tokenizer.token_text(new[0]).unwrap(), " French");
    assert_eq!(m.tokenizer.token_text(m.tokenizer.eos_id().unwrap()).unwrap(), "</s>");
}

#[test]
fn generation_stops_at_the_context_length() {
    let device = Device::flex();
    let m = load_model_dir(&fixture("tiny-gpt2"), &device).unwrap();
    let prompt = vec![464u32; 30];
    let opts = GenerateOptions {
        max_new_tokens: 50,
        stop_at_eos: false,
        ..Default::default()
    };
    assert_eq!(block_on(generate_ids(&m.model, &prompt, &opts, None)).unwrap().len(), 2);
}
