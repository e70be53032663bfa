//! `pmedit random-model`: a model of a real GPT-2 shape that pmedit loads and predicts with, with
//! transformers' initialisation, the same bytes for the same seed, in f32 or f16.

use std::path::Path;

use pmedit_engine::load::{FileSource, SafetensorsFile};

mod common;
use common::pmedit;

/// Mean and standard deviation of a tensor of the model in `dir`.
fn moments(dir: &Path, name: &str) -> (f64, f64) {
    let mut file = SafetensorsFile::open(FileSource::open(&dir.join("model.safetensors")).unwrap()).unwrap();
    let (v, _) = file.read_f32(name).unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Two blocks of GPT-2 small's width in f16: the parameter count of that shape, loadable and
/// predicting, N(0, 0.02) weights with the residual projections at 0.02/√(2·2), LayerNorms at 1,
/// the same file for the same seed and another for another seed.
#[test]
fn random_models_have_the_shape_and_initialisation_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("small-2");
    let write = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "--dtype",
            "f16",
            "random-model",
            "--shape",
            "gpt2-small",
            "--n-layer",
            "2",
        ];
        args.extend_from_slice(&["--seed", seed, "--out", out.to_str().unwrap(), "--json"]);
        args.extend_from_slice(extra);
        let (ok, stdout, err) = pmedit(&args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        (v, std::fs::read(out.join("model.safetensors")).unwrap())
    };
    let (report, first) = write("7", &[]);
    // wte + wpe + 2 blocks of 12·d² + 13·d + ln_f.
    let d = 768u64;
    let params = 50257 * d + 1024 * d + 2 * (12 * d * d + 13 * d) + 2 * d;
    assert_eq!(report["parameters"], params);
    assert_eq!(first.len() as u64, report["weights_bytes"].as_u64().unwrap());
    assert!(first.len() as u64 > 2 * params, "f16 weights plus the header");

    let (ok, info, err) = pmedit(&["--device", "cpu", "info", "--model", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        (info["parameters"].as_u64(), info["dtype"].as_str()),
        (Some(params), Some("F16"))
    );
    let (ok, top, err) = pmedit(&[
        "--device",
        "cpu",
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--prompt",
        "The Eiffel Tower is in",
        "--json",
    ]);
    assert!(ok && top.contains("logprob"), "{err}");

    for (name, want) in [
        ("transformer.wte.weight", 0.02),
        ("transformer.h.0.mlp.c_fc.weight", 0.02),
        // 0.02 / √(2 · n_layer) with n_layer = 2.
        ("transformer.h.1.mlp.c_proj.weight", 0.01),
        ("transformer.h.1.attn.c_proj.weight", 0.01),
    ] {
        let (mean, std) = moments(&out, name);
        assert!(mean.abs() < 1e-3, "{name}: mean {mean}");
        assert!((std / want - 1.0).abs() < 0.02, "{name}: std {std}, want {want}");
    }
    assert_eq!(moments(&out, "transformer.ln_f.weight"), (1.0, 0.0));
    assert_eq!(moments(&out, "transformer.h.0.attn.c_attn.bias"), (0.0, 0.0));

    let (_, again) = write("7", &["--overwrite"]);
    assert!(again == first, "the same seed writes the same file");
    let (_, other) = write("8", &["--overwrite"]);
    assert!(other != first, "another seed writes another file");
    let (ok, _, err) = pmedit(&["random-model", "--shape", "gpt2-small", "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("--overwrite"), "{err}");
}

/// Loading holds one copy of the weights: the peak resident memory of `pmedit info` on a
/// GPT-2-small-shaped model (124 M parameters) stays within 1.15× its weights file in f32, and
/// with `--dtype f16` (matrices converted as they are read) within 1.15× half of it plus the
/// binary's own footprint.
#[test]
fn loading_holds_one_copy_of_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("small");
    let (ok, _, err) = pmedit(&["random-model", "--shape", "gpt2-small", "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let file = std::fs::metadata(out.join("model.safetensors")).unwrap().len() as f64;
    let peak = |dtype: &str| {
        let (ok, info, err) = pmedit(&[
            "--device",
            "cpu",
            "--dtype",
            dtype,
            "info",
            "--model",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{err}");
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        info["peak_memory_bytes"].as_f64()
    };
    let Some(f32_peak) = peak("f32") else {
        eprintln!("no peak memory figure on this platform: skipped");
        return;
    };
    // What the process holds before any weight: the binary, the tokenizer, the allocator.
    let (ok, base, err) = pmedit(&["--device", "cpu", "info", "--model", "/nonexistent", "--json"]);
    assert!(!ok, "{base}{err}");
    eprintln!("weights {:.0} MB; peak f32 {:.0} MB", file / 1e6, f32_peak / 1e6);
    assert!(f32_peak <= 1.15 * file, "f32: peak {f32_peak} for a {file}-byte file");
    let f16_peak = peak("f16").unwrap();
    eprintln!("peak f16 {:.0} MB", f16_peak / 1e6);
    assert!(
        f16_peak <= 1.15 * file / 2.0 + 60e6,
        "f16: peak {f16_peak} for {} bytes of f16 weights",
        file / 2.0
    );
}
