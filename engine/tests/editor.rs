//! The engine's edit pipeline (`Editor`) on the built-in demo model with its shipped statistics:
//! it computes exactly what the algorithm driver computes with λ·C0 factored by hand, undo
//! restores the weights bit for bit, λ is re-weighted without a new factorisation, a failed edit
//! changes nothing, and plans and statistics are checked against the model.

mod common;

use std::collections::HashMap;

use burn::prelude::*;
use common::{demo_dir, fixture, on_all_devices};
use pmedit_engine::block_on;
use pmedit_engine::edit::{
    Algorithm, ContextTemplates, EditRequest, Editor, Overrides, Preservation, TemplateChoice, ValueOverrides,
    apply_edits,
};
use pmedit_engine::load::load_model_dir;
use pmedit_engine::model::EditableModel;

fn editor(device: &Device) -> Editor {
    let m = load_model_dir(&demo_dir(), device).unwrap();
    let mut e = Editor::new(m.model, m.tokenizer);
    let bytes = std::fs::read(demo_dir().join("stats.safetensors")).unwrap();
    block_on(e.load_statistics(&bytes, "stats.safetensors")).unwrap();
    e
}

/// Few value steps and bare templates: these tests check the pipeline, not edit quality (and
/// lavapipe takes ≈ 2 s per value step of the demo model).
fn quick(layers: Option<Vec<usize>>, lambda: Option<f64>) -> Overrides {
    Overrides {
        layers,
        lambda,
        value: ValueOverrides {
            steps: Some(4),
            ..Default::default()
        },
        templates: Some(TemplateChoice::Bare),
        ..Default::default()
    }
}

