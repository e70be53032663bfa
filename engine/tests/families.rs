//! The model families beyond GPT-2 against transformers — the Llama family (Llama-2, Llama-3, Qwen2
//! shapes) and GPT-J: forward passes in f32, bf16 and f16 files, the tokenizers (BOS,
//! SentencePiece-style pieces, the subject's last token), ROME / MEMIT / EMMET edits through the
//! editor on `mlp.down_proj` and `mlp.fc_out`, and saving. Fixtures:
//! `tests/fixtures/generate_llama_fixtures.py`.

mod common;

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::log_softmax;
use common::{fixture, floats, ids, on_all_devices};
use pmedit_engine::edit::prompts::subject_prompt;
use pmedit_engine::edit::{Algorithm, EditRequest, Editor, Overrides, TemplateChoice, ValueOverrides};
use pmedit_engine::load::{load_model_dir, load_model_dir_in};
use pmedit_engine::predict::token_tensor;
use pmedit_engine::{EditableModel, Model, ModelConfig, block_on};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("llama-reference.json")).expect("llama reference fixture");
    serde_json::from_str(&text).expect("reference JSON")
}

/// Largest |ours − reference| log-prob over every position and the reference's vocabulary subset
/// and top-10, and whether the top-10 at the last position agree.
fn compare(dir: &str, family: &str, key: &str, device: &Device, dtype: FloatDType) -> (f64, bool) {
    let r = &reference()[family];
    let subset: Vec<usize> = ids(&r["vocab_subset"]).into_iter().map(|i| i as usize).collect();
    let m = load_model_dir_in(&fixture(dir), device, dtype).expect("fixture loads");
    assert!(
        matches!(
            (&m.model, family),
            (Model::Llama(_), "llama2" | "llama3" | "qwen2") | (Model::Gptj(_), "gptj")
        ),
        "{dir} is loaded as its family"
    );
    let (mut worst, mut top_ok) = (0.0f64, true);
    for case in r[key].as_array().unwrap() {
        let prompt_ids = ids(&case["ids"]);
        assert_eq!(
            m.tokenizer.encode(case["prompt"].as_str().unwrap()).unwrap(),
            prompt_ids,
            "{dir}: prompt ids"
        );
        let logits = m.model.forward(token_tensor(&prompt_ids, device));
        let [_, seq, vocab] = logits.dims();
        let lp = log_softmax(logits, 2)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (pos, row) in case["subset_logprobs"].as_array().unwrap().iter().enumerate() {
            for (j, want) in floats(row).into_iter().enumerate() {
                worst = worst.max((lp[pos * vocab + subset[j]] as f64 - want).abs());
            }
        }
        let last = &lp[(seq - 1) * vocab..seq * vocab];
        let mut order: Vec<usize> = (0..vocab).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        let want_top = ids(&case["top10_ids"]);
        top_ok &= order[..10].iter().map(|&i| i as u32).collect::<Vec<_>>() == want_top;
        for (id, want) in want_top.iter().zip(floats(&case["top10_logprobs"])) {
            worst = worst.max((last[*id as usize] as f64 - want).abs());
        }
    }
    (worst, top_ok)
}

/// Llama-2 shape (multi-head attention, untied head, θ = 10⁴) and Llama-3 shape (grouped-query
/// attention, θ = 5·10⁵ with llama3 rope scaling, tied head, square down_proj), f32 files.
#[test]
fn llama_forward_matches_transformers() {
    on_all_devices(|name, device| {
        for (dir, family) in [("tiny-llama2", "llama2"), ("tiny-llama3", "llama3")] {
            let (err, top) = compare(dir, family, "f32", device, FloatDType::F32);
            eprintln!("{name} {dir}: max |Δ logprob| = {err:e}");
            assert!(err < 1e-4, "{name} {dir}: max |Δ logprob| = {err:e}");
            assert!(top, "{name} {dir}: top-10 differs");
        }
    });
}

/// GPT-J: parallel attention and MLP, rotary on 8 of 16 dimensions per head in interleaved
/// pairs, an LM head with a bias.
#[test]
fn gptj_forward_matches_transformers() {
    on_all_devices(|name, device| {
        let (err, top) = compare("tiny-gptj", "gptj", "f32", device, FloatDType::F32);
        eprintln!("{name} tiny-gptj: max |Δ logprob| = {err:e}");
        assert!(err < 1e-4, "{name} tiny-gptj: max |Δ logprob| = {err:e}");
        assert!(top, "{name} tiny-gptj: top-10 differs");
    });
}

