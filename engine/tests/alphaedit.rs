//! AlphaEdit (docs/MATH.md §11) against an independent float64 numpy implementation of the
//! authors' formula (tests/fixtures/generate_alphaedit_reference.py) on real activations of
//! facts-gpt2, its null-space property, sequential editing, and an end-to-end edit through the
//! editor.

mod common;

use burn::prelude::*;
use common::{download, fixture, on_all_devices, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::edit::values::target_ids;
use pmedit_engine::edit::{Algorithm, EditRequest, Editor, NullSpace, Overrides, TemplateChoice};
use pmedit_engine::linalg::host::Mat;
use pmedit_engine::load::load_model_dir;
use pmedit_engine::load::stats_file::stats_from_bytes;
use pmedit_engine::predict::{encode_prompt, next_token_logprobs};

fn matrix(v: &serde_json::Value) -> Mat {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(common::floats).collect();
    Mat::new(rows.len(), rows[0].len(), rows.concat())
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("alphaedit/reference.json")).unwrap()).unwrap()
}

/// The fixture's C0 (the mean, as stored) on `device`.
fn c0(device: &Device) -> Tensor<2> {
    let bytes = std::fs::read(fixture("alphaedit/stats.safetensors")).unwrap();
    let (stats, _) = stats_from_bytes(&bytes, "stats.safetensors", device).unwrap();
    stats[0].c0().unwrap()
}

