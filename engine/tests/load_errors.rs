//! Bad model directories give typed errors naming what to fix, never a panic.

mod common;

use std::path::Path;

use burn::prelude::*;
use common::{fixture, floats, reference};
use pmedit_engine::EngineError;
use pmedit_engine::load::load_model_dir;
use safetensors::tensor::{Dtype, TensorView};

/// A copy of the tiny f32 fixture in a temp dir (config + tokenizer; weights written by the test).
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(fixture("tiny-gpt2").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Rewrites the fixture's tensors through `edit` (name, dtype, shape, bytes) into `out`.
fn rewrite(out: &Path, edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>) {
    let bytes = std::fs::read(fixture("tiny-gpt2/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| {
            let (d, s, b) = edit(&n, v.dtype(), v.shape().to_vec(), v.data().to_vec())?;
            Some((n, d, s, b))
        })
        .collect();
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
}

fn load_err(dir: &Path) -> EngineError {
    load_model_dir(dir, &Device::flex()).expect_err("loading must fail")
}

#[test]
fn truncated_file_is_refused() {
    let dir = scratch();
    let bytes = std::fs::read(fixture("tiny-gpt2/model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, EngineError::Safetensors { reason, .. } if reason.contains("truncated")),
        "{err}"
    );
}

#[test]
fn header_larger_than_file_is_refused() {
    let dir = scratch();
    let mut bytes = 5000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, EngineError::Safetensors { reason, .. } if reason.contains("larger than the file")),
        "{err}"
    );
}

#[test]
fn garbage_header_is_refused() {
    let dir = scratch();
    let mut bytes = 10u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"not json!!");
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    assert!(matches!(load_err(dir.path()), EngineError::Safetensors { .. }));
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = scratch();
    rewrite(dir.path(), |n, d, s, b| {
        let s = if n.ends_with("h.1.mlp.c_fc.weight") {
            vec![s[1], s[0]]
        } else {
            s
        };
        Some((d, s, b))
    });
    match load_err(dir.path()) {
        EngineError::ShapeMismatch { name, expected, found } => {
            assert!(name.ends_with("h.1.mlp.c_fc.weight"));
            assert_eq!(expected, vec![16, 64]);
            assert_eq!(found, vec![64, 16]);
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = scratch();
    rewrite(dir.path(), |n, d, s, b| {
        (!n.ends_with("ln_f.bias")).then_some((d, s, b))
    });
    assert!(matches!(load_err(dir.path()), EngineError::MissingTensor { name, .. } if name == "ln_f.bias"));
}

#[test]
fn integer_dtype_is_refused() {
    let dir = scratch();
    rewrite(dir.path(), |n, d, s, b| {
        let d = if n.ends_with("wpe.weight") { Dtype::I32 } else { d };
        Some((d, s, b))
    });
    assert!(matches!(load_err(dir.path()), EngineError::UnsupportedDtype { dtype, .. } if dtype == "I32"));
}

#[test]
fn non_finite_weights_are_refused() {
    let dir = scratch();
    rewrite(dir.path(), |n, d, s, mut b| {
        if n.ends_with("h.0.ln_1.weight") {
            b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        Some((d, s, b))
    });
    let err = load_err(dir.path());
    assert!(err.to_string().contains("non-finite"), "{err}");
}

#[test]
fn config_that_is_not_gpt2_is_refused() {
    let dir = scratch();
    std::fs::copy(
        fixture("tiny-gpt2/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.replace("\"gpt2\"", "\"llama\"")).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, EngineError::Config { reason, .. } if reason.contains("llama")),
        "{err}"
    );
    std::fs::write(dir.path().join("config.json"), "{\"n_embd\": 16").unwrap();
    assert!(matches!(load_err(dir.path()), EngineError::Config { .. }));
}

#[test]
fn missing_files_are_named() {
    let dir = scratch();
    assert!(matches!(load_err(dir.path()), EngineError::MissingFile { what, .. } if what == "weights"));
    std::fs::copy(
        fixture("tiny-gpt2/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("merges.txt")).unwrap();
    assert!(matches!(load_err(dir.path()), EngineError::MissingFile { what, .. } if what == "tokenizer"));
    assert!(matches!(
        load_err(&dir.path().join("nope")),
        EngineError::MissingFile { .. }
    ));
}

/// HF Conv1D stores `[in, out]`; a square `attn.c_proj` loaded transposed would have the right
/// shape and silently wrong values. The first row of the file must be the first row in burn.
#[test]
fn square_attention_projection_is_not_transposed() {
    let r = reference();
    let m = load_model_dir(&fixture("tiny-gpt2-hub"), &Device::flex()).unwrap();
    let w = m.model.h[0].attn.c_proj.weight.val();
    let row: Vec<f32> = w
        .clone()
        .narrow(0, 0, 1)
        .narrow(1, 0, 4)
        .into_data()
        .try_to_vec()
        .unwrap();
    let col: Vec<f32> = w.narrow(1, 0, 1).narrow(0, 0, 4).into_data().try_to_vec().unwrap();
    for (got, want) in row.iter().zip(floats(&r["attn_c_proj_h0_first_row"])) {
        assert!((*got as f64 - want).abs() < 1e-7);
    }
    for (got, want) in col.iter().zip(floats(&r["attn_c_proj_h0_first_col"])) {
        assert!((*got as f64 - want).abs() < 1e-7);
    }
}

/// The in-memory loader (the browser's) builds the same model as the directory loader, and
/// names the bad file when the config is not GPT-2 or the tokenizer is too large.
#[test]
fn loading_from_bytes_matches_the_directory_loader() {
    use pmedit_engine::load::load_model_bytes;
    use pmedit_engine::tokenizer::Gpt2Tokenizer;
    common::on_all_devices(|name, device| {
        let dir = fixture("tiny-gpt2");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let tok = || Gpt2Tokenizer::from_vocab_merges(&read("vocab.json"), &read("merges.txt")).unwrap();
        let parts = load_model_bytes("tiny", &read("config.json"), tok(), read("model.safetensors"), device).unwrap();
        let m = load_model_dir(&dir, device).unwrap();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 1, 4, 1, 5], [1, 5]), device);
        let a: Vec<f32> = parts.model.forward(ids.clone()).into_data().iter().collect();
        let b: Vec<f32> = m.model.forward(ids).into_data().iter().collect();
        assert_eq!(a, b, "{name}");
        assert_eq!(
            parts.tokenizer.encode("hello").unwrap(),
            m.tokenizer.encode("hello").unwrap()
        );

        let err = load_model_bytes(
            "mine",
            br#"{"model_type": "llama"}"#,
            tok(),
            read("model.safetensors"),
            device,
        )
        .unwrap_err();
        assert!(
            matches!(&err, EngineError::Config { path, .. } if path.ends_with("mine/config.json")),
            "{err}"
        );
        let err = load_model_bytes(
            "mine",
            &read("config.json"),
            tok(),
            b"\x08\0\0\0\0\0\0\0{}".to_vec(),
            device,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mine/model.safetensors"), "{err}");
    });
}
