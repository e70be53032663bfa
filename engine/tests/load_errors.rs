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

/// A GPT-2 file whose config names another family is refused with that family in the message
/// (read as a Llama config, it lacks Llama's fields); an unknown family is refused by name.
#[test]
fn config_of_another_family_is_refused() {
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
    std::fs::write(dir.path().join("config.json"), cfg.replace("\"gpt2\"", "\"falcon\"")).unwrap();
    let err = load_err(dir.path());
    assert!(
        matches!(&err, EngineError::Config { reason, .. } if reason.contains("falcon")),
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
    let w = m.model.as_gpt2().unwrap().h[0].attn.c_proj.weight.val();
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

/// Loading through a [`ByteSource`] reads the header and then one tensor's range at a time —
/// never the whole file at once (the browser streams GPT2-XL's 6 GB this way) — and builds the
/// same model as the in-memory loader.
#[test]
fn loading_from_a_source_reads_one_tensor_at_a_time() {
    use pmedit_engine::load::{ByteSource, MemorySource, load_model_bytes, load_model_source};
    use pmedit_engine::tokenizer::Gpt2Tokenizer;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records the size of every read.
    struct Counting(MemorySource, Rc<RefCell<Vec<usize>>>);
    impl ByteSource for Counting {
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn read_at(&mut self, offset: u64, len: usize) -> pmedit_engine::Result<Vec<u8>> {
            self.1.borrow_mut().push(len);
            self.0.read_at(offset, len)
        }
        fn name(&self) -> &Path {
            self.0.name()
        }
    }

    common::on_all_devices(|name, device| {
        let dir = fixture("tiny-gpt2");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let tok = || Gpt2Tokenizer::from_vocab_merges(&read("vocab.json"), &read("merges.txt")).unwrap();
        let weights = read("model.safetensors");
        let log = Rc::new(RefCell::new(Vec::new()));
        let source = Counting(
            MemorySource::new("tiny/model.safetensors", weights.clone()),
            log.clone(),
        );
        let parts = load_model_source("tiny", &read("config.json"), tok(), source, device).unwrap();
        let reads = log.borrow().clone();
        let total: usize = reads.iter().sum();
        let largest = *reads.iter().max().unwrap();
        // Header (2 reads) + one read per tensor; the biggest is one tensor (wte), not the file.
        let n = 2 + 4 + 12 * parts.config.n_layer();
        assert_eq!(reads.len(), n, "{name}: {reads:?}");
        assert!(
            total <= weights.len(),
            "{name}: read {total} of {} bytes",
            weights.len()
        );
        assert_eq!(
            largest,
            parts.config.vocab_size() * parts.config.d_model() * 4,
            "{name}"
        );
        let whole = load_model_bytes("tiny", &read("config.json"), tok(), weights, device).unwrap();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 1, 4], [1, 3]), device);
        let a: Vec<f32> = parts.model.forward(ids.clone()).into_data().iter().collect();
        let b: Vec<f32> = whole.model.forward(ids).into_data().iter().collect();
        assert_eq!(a, b, "{name}");
    });
}