/// A bf16 file is widened exactly (against transformers on the same bf16 weights in f32), and a
/// Qwen2 file (q/k/v biases, f16) likewise.
#[test]
fn half_precision_files_match_transformers() {
    on_all_devices(|name, device| {
        let (err, top) = compare(
            "tiny-llama2-bf16",
            "llama2",
            "bf16_weights_in_f32",
            device,
            FloatDType::F32,
        );
        eprintln!("{name} bf16: max |Δ logprob| = {err:e}");
        assert!(err < 1e-4 && top, "{name}: bf16 file, max |Δ| = {err:e}, top-10 {top}");
        let (err, top) = compare("tiny-qwen2", "qwen2", "f16_weights_in_f32", device, FloatDType::F32);
        eprintln!("{name} qwen2 f16: max |Δ logprob| = {err:e}");
        assert!(
            err < 1e-4 && top,
            "{name}: qwen2 f16 file, max |Δ| = {err:e}, top-10 {top}"
        );
    });
    // Stored in bf16 on the CPU backend: products in bf16, so only the ranking is asked for.
    let device = Device::flex();
    if device.supports_dtype(FloatDType::BF16) {
        let (err, top) = compare(
            "tiny-llama2-bf16",
            "llama2",
            "bf16_weights_in_f32",
            &device,
            FloatDType::BF16,
        );
        eprintln!("cpu, resident bf16: max |Δ logprob| = {err:e}");
        // bf16 keeps 8 significant bits and the activations are rounded to it at every product;
        // on this fixture's sharp logits (magnitude ~20) that moves log-probs by up to ~0.5
        // (measured 0.46), where wrong weights move them by several units.
        assert!(err < 1.0, "resident bf16: max |Δ| = {err:e} (top-10 {top})");
    }
}

/// transformers' ids for whole texts (BOS first, byte fallback for the emoji), and the pieces the
/// editors tokenise apart — prefix, `" " + subject`, suffix, `" " + target` — join to the ids of
/// the whole text, with the subject's last token where the offsets put it: subject at the start,
/// middle and end, for the SentencePiece-style and the byte-level tokenizer.
#[test]
fn tokenizers_match_and_subject_pieces_join() {
    let r = reference();
    for (dir, family) in [("tiny-llama2", "llama2"), ("tiny-llama3", "llama3")] {
        let tok = load_model_dir(&fixture(dir), &Device::flex()).unwrap().tokenizer;
        assert!(tok.bos_id().is_some(), "{dir}: a BOS is prepended");
        let cases = &r[family]["tokenizer"];
        for t in cases["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            assert_eq!(tok.encode(text).unwrap(), ids(&t["ids"]), "{dir}: {text:?}");
        }
        for c in cases["subjects"].as_array().unwrap() {
            let (template, subject) = (c["template"].as_str().unwrap(), c["subject"].as_str().unwrap());
            let p = subject_prompt(&tok, template, subject).unwrap();
            assert_eq!(p.ids, ids(&c["ids"]), "{dir}: {template:?} with {subject:?}");
            assert_eq!(
                p.subject_last,
                c["subject_last"].as_u64().unwrap() as usize,
                "{dir}: {subject:?}"
            );
            let target = format!(" {}", c["target"].as_str().unwrap());
            assert_eq!(
                tok.encode_continuation(&target).unwrap(),
                ids(&c["target_ids"]),
                "{dir}: target {target:?}"
            );
        }
    }
}

/// The config picks the family; an unknown family is refused by name, and a Llama config whose
/// heads do not divide is refused before anything is read.
#[test]
fn configs_pick_the_family_and_refuse_what_does_not_fit() {
    let text = std::fs::read_to_string(fixture("tiny-llama3/config.json")).unwrap();
    let c = ModelConfig::from_json(&text).unwrap();
    assert_eq!(
        (c.model_type(), c.n_layer(), c.d_model(), c.d_inner()),
        ("llama", 3, 64, 64)
    );
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["model_type"] = "falcon".into();
    let err = ModelConfig::from_json(&json.to_string()).unwrap_err().to_string();
    assert!(
        err.contains("falcon") && err.contains("gptj") && err.contains("llama"),
        "{err}"
    );
    let gptj = std::fs::read_to_string(fixture("tiny-gptj/config.json")).unwrap();
    let c = ModelConfig::from_json(&gptj).unwrap();
    assert_eq!(
        (c.model_type(), c.d_inner(), c.edited_matrix()),
        ("gptj", 256, "mlp.fc_out")
    );
    json["model_type"] = "llama".into();
    json["num_key_value_heads"] = 3.into();
    let err = ModelConfig::from_json(&json.to_string()).unwrap_err().to_string();
    assert!(err.contains("num_key_value_heads"), "{err}");
}