fn frobenius(m: &Mat) -> f64 {
    m.data.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn alphaedit_matches_the_numpy_reference() {
    let r = reference();
    let (threshold, l2) = (r["threshold"].as_f64().unwrap(), r["l2"].as_f64().unwrap());
    let keys = matrix(&r["keys"]).t(); // [n, E]
    let resid = matrix(&r["residuals"]); // [E, d]
    on_all_devices(|name, device| {
        let f32 = burn::tensor::DType::F32;
        let ns = block_on(NullSpace::new(c0(device), threshold)).unwrap();
        assert_eq!(
            ns.rank() as u64,
            r["rank"].as_u64().unwrap(),
            "{name}: null-space dimension"
        );
        let k = upload(&keys, device, f32);
        let res = upload(&resid, device, f32);
        let check = |got: Tensor<2>, want: &str| {
            let err = rel_err(&download(got), &matrix(&r[want]));
            eprintln!("{name}: {want} relative error {err:.2e}");
            assert!(err < 1e-3, "{name}: {want}: {err:e}");
        };
        // One batch of both requests, no earlier edits.
        check(
            block_on(ns.solve(k.clone(), res.clone(), None, l2)).unwrap(),
            "delta_batch",
        );
        // Sequential: the first request, then the second with K_p K_pᵀ of the first.
        let (k0, k1) = (k.clone().narrow(1, 0, 1), k.clone().narrow(1, 1, 1));
        let (r0, r1) = (res.clone().narrow(0, 0, 1), res.clone().narrow(0, 1, 1));
        check(block_on(ns.solve(k0.clone(), r0, None, l2)).unwrap(), "delta_first");
        let kp = k0.clone().matmul(k0.transpose());
        check(block_on(ns.solve(k1, r1, Some(&kp), l2)).unwrap(), "delta_second");
        // P = I: the ridge least-squares form (eq. A4).
        let all = block_on(NullSpace::new(c0(device), f64::INFINITY)).unwrap();
        assert_eq!(all.rank(), all.n());
        check(block_on(all.solve(k, res, None, l2)).unwrap(), "delta_identity");
    });
}

/// Eq. A1: Δ lies in the span of C0's eigenvectors below the threshold, so ‖C0 Δ‖ ≤ threshold·‖Δ‖,
/// far below ‖C0‖‖Δ‖; and a second batch solved with the first batch's keys barely moves their
/// outputs, much less than without them.
#[test]
fn the_update_leaves_preserved_and_earlier_keys_alone() {
    let r = reference();
    let (threshold, l2) = (r["threshold"].as_f64().unwrap(), r["l2"].as_f64().unwrap());
    on_all_devices(|name, device| {
        let f32 = burn::tensor::DType::F32;
        let c0 = c0(device);
        let ns = block_on(NullSpace::new(c0.clone(), threshold)).unwrap();
        let k = upload(&matrix(&r["keys"]).t(), device, f32);
        let res = upload(&matrix(&r["residuals"]), device, f32);
        let delta = block_on(ns.solve(k.clone(), res.clone(), None, l2)).unwrap();
        let c0_norm = frobenius(&download(c0.clone()));
        assert!(c0_norm > 0.0);
        let d_norm = frobenius(&download(delta.clone()));
        let moved = frobenius(&download(c0.clone().matmul(delta)));
        eprintln!(
            "{name}: ‖C0Δ‖ = {moved:.3e}, threshold·‖Δ‖ = {:.3e}, ‖C0‖‖Δ‖ = {:.3e}",
            threshold * d_norm,
            c0_norm * d_norm
        );
        assert!(moved <= threshold * d_norm * 1.01, "{name}: ‖C0Δ‖ {moved:e}");
        // The unconstrained ridge update (P = I) moves C0's directions far more.
        let all = block_on(NullSpace::new(c0.clone(), f64::INFINITY)).unwrap();
        let free = download(block_on(all.solve(k.clone(), res.clone(), None, l2)).unwrap());
        let moved_free = frobenius(&download(c0.clone().matmul(upload(&free, device, f32))));
        eprintln!("{name}: ‖C0Δ‖ {moved:.3e} in the null space, {moved_free:.3e} with P = I");
        assert!(moved < 0.2 * moved_free, "{name}: ‖C0Δ‖ {moved:e} vs {moved_free:e}");
        // The projector is one: P² = P, symmetric, trace = rank.
        let p = download(ns.projector(device));
        let p2 = p.matmul(&p);
        assert!(rel_err(&p2, &p) < 1e-4, "{name}: P² ≠ P");
        let trace: f64 = (0..p.rows).map(|i| p[(i, i)]).sum();
        assert!((trace - ns.rank() as f64).abs() < 1e-2, "{name}: trace {trace}");

        // Sequential: how much does the second request's update move the first's output? (With a
        // ridge small against ‖Ûᵀk‖², as L2 = 10 is against GPT2-XL's keys; these keys are small.)
        let l2 = 0.1;
        let (k0, k1) = (k.clone().narrow(1, 0, 1), k.narrow(1, 1, 1));
        let r1 = res.narrow(0, 1, 1);
        let kp = k0.clone().matmul(k0.clone().transpose());
        let moved_by = |d: Tensor<2>| frobenius(&download(k0.clone().transpose().matmul(d)));
        let with = moved_by(block_on(ns.solve(k1.clone(), r1.clone(), Some(&kp), l2)).unwrap());
        let without = moved_by(block_on(ns.solve(k1, r1, None, l2)).unwrap());
        eprintln!("{name}: first key's output moved {with:.3e} with K_p, {without:.3e} without");
        assert!(with < 0.5 * without, "{name}: K_p did not protect the first edit");
    });
}

/// C0 of facts-gpt2 at `layer` over the wikitext excerpt (as the fixture's statistics).
fn layer_stats(m: &pmedit_engine::load::LoadedModel, layer: usize) -> LayerStats {
    let text = std::fs::read_to_string(fixture("wikitext-excerpt.txt")).unwrap();
    let ids = m.tokenizer.encode(&text).unwrap();
    let mut st = vec![LayerStats::new(layer, m.config.d_inner(), &m.model.device())];
    accumulate(&m.model, &windows(&ids, 64), 16, &mut st).unwrap();
    st.remove(0)
}

fn top(e: &Editor, prompt: &str) -> usize {
    let lp = block_on(next_token_logprobs(
        e.model(),
        &encode_prompt(e.model(), e.tokenizer(), prompt).unwrap(),
    ))
    .unwrap();
    (0..lp.len()).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap()
}

/// Two batches edited one after the other through the editor with facts-gpt2's AlphaEdit preset:
/// the first fact becomes the top prediction and stays so through the second batch, the second
/// fact's target gains, the editor tracks K_p K_pᵀ, and undo forgets it.
#[test]
fn sequential_alphaedit_batches_take_and_keep_earlier_edits() {
    let text = std::fs::read_to_string(fixture("facts-gpt2/facts.json")).unwrap();
    let facts = EditRequest::parse_many(&text, "facts.json").unwrap();
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture("facts-gpt2"), device).unwrap();
        let stats = vec![layer_stats(&m, 1)];
        let mut e = Editor::new(m.model, m.tokenizer);
        e.set_statistics(stats).unwrap();
        let plan = e
            .plan(
                Algorithm::AlphaEdit,
                &Overrides {
                    templates: Some(TemplateChoice::Bare),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(plan.hparams.layers, vec![1], "{name}: the preset");
        let target = |e: &Editor, q: &EditRequest| target_ids(e.tokenizer(), q).unwrap()[0] as usize;
        let (first, second) = (&facts[0], &facts[1]);
        let report = block_on(e.edit(std::slice::from_ref(first), &plan, |_| {})).unwrap();
        assert_eq!(
            top(&e, &first.filled_prompt()),
            target(&e, first),
            "{name}: the first edit did not take"
        );
        let kp = download(e.edited_keys(1).expect("K_p of layer 1").clone());
        assert_eq!((kp.rows, kp.cols), (256, 256));
        let second_report = block_on(e.edit(std::slice::from_ref(second), &plan, |_| {})).unwrap();
        let gain = second_report.targets[0].after / second_report.targets[0].before;
        eprintln!(
            "{name}: first P {:.3} → {:.3}; second P {:.4} → {:.4}",
            report.targets[0].before,
            report.targets[0].after,
            second_report.targets[0].before,
            second_report.targets[0].after
        );
        assert!(gain > 10.0, "{name}: the second edit gained only {gain}×");
        assert_eq!(
            top(&e, &first.filled_prompt()),
            target(&e, first),
            "{name}: the second batch undid the first"
        );
        let kp2 = download(e.edited_keys(1).unwrap().clone());
        assert!(frobenius(&kp2) > frobenius(&kp), "{name}: K_p did not grow");
        e.undo();
        assert!(e.edited_keys(1).is_none(), "{name}: undo keeps K_p");
        // A threshold below every eigenvalue leaves no null space: refused before any work.
        let empty = e
            .plan(
                Algorithm::AlphaEdit,
                &Overrides {
                    nullspace_threshold: Some(1e-12),
                    templates: Some(TemplateChoice::Bare),
                    ..Default::default()
                },
            )
            .unwrap();
        let err = block_on(e.edit(std::slice::from_ref(first), &empty, |_| {}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("null space") && err.contains("--nullspace-threshold"),
            "{name}: {err}"
        );
        assert!(!e.is_edited(), "{name}");
    });
}
