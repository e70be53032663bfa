//! Assembling a [`Llama`] from named tensors (transformers' `model.layers.N…` names).
//!
//! transformers stores `nn.Linear` weights `[out, in]`; burn's `Linear` multiplies `x · W` with
//! `W` `[in, out]`, so every projection is uploaded as it lies in the file and transposed on the
//! device (a view: no copy). The embeddings and `lm_head.weight` are `[vocab, d]` tables as they
//! are.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::source::ByteSource;
use super::weights::{WeightFiles, param};
use crate::error::{EngineError, Result};
use crate::model::embedding::{TokenEmbeddingConfig, max_chunk_bytes_for};
use crate::model::{Llama, LlamaConfig};

/// Every tensor a Llama with `config` has: name and shape as transformers writes them.
pub fn expected_tensors(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
    let q = config.num_attention_heads * config.d_head();
    let kv = config.kv_heads() * config.d_head();
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
    for l in 0..config.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        out.push((p("input_layernorm.weight"), vec![d]));
        out.push((p("self_attn.q_proj.weight"), vec![q, d]));
        out.push((p("self_attn.k_proj.weight"), vec![kv, d]));
        out.push((p("self_attn.v_proj.weight"), vec![kv, d]));
        if config.qkv_bias() {
            out.push((p("self_attn.q_proj.bias"), vec![q]));
            out.push((p("self_attn.k_proj.bias"), vec![kv]));
            out.push((p("self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((p("self_attn.o_proj.weight"), vec![d, q]));
        if config.o_bias() {
            out.push((p("self_attn.o_proj.bias"), vec![d]));
        }
        out.push((p("post_attention_layernorm.weight"), vec![d]));
        out.push((p("mlp.gate_proj.weight"), vec![f, d]));
        out.push((p("mlp.up_proj.weight"), vec![f, d]));
        out.push((p("mlp.down_proj.weight"), vec![d, f]));
    }
    out.push(("model.norm.weight".into(), vec![d]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![v, d]));
    }
    out
}

/// Builds a Llama on `device` with its matrices stored in `dtype` (vectors stay f32), one tensor
/// at a time, each converted on the host as it is read: never a whole-model copy.
pub fn build_llama_in<S: ByteSource>(
    config: &LlamaConfig,
    w: &mut WeightFiles<S>,
    device: &Device,
    dtype: FloatDType,
) -> Result<Llama> {
    config.validate()?;
    w.check_expected("model.layers.", config.num_hidden_layers, expected_tensors(config))?;
    crate::model::precision::check_supported(device, dtype)?;
    let (d, v) = (config.hidden_size, config.vocab_size);
    let on_device = |data: TensorData| Tensor::<2>::from_data(data, (device, DType::from(dtype)));
    let mut model = config.init(device);
    let table = |w: &mut WeightFiles<S>, name: &str| {
        TokenEmbeddingConfig::new(v, d)
            .with_max_chunk_bytes(max_chunk_bytes_for(device))
            .from_chunks(|rows| Ok::<_, EngineError>(on_device(w.take_rows_as(name, &[v, d], rows, dtype)?)))
    };
    model.embed_tokens = table(w, "model.embed_tokens.weight")?;
    // `[out, in]` in the file, `[in, out]` for burn.
    let linear = |w: &mut WeightFiles<S>, name: &str, out_in: [usize; 2]| -> Result<Param<Tensor<2>>> {
        let data = w.take_rows_as(name, &out_in, 0..out_in[0], dtype)?;
        Ok(Param::from_tensor(on_device(data).transpose()))
    };
    let vector =
        |w: &mut WeightFiles<S>, name: &str, n: usize| Ok::<_, EngineError>(param(w.take(name, &[n])?, device));
    let shapes = expected_tensors(config);
    let shape = |name: &str| -> [usize; 2] {
        let s = &shapes.iter().find(|(n, _)| n == name).expect("listed").1;
        [s[0], s[1]]
    };
    for (l, block) in model.layers.iter_mut().enumerate() {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        block.input_layernorm.gamma = vector(w, &p("input_layernorm.weight"), d)?;
        let attn = &mut block.self_attn;
        for (name, lin) in [
            ("q_proj", &mut attn.q_proj),
            ("k_proj", &mut attn.k_proj),
            ("v_proj", &mut attn.v_proj),
            ("o_proj", &mut attn.o_proj),
        ] {
            let weight = p(&format!("self_attn.{name}.weight"));
            let [out, _] = shape(&weight);
            lin.weight = linear(w, &weight, shape(&weight))?;
            let bias = p(&format!("self_attn.{name}.bias"));
            if lin.bias.is_some() {
                lin.bias = Some(vector(w, &bias, out)?);
            }
        }
        block.post_attention_layernorm.gamma = vector(w, &p("post_attention_layernorm.weight"), d)?;
        for (name, lin) in [
            ("gate_proj", &mut block.mlp.gate_proj),
            ("up_proj", &mut block.mlp.up_proj),
            ("down_proj", &mut block.mlp.down_proj),
        ] {
            let weight = p(&format!("mlp.{name}.weight"));
            lin.weight = linear(w, &weight, shape(&weight))?;
        }
    }
    model.norm.gamma = vector(w, "model.norm.weight", d)?;
    if model.lm_head.is_some() {
        model.lm_head = Some(table(w, "lm_head.weight")?);
    }
    Ok(model)
}