fn request(subject: &str, target: &str) -> EditRequest {
    EditRequest::new("{} is a citizen of", subject, target).unwrap()
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// An edit through the editor equals `apply_edits` with λ·C0 factored by hand, reports target
/// probabilities, and undo restores the edited matrix bit for bit.
#[test]
fn editor_edits_like_the_driver_and_undo_restores_the_weights() {
    on_all_devices(|name, device| {
        let mut e = editor(device);
        let plan = e.plan(Algorithm::Rome, &quick(None, None)).unwrap();
        let layer = plan.hparams.layers[0];
        let original = values(e.model().edited_weight(layer));
        let requests = [request("Danielle Darrieux", "Italy")];
        let report = block_on(e.edit(&requests, &plan, |_| {})).unwrap();
        assert!(e.is_edited() && e.edited_layers() == vec![layer], "{name}");
        assert_eq!(report.targets.len(), 1, "{name}");
        let t = &report.targets[0];
        assert!(t.after > t.before, "{name}: P(target) {} → {}", t.before, t.after);
        let edited = values(e.model().edited_weight(layer));

        // The same edit with the algorithm driver and a hand-built factor.
        let mut m = load_model_dir(&demo_dir(), device).unwrap();
        let c0 = e.statistics(layer).unwrap().c0().unwrap();
        let stats = HashMap::from([(
            layer,
            block_on(Preservation::new(c0, plan.hparams.lambda)).unwrap().into(),
        )]);
        block_on(apply_edits(
            &mut m.model,
            &m.tokenizer,
            &requests,
            Algorithm::Rome,
            &plan.hparams,
            &ContextTemplates::bare(),
            &stats,
            |_| {},
        ))
        .unwrap();
        let direct = values(m.model.edited_weight(layer));
        let changed = max_rel_diff(&edited, &original);
        assert!(changed > 1e-4, "{name}: the edit changed nothing ({changed})");
        let diff = max_rel_diff(&edited, &direct);
        assert!(diff < 1e-5, "{name}: editor vs driver differ by {diff}");

        e.undo();
        assert!(!e.is_edited(), "{name}");
        assert_eq!(
            values(e.model().edited_weight(layer)),
            original,
            "{name}: undo is exact"
        );
    });
}

/// λ is the plan's: an editor that factored C0 at one λ and re-weights it for another gives the
/// Δ of an editor that factors at that λ directly (MEMIT, whose Δ depends on λ).
#[test]
fn lambda_is_reweighted_without_refactoring() {
    let device = Device::flex();
    let requests = [request("Danielle Darrieux", "Italy"), request("Toko Yasuda", "France")];
    let mut reused = editor(&device);
    let first = reused
        .plan(Algorithm::Memit, &quick(Some(vec![1]), Some(10.0)))
        .unwrap();
    block_on(reused.edit(&requests, &first, |_| {})).unwrap();
    reused.undo();
    let second = reused
        .plan(Algorithm::Memit, &quick(Some(vec![1]), Some(40.0)))
        .unwrap();
    let a = block_on(reused.edit(&requests, &second, |_| {})).unwrap();
    let mut fresh = editor(&device);
    let b = block_on(fresh.edit(&requests, &second, |_| {})).unwrap();
    let (da, db) = (values(a.deltas[0].delta.clone()), values(b.deltas[0].delta.clone()));
    let diff = max_rel_diff(&da, &db);
    assert!(diff < 1e-4, "re-weighted vs fresh factor: {diff}");
    // And λ matters here: the Δ at λ = 10 is another one.
    let mut other = editor(&device);
    let c = block_on(other.edit(&requests, &first, |_| {})).unwrap();
    assert!(max_rel_diff(&values(c.deltas[0].delta.clone()), &db) > 1e-3);
}

/// An edit that fails after Δ was applied to its first layer leaves the model exactly as it was,
/// with nothing to undo: EMMET on layers 0 and 1, where layer 1's C0 is so anisotropic
/// (diag(10⁻¹², 1, …, 1)) that the two keys' system there has no accurate digit and is refused.
#[test]
fn a_failed_edit_changes_nothing() {
    let device = Device::flex();
    let mut e = editor(&device);
    let n = e.model().key_dim();
    let mut diag = vec![0f32; n * n];
    for i in 0..n {
        diag[i * n + i] = if i == 0 { 1e-12 } else { 1.0 };
    }
    let skewed = pmedit_engine::edit::stats::LayerStats {
        layer: 1,
        sum: Tensor::<2>::from_data(TensorData::new(diag, [n, n]), &device),
        count: 1,
    };
    e.set_statistics(vec![skewed]).unwrap();
    let plan = e.plan(Algorithm::Emmet, &quick(Some(vec![0, 1]), None)).unwrap();
    let before: Vec<Vec<f32>> = (0..e.model().n_layer())
        .map(|l| values(e.model().edited_weight(l)))
        .collect();
    let requests = [request("Danielle Darrieux", "Italy"), request("Toko Yasuda", "France")];
    let mut layers_solved = Vec::new();
    let err = block_on(e.edit(&requests, &plan, |ev| {
        if let pmedit_engine::edit::EditEvent::Layer { layer } = ev {
            layers_solved.push(layer);
        }
    }))
    .unwrap_err();
    assert_eq!(err.kind(), "numerical", "{err}");
    assert_eq!(layers_solved, vec![0, 1], "layer 0 was edited before layer 1 failed");
    assert!(!e.is_edited());
    for (l, w) in before.iter().enumerate() {
        assert!(values(e.model().edited_weight(l)) == *w, "layer {l} was left changed");
    }
}

/// Plans come from the presets, with the overrides checked against the model in one place.
#[test]
fn plans_resolve_presets_and_refuse_bad_overrides() {
    let e = editor(&Device::flex());
    let preset = pmedit_engine::edit::presets::preset_for(Algorithm::Emmet, 16, 128);
    let plan = e.plan(Algorithm::Emmet, &Overrides::default()).unwrap();
    assert_eq!(plan.hparams.layers, preset.layers);
    assert_eq!(plan.hparams.lambda, preset.lambda);
    assert_eq!(plan.templates, TemplateChoice::Sampled { seed: 0 });
    let plan = e
        .plan(Algorithm::Emmet, &quick(Some(vec![1, 0, 1]), Some(5.0)))
        .unwrap();
    assert_eq!(plan.hparams.layers, vec![0, 1]);
    assert_eq!((plan.hparams.lambda, plan.hparams.value.steps), (5.0, 4));
    let refused = |o: Overrides| e.plan(Algorithm::Emmet, &o).unwrap_err().to_string();
    assert!(refused(quick(Some(vec![16]), None)).contains("layer 16 is out of range (the model has layers 0–15)"));
    assert!(refused(quick(Some(vec![]), None)).contains("no layer"));
    assert!(refused(quick(None, Some(0.0))).contains("λ must be positive"));
    assert!(refused(quick(None, Some(f64::NAN))).contains("λ must be positive"));
    let mut zero_steps = quick(None, None);
    zero_steps.value.steps = Some(0);
    assert!(refused(zero_steps).contains("at least one step"));
}

/// Statistics of another model are refused (fingerprint), as are statistics whose key dimension
/// or layer does not fit; an edit at a layer without statistics says which layers have them.
#[test]
fn statistics_are_checked_against_the_model() {
    let device = Device::flex();
    let m = load_model_dir(&fixture("facts-gpt2"), &device).unwrap();
    let mut other = Editor::new(m.model, m.tokenizer);
    let bytes = std::fs::read(demo_dir().join("stats.safetensors")).unwrap();
    let err = block_on(other.load_statistics(&bytes, "demo-stats"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("computed on another model"), "{err}");

    let mut e = editor(&device);
    let wrong = pmedit_engine::edit::stats::LayerStats::new(0, 7, &device);
    let err = e.set_statistics(vec![wrong]).unwrap_err().to_string();
    assert!(err.contains("7×7") && err.contains("512 dimensions"), "{err}");
    let far = pmedit_engine::edit::stats::LayerStats::new(99, 512, &device);
    assert!(e.set_statistics(vec![far]).is_err());
    let plan = e.plan(Algorithm::Rome, &quick(Some(vec![5]), None)).unwrap();
    let err = block_on(e.edit(&[request("Danielle Darrieux", "Italy")], &plan, |_| {}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no C0 statistics for layer 5") && err.contains("[0, 1]"),
        "{err}"
    );
    // The same refusal before any work, for front ends that predict around an edit.
    assert_eq!(e.check_plan(&plan).unwrap_err().to_string(), err);
    let covered = e.plan(Algorithm::Rome, &quick(Some(vec![1]), None)).unwrap();
    e.check_plan(&covered).unwrap();
}
