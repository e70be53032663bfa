//! The streamed model writer (the page's download, written tensor by tensor): the file it writes
//! loads back to the same weights — bit for bit in f32, rounded to nearest in f16 — on every device,
//! and its length is what it reports.

mod common;

use burn::prelude::*;
use common::{fixture, on_all_devices};
use pmedit_engine::block_on;
use pmedit_engine::load::{load_model_bytes, load_model_dir};
use pmedit_engine::save::{WeightDtype, model_to_bytes, stream_model};
use pmedit_engine::tokenizer::Gpt2Tokenizer;

fn bits(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn streamed_files_load_back_to_the_same_weights() {
    on_all_devices(|name, device| {
        let dir = fixture("tiny-gpt2");
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let original = load_model_dir(&dir, device).unwrap();
        for dtype in [WeightDtype::F32, WeightDtype::F16, WeightDtype::BF16] {
            let bytes = block_on(model_to_bytes(&original.model, dtype)).unwrap();
            let mut pieces = 0;
            let len = block_on(stream_model(&original.model, dtype, |_| {
                pieces += 1;
                Ok(())
            }))
            .unwrap();
            assert_eq!(len, bytes.len() as u64, "{name} {dtype:?}");
            assert!(pieces > 10, "{name}: written in pieces, not at once");
            let tok = Gpt2Tokenizer::from_vocab_merges(&read("vocab.json"), &read("merges.txt")).unwrap();
            let back = load_model_bytes("tiny", &read("config.json"), tok, bytes, device).unwrap();
            for (a, b) in [
                (
                    back.model.as_gpt2().unwrap().h[1].mlp.c_proj.weight.val(),
                    original.model.as_gpt2().unwrap().h[1].mlp.c_proj.weight.val(),
                ),
                (
                    back.model.as_gpt2().unwrap().wte.chunks[0].val(),
                    original.model.as_gpt2().unwrap().wte.chunks[0].val(),
                ),
                (
                    back.model.as_gpt2().unwrap().wpe.weight.val(),
                    original.model.as_gpt2().unwrap().wpe.weight.val(),
                ),
            ] {
                let want: Vec<f32> = match dtype {
                    WeightDtype::F32 => bits(b),
                    WeightDtype::F16 => bits(b).into_iter().map(|x| half::f16::from_f32(x).to_f32()).collect(),
                    WeightDtype::BF16 => bits(b).into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect(),
                };
                assert_eq!(bits(a), want, "{name} {dtype:?}");
            }
        }
    });
}