fn texts() -> Vec<String> {
    std::fs::read_to_string(fixture("wikitext-excerpt.txt"))
        .unwrap()
        .lines()
        .filter(|l| l.trim().len() > 40)
        .take(64)
        .map(String::from)
        .collect()
}

/// ROME, MEMIT and EMMET edits of a Llama and a GPT-J: each raises P(target) at the rewrite prompt
/// by over 10³ (the value's NLL falls, and the inserted value carries it), changes only `down_proj` of
/// the planned layers, and undo restores it. On the Llama-3 shape, whose `down_proj` is square,
/// so a transposed Δ would still fit and go unseen by shape checks but not by P(target).
///
/// The fixture is random with sharp logits: P(target) starts near 10⁻¹³, and 25 steps do not make
/// the target top-1 (transformers' flat init is no better: its attention carries δ from the
/// subject to the last token too weakly to move it). That an edit takes on a model that knows
/// facts is for a trained fixture.
#[test]
fn rome_memit_emmet_edit_a_llama() {
    on_all_devices(|name, device| {
        for dir in ["tiny-llama3", "tiny-gptj"] {
            edit_family(name, device, dir);
        }
    });
}

fn edit_family(name: &str, device: &Device, dir: &str) {
    {
        let m = load_model_dir(&fixture(dir), device).unwrap();
        let mut e = Editor::new(m.model, m.tokenizer);
        let seqs: Vec<Vec<u32>> = texts()
            .iter()
            .map(|t| e.tokenizer().encode(t).unwrap().into_iter().take(48).collect())
            .collect();
        e.collect_statistics(&seqs, &[0, 1], 8).unwrap();
        let request = EditRequest::new("{} is located in the city of", "The Eiffel Tower", "Rome").unwrap();
        for (algorithm, layers) in [
            (Algorithm::Rome, vec![1]),
            (Algorithm::Memit, vec![0, 1]),
            (Algorithm::Emmet, vec![1]),
        ] {
            let overrides = Overrides {
                layers: Some(layers.clone()),
                lambda: Some(10.0),
                // transformers' init leaves the MLP outputs tiny (‖v‖ ≈ 0.05), so the paper's clamp
                // of 4‖v‖ would keep δ from moving anything: the clamp is lifted here.
                value: ValueOverrides {
                    steps: Some(25),
                    clamp_norm_factor: Some(1000.0),
                    ..Default::default()
                },
                templates: Some(TemplateChoice::Bare),
                ..Default::default()
            };
            let plan = e.plan(algorithm, &overrides).unwrap();
            let before: Vec<Vec<f32>> = (0..3)
                .map(|l| {
                    e.model()
                        .edited_weight(l)
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .unwrap()
                })
                .collect();
            let report = block_on(e.edit(std::slice::from_ref(&request), &plan, |_| {})).unwrap();
            let t = &report.targets[0];
            let nll: Vec<f32> = report.losses[0].iter().map(|l| l.nll).collect();
            eprintln!(
                "{name} {dir} {algorithm:?}: P(target) {:e} → {:e}; NLL {nll:?}",
                t.before, t.after
            );
            assert!(
                t.after > 1e3 * t.before && nll.last() < nll.first(),
                "{name} {dir} {algorithm:?}: P(target) {:e} → {:e}, NLL {nll:?}",
                t.before,
                t.after
            );
            for (l, b) in before.iter().enumerate() {
                let now: Vec<f32> = e
                    .model()
                    .edited_weight(l)
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap();
                assert_eq!(
                    now != *b,
                    layers.contains(&l),
                    "{name} {dir} {algorithm:?}: layer {l} changed?"
                );
            }
            e.undo();
            let back: Vec<f32> = e
                .model()
                .edited_weight(layers[0])
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(back, before[layers[0]], "{name} {dir} {algorithm:?}: undo is exact");
        }
    }
}

