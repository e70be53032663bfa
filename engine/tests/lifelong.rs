//! The options for lifelong (sequential) editing (docs/MATH.md §11) on facts-gpt2: most-probable
//! early stopping, norm-anchored values, and `preserve_edits` for the λ·C0 objectives.

mod common;

use burn::prelude::*;
use common::{download, fixture, on_all_devices};
use pmedit_engine::block_on;
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::edit::values::{ValueHparams, compute_value};
use pmedit_engine::edit::{Algorithm, EditRequest, Editor, Overrides, TemplateChoice};
use pmedit_engine::edit::{ContextTemplates, presets::preset};
use pmedit_engine::load::load_model_dir;
use pmedit_engine::model::Site;

fn facts() -> Vec<EditRequest> {
    let text = std::fs::read_to_string(fixture("facts-gpt2/facts.json")).unwrap();
    EditRequest::parse_many(&text, "facts.json").unwrap()
}

fn norm(t: Tensor<1>) -> f64 {
    download(t.unsqueeze_dim(0))
        .data
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
}

/// `stop_at_top1` ends the optimisation in fewer steps than the loss threshold alone, and
/// `norm_anchor` returns a value of the same norm as v_init.
#[test]
fn early_stopping_and_norm_anchoring() {
    let request = facts().remove(0);
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture("facts-gpt2"), device).unwrap();
        let hp = preset(Algorithm::Rome, &m.config);
        let layer = hp.layers[0];
        let run = |value: ValueHparams| {
            block_on(compute_value(
                &m.model,
                &m.tokenizer,
                &request,
                &ContextTemplates::bare(),
                layer,
                Site::MlpOut,
                &value,
                |_| {},
            ))
            .unwrap()
        };
        let plain = run(hp.value);
        let early = run(ValueHparams {
            stop_at_top1: true,
            ..hp.value
        });
        eprintln!(
            "{name}: {} steps to the loss threshold, {} to the top-1 stop",
            plain.losses.len(),
            early.losses.len()
        );
        assert!(early.losses.len() < plain.losses.len(), "{name}: no earlier stop");
        // It stopped because the target became the most probable token: its NLL then is below
        // the NLL of an even split between two tokens.
        assert!(early.losses.last().unwrap().nll < 2f32.ln() * 2.0, "{name}");
        let anchored = run(ValueHparams {
            norm_anchor: true,
            ..hp.value
        });
        let (n0, n1) = (norm(anchored.v_init.clone()), norm(anchored.v.clone()));
        assert!((n1 - n0).abs() < 1e-4 * n0, "{name}: ‖v‖ {n1} vs ‖v_init‖ {n0}");
        assert!(
            (norm(plain.v.clone()) - n0).abs() > 1e-3 * n0,
            "{name}: without anchoring the norm changes"
        );
    });
}

/// With `preserve_edits`, EMMET's second batch is solved with λ·C0 + K_p K_pᵀ: the editor keeps
/// the first batch's keys, the solve differs from one without them, and undo forgets them.
#[test]
fn preserve_edits_adds_earlier_keys_to_the_preservation_term() {
    let all = facts();
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture("facts-gpt2"), device).unwrap();
        let text = std::fs::read_to_string(fixture("wikitext-excerpt.txt")).unwrap();
        let ids = m.tokenizer.encode(&text).unwrap();
        let mut st = vec![LayerStats::new(1, m.config.d_inner(), device)];
        accumulate(&m.model, &windows(&ids, 64), 16, &mut st).unwrap();
        let deltas = |preserve: bool| {
            let mut e = Editor::new(m.model.clone(), m.tokenizer.clone());
            e.set_statistics(st.clone()).unwrap();
            let plan = e
                .plan(
                    Algorithm::Emmet,
                    &Overrides {
                        layers: Some(vec![1]),
                        templates: Some(TemplateChoice::Bare),
                        preserve_edits: preserve,
                        ..Default::default()
                    },
                )
                .unwrap();
            block_on(e.edit(&all[..1], &plan, |_| {})).unwrap();
            assert_eq!(e.edited_keys(1).is_some(), preserve, "{name}");
            let second = block_on(e.edit(&all[1..2], &plan, |_| {})).unwrap();
            e.undo();
            assert!(e.edited_keys(1).is_none(), "{name}: undo keeps K_p");
            download(second.deltas[0].delta.clone())
        };
        let (with, without) = (deltas(true), deltas(false));
        let diff: f64 = with
            .data
            .iter()
            .zip(&without.data)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let size: f64 = without.data.iter().map(|a| a * a).sum::<f64>().sqrt();
        eprintln!("{name}: ‖Δ₂(K_p) − Δ₂‖ / ‖Δ₂‖ = {:.3e}", diff / size);
        assert!(diff > 1e-3 * size, "{name}: K_p changed nothing");
    });
}
