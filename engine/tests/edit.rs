//! End-to-end edits on a fixture model whose outputs are not saturated (transformers' default
//! init): after ROME, r-ROME, MEMIT and EMMET the new target is the top prediction of the rewrite
//! prompt, and unrelated prompts barely move.

mod common;

use std::collections::HashMap;

use burn::prelude::*;
use common::{fixture, on_all_devices};
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::edit::values::target_ids;
use pmedit_engine::edit::{Algorithm, ContextTemplates, EditRequest, Preservation, apply_edits, presets::preset};
use pmedit_engine::load::{LoadedModel, load_model_dir};
use pmedit_engine::predict::{encode_prompt, next_token_logprobs};

/// C0 at `layers` over the wikitext excerpt (4k tokens, windows of 64).
fn stats(m: &LoadedModel, layers: &[usize], lambda: f64) -> HashMap<usize, Preservation> {
    let text = std::fs::read_to_string(fixture("wikitext-excerpt.txt")).unwrap();
    let mut ids = m.tokenizer.encode(&text).unwrap();
    ids.truncate(4096);
    let device = m.model.device();
    let mut st: Vec<LayerStats> = layers.iter().map(|&l| LayerStats::new(l, m.config.d_inner(), &device)).collect();
    accumulate(&m.model, &windows(&ids, 64), 16, &mut st).unwrap();
    st.iter().map(|s| (s.layer, Preservation::new(s.c0().unwrap(), lambda).unwrap())).collect()
}

fn logprobs(m: &LoadedModel, prompt: &str) -> Vec<f32> {
    next_token_logprobs(&m.model, &encode_prompt(&m.model, &m.tokenizer, prompt).unwrap()).unwrap()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

fn requests() -> Vec<EditRequest> {
    vec![
        EditRequest::new("The Eiffel Tower is located in the city of", "Eiffel Tower", "Rome").unwrap(),
        EditRequest::new("The mother tongue of {} is", "Danielle Darrieux", "English").unwrap(),
    ]
}

const UNRELATED: [&str; 3] = ["My favourite food is", "The weather today is", "In 1990, the president"];

fn check(algorithm: Algorithm, device: &Device, name: &str, templates: &ContextTemplates) {
    let mut m = load_model_dir(&fixture("tiny-gpt2-init"), device).unwrap();
    let hp = preset(algorithm, &m.config);
    let pres = stats(&m, &hp.layers, hp.lambda);
    let before: Vec<Vec<f32>> = UNRELATED.iter().map(|p| logprobs(&m, p)).collect();
    let reqs = requests();
    let out = apply_edits(&mut m.model, &m.tokenizer, &reqs, algorithm, &hp, templates, &pres, |_| {}).unwrap();
    assert!(!out.deltas.is_empty());
    for r in &reqs {
        let lp = logprobs(&m, &r.filled_prompt());
        let target = target_ids(&m.tokenizer, r).unwrap()[0] as usize;
        assert_eq!(argmax(&lp), target, "{name} {algorithm:?}: {:?} does not predict {:?}", r.filled_prompt(), r.target_new);
    }
    for (p, b) in UNRELATED.iter().zip(&before) {
        let a = logprobs(&m, p);
        let shift = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(shift < 0.5, "{name} {algorithm:?}: {p:?} moved by {shift}");
    }
}

#[test]
fn rome_edit_takes() {
    on_all_devices(|name, device| check(Algorithm::Rome, device, name, &ContextTemplates::bare()));
}

#[test]
fn r_rome_edit_takes() {
    on_all_devices(|name, device| check(Algorithm::RRome, device, name, &ContextTemplates::bare()));
}

#[test]
fn memit_edit_takes() {
    on_all_devices(|name, device| check(Algorithm::Memit, device, name, &ContextTemplates::bare()));
}

#[test]
fn emmet_edit_takes() {
    on_all_devices(|name, device| check(Algorithm::Emmet, device, name, &ContextTemplates::bare()));
}

#[test]
fn edits_take_with_sampled_templates() {
    let device = Device::flex();
    let m = load_model_dir(&fixture("tiny-gpt2-init"), &device).unwrap();
    for recipe in [Algorithm::Rome, Algorithm::Emmet] {
        let t = ContextTemplates::generate(&m.model, &m.tokenizer, recipe.template_recipe(), 3).unwrap();
        assert_eq!(t.len(), if recipe == Algorithm::Rome { 21 } else { 6 });
        check(recipe, &device, "cpu", &t);
    }
}
