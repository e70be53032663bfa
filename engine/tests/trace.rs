//! Causal tracing (docs/MATH.md §12) on the demo model, facts-gpt2 and facts-llama: restoring the
//! last block's output at the last token gives p_clean back, the tables are `[tokens][layers]`, a
//! seed fixes the noise, batched restorations equal one-at-a-time ones, and without noise every
//! restoration is the clean run.

mod common;

use burn::prelude::*;
use common::{demo_dir, fixture, on_all_devices};
use pmedit_engine::block_on;
use pmedit_engine::load::{LoadedModel, load_model_dir};
use pmedit_engine::trace::{Trace, TraceOptions, trace};

const PROMPT: &str = "The mother tongue of Danielle Darrieux is";
const SUBJECT: &str = "Danielle Darrieux";

fn run(m: &LoadedModel, opts: TraceOptions) -> Trace {
    block_on(trace(&m.model, &m.tokenizer, PROMPT, SUBJECT, &opts, |_, _| {})).unwrap()
}

fn opts(samples: usize, seed: u64) -> TraceOptions {
    TraceOptions {
        samples,
        seed,
        window: 3,
        ..Default::default()
    }
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn restoring_the_last_state_gives_the_clean_prediction_back() {
    on_all_devices(|name, device| {
        for dir in [demo_dir(), fixture("facts-gpt2"), fixture("facts-llama")] {
            let m = load_model_dir(&dir, device).unwrap();
            let t = run(&m, opts(2, 0));
            let (n_tok, n_layer) = (t.tokens.len(), m.config.n_layer());
            assert_eq!(m.tokenizer.encode(PROMPT).unwrap().len(), n_tok, "{name} {dir:?}");
            for table in [&t.hidden, &t.mlp, &t.attn] {
                assert_eq!(table.len(), n_tok, "{name} {dir:?}");
                assert!(table.iter().all(|row| row.len() == n_layer), "{name} {dir:?}");
            }
            // The subject's tokens spell the subject.
            let subject: String = t.tokens[t.subject[0]..=t.subject[1]].concat();
            assert_eq!(subject.trim(), SUBJECT, "{name} {dir:?}: {:?}", t.tokens);
            let last = t.hidden[n_tok - 1][n_layer - 1];
            assert!(
                (last - t.p_clean).abs() < 1e-4,
                "{name} {dir:?}: restored {last} vs clean {}",
                t.p_clean
            );
            // The corruption hides the fact; every restoration lies between nothing and all.
            assert!(
                t.p_corrupt < 0.5 * t.p_clean,
                "{name} {dir:?}: {} vs {}",
                t.p_corrupt,
                t.p_clean
            );
            // Before the subject nothing is corrupted yet, so restoring it changes nothing.
            let untouched = t.hidden[..t.subject[0]].iter().flatten();
            assert!(
                untouched.clone().all(|&p| (p - t.p_corrupt).abs() < 1e-4),
                "{name} {dir:?}"
            );
            eprintln!("{name} {dir:?}: p_clean {:.3}, p_corrupt {:.3}", t.p_clean, t.p_corrupt);
        }
    });
}

#[test]
fn a_seed_fixes_the_noise() {
    let m = load_model_dir(&fixture("facts-gpt2"), &Device::flex()).unwrap();
    let a = run(&m, opts(3, 7));
    assert_eq!(a, run(&m, opts(3, 7)));
    let c = run(&m, opts(3, 8));
    assert!(max_diff(&a.mlp, &c.mlp) > 1e-4, "another seed gave the same trace");
}

#[test]
fn batched_restorations_equal_one_at_a_time() {
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture("facts-llama"), device).unwrap();
        let batched = run(&m, opts(3, 1));
        let single = run(&m, TraceOptions { batch: 3, ..opts(3, 1) });
        for (a, b) in [
            (&batched.hidden, &single.hidden),
            (&batched.mlp, &single.mlp),
            (&batched.attn, &single.attn),
        ] {
            assert!(max_diff(a, b) < 1e-5, "{name}: {}", max_diff(a, b));
        }
        assert!((batched.p_corrupt - single.p_corrupt).abs() < 1e-5, "{name}");
    });
}

#[test]
fn without_noise_every_restoration_is_the_clean_run() {
    let m = load_model_dir(&fixture("facts-gpt2"), &Device::flex()).unwrap();
    let t = run(
        &m,
        TraceOptions {
            noise: Some(0.0),
            ..opts(1, 0)
        },
    );
    assert!((t.p_corrupt - t.p_clean).abs() < 1e-5);
    for table in [&t.hidden, &t.mlp, &t.attn] {
        assert!(table.iter().flatten().all(|&p| (p - t.p_clean).abs() < 1e-5));
    }
}

#[test]
fn bad_requests_are_refused() {
    let m = load_model_dir(&fixture("facts-gpt2"), &Device::flex()).unwrap();
    let err = |prompt: &str, subject: &str, o: TraceOptions| {
        block_on(trace(&m.model, &m.tokenizer, prompt, subject, &o, |_, _| {}))
            .unwrap_err()
            .to_string()
    };
    assert!(err(PROMPT, "Paris", opts(1, 0)).contains("does not contain the subject"));
    assert!(err(PROMPT, SUBJECT, opts(0, 0)).contains("at least one sample"));
    let nan = TraceOptions {
        noise: Some(f64::NAN),
        ..opts(1, 0)
    };
    assert!(err(PROMPT, SUBJECT, nan).contains("noise"));
}
