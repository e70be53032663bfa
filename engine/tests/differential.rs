//! Keys, values and Δ against independent PyTorch implementations (float64, fixed templates):
//! tests/fixtures/generate_edit_reference.py on facts-gpt2, and
//! tests/fixtures/generate_family_edit_reference.py on facts-llama (Llama-2-style, SentencePiece
//! tokenizer with a BOS) and facts-gptj, which tokenises prompts whole and finds the subject's last
//! token from character offsets.

mod common;

use common::{download, fixture, on_all_devices, rel_err, upload};
use pmedit_engine::block_on;
use pmedit_engine::edit::distribute::rank_one;
use pmedit_engine::edit::keys::compute_keys;
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::edit::values::{ValueHparams, compute_value};
use pmedit_engine::edit::{ContextTemplates, EditRequest, Objective, Preservation, solve_delta};
use pmedit_engine::linalg::host::Mat;
use pmedit_engine::load::load_model_dir;
use pmedit_engine::model::Site;

fn matrix(v: &serde_json::Value) -> Mat {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(common::floats).collect();
    Mat::new(rows.len(), rows[0].len(), rows.concat())
}

fn reference(file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap()
}

#[test]
fn keys_values_and_deltas_match_pytorch_on_gpt2() {
    matches_pytorch("facts-gpt2", &reference("edit-reference.json"));
}

#[test]
fn keys_values_and_deltas_match_pytorch_on_llama() {
    matches_pytorch("facts-llama", &reference("family-edit-reference.json")["llama"]);
}

#[test]
fn keys_values_and_deltas_match_pytorch_on_gptj() {
    matches_pytorch("facts-gptj", &reference("family-edit-reference.json")["gptj"]);
}

fn matches_pytorch(model: &str, r: &serde_json::Value) {
    let layer = r["layer"].as_u64().unwrap() as usize;
    let templates: ContextTemplates =
        ContextTemplates::from_json(&serde_json::json!({"groups": r["templates"]}).to_string()).unwrap();
    let hp: ValueHparams = serde_json::from_value(r["hparams"].clone()).unwrap();
    let requests: Vec<EditRequest> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| EditRequest::from_json(v, &format!("request {i}")).unwrap())
        .collect();
    on_all_devices(|name, device| {
        let m = load_model_dir(&fixture(model), device).unwrap();
        // Keys: exact up to f32 rounding.
        let k = compute_keys(&m.model, &m.tokenizer, layer, &requests, &templates).unwrap();
        let k_host = download(k.clone().transpose());
        let err = rel_err(&k_host, &matrix(&r["keys"]));
        assert!(err < 1e-5, "{model} {name}: keys {err:e}");
        // Values: 20 Adam steps from the same start; f32 vs f64 drift stays small.
        let mut deltas = Vec::new();
        for (i, req) in requests.iter().enumerate() {
            let v = block_on(compute_value(
                &m.model,
                &m.tokenizer,
                req,
                &templates,
                layer,
                Site::MlpOut,
                &hp,
                |_| {},
            ))
            .unwrap();
            let want_init = Mat::new(1, v.v_init.dims()[0], common::floats(&r["v_init"][i]));
            let want = Mat::new(1, v.v.dims()[0], common::floats(&r["v"][i]));
            let got_init = download(v.v_init.clone().unsqueeze_dim(0));
            let got = download(v.v.clone().unsqueeze_dim(0));
            assert!(rel_err(&got_init, &want_init) < 1e-5, "{model} {name}: v_init {i}");
            let err = rel_err(&got, &want);
            eprintln!(
                "{model} {name}: value {i} relative error {err:.2e}, losses {:?}",
                v.losses.iter().map(|l| l.total).collect::<Vec<_>>()
            );
            assert!(err < 1e-3, "{model} {name}: value {i}: {err:e}");
            deltas.push(v.v - v.v_init);
        }
        // Δ from the reference's own keys and residuals, so only the solve is compared here.
        let text = std::fs::read_to_string(fixture("wikitext-excerpt.txt")).unwrap();
        let ids = m.tokenizer.encode(&text).unwrap();
        let mut st = vec![LayerStats::new(layer, m.config.d_inner(), device)];
        accumulate(&m.model, &windows(&ids, 64), 16, &mut st).unwrap();
        let pres = block_on(Preservation::new(st[0].c0().unwrap(), r["lambda"].as_f64().unwrap())).unwrap();
        let k_ref = upload(&matrix(&r["keys"]).t(), device, burn::tensor::DType::F32);
        let v_ref = matrix(&r["v"]);
        let v0_ref = matrix(&r["v_init"]);
        let resid = Mat::new(
            v_ref.rows,
            v_ref.cols,
            v_ref.data.iter().zip(&v0_ref.data).map(|(a, b)| a - b).collect(),
        );
        let r_dev = upload(&resid, device, burn::tensor::DType::F32);
        let k0 = k_ref.clone().narrow(1, 0, 1);
        let rome = download(block_on(rank_one(&pres, k0.clone(), k0, r_dev.clone().narrow(0, 0, 1))).unwrap());
        let err = rel_err(&rome, &matrix(&r["rome_delta"]));
        assert!(err < 1e-3, "{model} {name}: ROME Δ {err:e}");
        let emmet = download(
            block_on(solve_delta(
                &pres,
                Objective::Emmet {
                    alpha: r["alpha"].as_f64().unwrap(),
                },
                k_ref,
                r_dev,
            ))
            .unwrap(),
        );
        let err = rel_err(&emmet, &matrix(&r["emmet_delta"]));
        assert!(err < 1e-3, "{model} {name}: EMMET Δ {err:e}");
    });
}