/// A Llama and a GPT-J written back (`[out, in]` projections, untied heads, GPT-J's head bias;
/// f32, f16 and bf16) load to the same logits: bit for bit in f32, to the rounding of the half
/// dtypes otherwise.
#[test]
fn families_save_and_reload() {
    for dir in ["tiny-llama2", "tiny-gptj"] {
        save_and_reload(dir);
    }
}

fn save_and_reload(name: &str) {
    use pmedit_engine::save::{WeightDtype, model_side_files, write_model_files};
    let device = Device::flex();
    let src = fixture(name);
    let m = load_model_dir(&src, &device).unwrap();
    let ids = m
        .tokenizer
        .encode("The Eiffel Tower is located in the city of")
        .unwrap();
    let logits = |model: &Model| -> Vec<f32> {
        model
            .forward(token_tensor(&ids, &device))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let want = logits(&m.model);
    // f16 keeps 11 significant bits (relative 4.9e-4 per weight); on these fixtures' sharp logits
    // (magnitude ~20) that moves them by up to ~0.1. bf16 keeps 8 (up to ~0.6 measured).
    for (dtype, tolerance) in [
        (WeightDtype::F32, 0.0f32),
        (WeightDtype::F16, 0.2),
        (WeightDtype::BF16, 1.5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_model_files(&m.model, dir.path(), &model_side_files(&src).unwrap(), dtype).unwrap();
        let back = load_model_dir(dir.path(), &device).unwrap();
        let got = logits(&back.model);
        let worst = got.iter().zip(&want).fold(0f32, |w, (a, b)| w.max((a - b).abs()));
        eprintln!("{name} {dtype:?}: max |Δ logit| = {worst}");
        assert!(worst <= tolerance, "{name} {dtype:?}: max |Δ logit| = {worst}");
        assert_eq!(back.dtype, dtype.name(), "{name}: written in {dtype:?}");
    }
}

/// The page's path — config, tokenizer and `model.safetensors` as bytes — loads a Llama and a
/// GPT-J to the same network as a model directory does.
#[test]
fn families_load_from_bytes_as_the_page_does() {
    let device = Device::flex();
    for dir in ["tiny-llama3", "tiny-gptj", "tiny-qwen2"] {
        let read = |f: &str| std::fs::read(fixture(dir).join(f)).unwrap();
        let tok = pmedit_engine::tokenizer::Gpt2Tokenizer::from_tokenizer_json(&read("tokenizer.json")).unwrap();
        let parts =
            pmedit_engine::load::load_model_bytes(dir, &read("config.json"), tok, read("model.safetensors"), &device)
                .unwrap();
        let m = load_model_dir(&fixture(dir), &device).unwrap();
        let ids = m.tokenizer.encode("In 1905, Albert Einstein published").unwrap();
        let logits = |model: &Model| -> Vec<f32> {
            model
                .forward(token_tensor(&ids, &device))
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(parts.config.model_type(), m.config.model_type(), "{dir}");
        assert_eq!(logits(&parts.model), logits(&m.model), "{dir}");
    }
}

/// Incremental decoding (the KV cache, RoPE at positions after the cached ones, grouped-query
/// heads cached before they are shared) gives the logits of the full pass.
#[test]
fn cached_decoding_equals_the_full_pass() {
    on_all_devices(|name, device| {
        for dir in ["tiny-llama3", "tiny-gptj"] {
            let m = load_model_dir(&fixture(dir), device).unwrap();
            let ids = m
                .tokenizer
                .encode("The Eiffel Tower is located in the city of")
                .unwrap();
            let full: Vec<f32> = m
                .model
                .forward(token_tensor(&ids, device))
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .unwrap();
            let vocab = m.model.vocab_size();
            let mut cache = Default::default();
            let split = ids.len() - 3;
            m.model.forward_cached(token_tensor(&ids[..split], device), &mut cache);
            for (i, &id) in ids.iter().enumerate().skip(split) {
                let step: Vec<f32> = m
                    .model
                    .forward_cached(token_tensor(&[id], device), &mut cache)
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec()
                    .unwrap();
                let want = &full[i * vocab..(i + 1) * vocab];
                let worst = step.iter().zip(want).fold(0f32, |w, (a, b)| w.max((a - b).abs()));
                assert!(worst < 1e-3, "{name} {dir}: position {i}, max |Δ logit| = {worst}");
            }
        }
    });
}
