//! Assembling a [`Gptj`] from named tensors (transformers' `transformer.h.N…` names; the
//! `transformer.` prefix is dropped by [`WeightFiles`]).
//!
//! GPT-J's projections are `nn.Linear` (`[out, in]` in the files, unlike GPT-2's Conv1D): each is
//! uploaded as it lies and transposed on the device (a view), as for Llama.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::source::ByteSource;
use super::weights::{WeightFiles, param};
use crate::error::{EngineError, Result};
use crate::model::embedding::{TokenEmbeddingConfig, max_chunk_bytes_for};
use crate::model::{Gptj, GptjConfig};

/// Every tensor a GPT-J with `config` has: canonical name and shape.
pub fn expected_tensors(config: &GptjConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f, v) = (config.n_embd, config.d_inner(), config.vocab_size);
    let mut out = vec![("wte.weight".to_string(), vec![v, d])];
    for l in 0..config.n_layer {
        let p = |s: &str| format!("h.{l}.{s}");
        out.push((p("ln_1.weight"), vec![d]));
        out.push((p("ln_1.bias"), vec![d]));
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((p(&format!("attn.{proj}.weight")), vec![d, d]));
        }
        out.push((p("mlp.fc_in.weight"), vec![f, d]));
        out.push((p("mlp.fc_in.bias"), vec![f]));
        out.push((p("mlp.fc_out.weight"), vec![d, f]));
        out.push((p("mlp.fc_out.bias"), vec![d]));
    }
    out.push(("ln_f.weight".into(), vec![d]));
    out.push(("ln_f.bias".into(), vec![d]));
    out.push(("lm_head.weight".into(), vec![v, d]));
    out.push(("lm_head.bias".into(), vec![v]));
    out
}

/// Builds a GPT-J on `device` with its matrices stored in `dtype` (vectors stay f32), one tensor
/// at a time.
pub fn build_gptj_in<S: ByteSource>(
    config: &GptjConfig,
    w: &mut WeightFiles<S>,
    device: &Device,
    dtype: FloatDType,
) -> Result<Gptj> {
    config.validate()?;
    w.check_expected("h.", config.n_layer, expected_tensors(config))?;
    crate::model::precision::check_supported(device, dtype)?;
    let (d, f, v) = (config.n_embd, config.d_inner(), config.vocab_size);
    let on_device = |data: TensorData| Tensor::<2>::from_data(data, (device, DType::from(dtype)));
    let mut model = config.init(device);
    let table = |w: &mut WeightFiles<S>, name: &str| {
        TokenEmbeddingConfig::new(v, d)
            .with_max_chunk_bytes(max_chunk_bytes_for(device))
            .from_chunks(|rows| Ok::<_, EngineError>(on_device(w.take_rows_as(name, &[v, d], rows, dtype)?)))
    };
    let linear = |w: &mut WeightFiles<S>, name: &str, out_in: [usize; 2]| -> Result<Param<Tensor<2>>> {
        let data = w.take_rows_as(name, &out_in, 0..out_in[0], dtype)?;
        Ok(Param::from_tensor(on_device(data).transpose()))
    };
    let vector =
        |w: &mut WeightFiles<S>, name: &str, n: usize| Ok::<_, EngineError>(param(w.take(name, &[n])?, device));
    model.wte = table(w, "wte.weight")?;
    for (l, block) in model.h.iter_mut().enumerate() {
        let p = |s: &str| format!("h.{l}.{s}");
        block.ln_1.gamma = vector(w, &p("ln_1.weight"), d)?;
        block.ln_1.beta = Some(vector(w, &p("ln_1.bias"), d)?);
        let a = &mut block.attn;
        for (name, lin) in [
            ("q_proj", &mut a.q_proj),
            ("k_proj", &mut a.k_proj),
            ("v_proj", &mut a.v_proj),
            ("out_proj", &mut a.o_proj),
        ] {
            lin.weight = linear(w, &p(&format!("attn.{name}.weight")), [d, d])?;
            lin.bias = None;
        }
        block.mlp.c_fc.weight = linear(w, &p("mlp.fc_in.weight"), [f, d])?;
        block.mlp.c_fc.bias = Some(vector(w, &p("mlp.fc_in.bias"), f)?);
        block.mlp.c_proj.weight = linear(w, &p("mlp.fc_out.weight"), [d, f])?;
        block.mlp.c_proj.bias = Some(vector(w, &p("mlp.fc_out.bias"), d)?);
    }
    model.ln_f.gamma = vector(w, "ln_f.weight", d)?;
    model.ln_f.beta = Some(vector(w, "ln_f.bias", d)?);
    model.lm_head = table(w, "lm_head.weight")?;
    model.lm_head_bias = vector(w, "lm_head.bias", v)?;
    Ok(model)
}
