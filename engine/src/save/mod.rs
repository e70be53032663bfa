//! Writing a model directory that `pmedit` and Hugging Face transformers both load. Weights are
//! streamed from the device one tensor at a time. Where the directory goes, and how it replaces
//! an earlier one, is the caller's decision (the CLI writes into a fresh sibling and swaps it in).

pub mod delta_file;
pub mod stats_file;

use half::slice::HalfFloatSliceExt;
use std::borrow::Cow;
use std::collections::HashMap;
#[cfg(not(target_family = "wasm"))]
use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::{Dtype, View};

use crate::error::{EngineError, Result};
use crate::model::{Gpt2, Gptj, Llama, Model};

/// One tensor (possibly stored as row chunks), read back only when the writer reaches it.
struct DeviceView {
    parts: Vec<Tensor<1>>,
    shape: Vec<usize>,
    /// The dtype written.
    dtype: WeightDtype,
}

impl View for DeviceView {
    fn dtype(&self) -> Dtype {
        match self.dtype {
            WeightDtype::F32 => Dtype::F32,
            WeightDtype::F16 => Dtype::F16,
            WeightDtype::BF16 => Dtype::BF16,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = Vec::with_capacity(self.data_len());
        for part in &self.parts {
            let values: Vec<f32> = part.clone().into_data().iter::<f32>().collect();
            bytes.extend(self.dtype.encode(&values));
        }
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.width()
    }
}

/// The dtype `model.safetensors` is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    /// 32-bit floats (what the engine computes in).
    F32,
    /// 16-bit floats, rounded to nearest: half the size; pmedit and transformers load both.
    F16,
    /// bfloat16, rounded to nearest: the dtype Llama checkpoints ship in.
    BF16,
}

impl WeightDtype {
    /// Bytes per element.
    pub fn width(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// The safetensors name of the dtype.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
        }
    }

    /// `values` as little-endian bytes of this dtype.
    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            // A slice at a time: `half` converts those with F16C where the CPU has it.
            Self::F16 => encode_halves(
                values,
                half::f16::ZERO,
                |d, s| d.convert_from_f32_slice(s),
                half::f16::to_le_bytes,
            ),
            Self::BF16 => encode_halves(
                values,
                half::bf16::ZERO,
                |d, s| d.convert_from_f32_slice(s),
                half::bf16::to_le_bytes,
            ),
        }
    }
}

/// `values` as little-endian half-precision bytes, converted (`convert`) through a small buffer
/// of `H`s: no whole-tensor intermediate beside the bytes.
fn encode_halves<H: Copy>(
    values: &[f32],
    zero: H,
    convert: fn(&mut [H], &[f32]),
    le_bytes: fn(H) -> [u8; 2],
) -> Vec<u8> {
    const CHUNK: usize = 4096;
    let mut bytes = Vec::with_capacity(values.len() * 2);
    let mut buf = [zero; CHUNK];
    for chunk in values.chunks(CHUNK) {
        let halves = &mut buf[..chunk.len()];
        convert(halves, chunk);
        bytes.extend(halves.iter().flat_map(|&h| le_bytes(h)));
    }
    bytes
}

fn view<const D: usize>(t: Tensor<D>) -> DeviceView {
    let shape = t.dims().to_vec();
    let n = shape.iter().product::<usize>();
    DeviceView {
        parts: vec![t.reshape([n])],
        shape,
        dtype: WeightDtype::F32,
    }
}

fn chunked_view(e: &crate::model::embedding::TokenEmbedding) -> DeviceView {
    let parts = e
        .chunks
        .iter()
        .map(|c| c.val().reshape([c.dims()[0] * c.dims()[1]]))
        .collect();
    DeviceView {
        parts,
        shape: vec![e.vocab(), e.d_model()],
        dtype: WeightDtype::F32,
    }
}

/// The model's tensors under transformers' names.
fn named_tensors(model: &Model) -> Vec<(String, DeviceView)> {
    match model {
        Model::Gpt2(m) => gpt2_tensors(m),
        Model::Gptj(m) => gptj_tensors(m),
        Model::Llama(m) => llama_tensors(m),
    }
}

/// A GPT-J's tensors under transformers' names, each projection back in `[out, in]`.
fn gptj_tensors(model: &Gptj) -> Vec<(String, DeviceView)> {
    let linear = |l: &burn::nn::Linear| view(l.weight.val().transpose());
    let mut v = vec![("transformer.wte.weight".to_string(), chunked_view(&model.wte))];
    for (l, block) in model.h.iter().enumerate() {
        let p = |s: &str| format!("transformer.h.{l}.{s}");
        v.push((p("ln_1.weight"), view(block.ln_1.gamma.val())));
        if let Some(b) = &block.ln_1.beta {
            v.push((p("ln_1.bias"), view(b.val())));
        }
        let a = &block.attn;
        for (name, lin) in [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("out_proj", &a.o_proj),
        ] {
            v.push((p(&format!("attn.{name}.weight")), linear(lin)));
        }
        for (name, lin) in [("fc_in", &block.mlp.c_fc), ("fc_out", &block.mlp.c_proj)] {
            v.push((p(&format!("mlp.{name}.weight")), linear(lin)));
            if let Some(b) = &lin.bias {
                v.push((p(&format!("mlp.{name}.bias")), view(b.val())));
            }
        }
    }
    v.push(("transformer.ln_f.weight".into(), view(model.ln_f.gamma.val())));
    if let Some(b) = &model.ln_f.beta {
        v.push(("transformer.ln_f.bias".into(), view(b.val())));
    }
    v.push(("lm_head.weight".into(), chunked_view(&model.lm_head)));
    v.push(("lm_head.bias".into(), view(model.lm_head_bias.val())));
    v
}

/// A Llama's tensors under transformers' names (`model.layers.0…`), each projection back in
/// `nn.Linear`'s `[out, in]` layout.
fn llama_tensors(model: &Llama) -> Vec<(String, DeviceView)> {
    let linear = |l: &burn::nn::Linear| view(l.weight.val().transpose());
    let mut v = vec![(
        "model.embed_tokens.weight".to_string(),
        chunked_view(&model.embed_tokens),
    )];
    for (l, block) in model.layers.iter().enumerate() {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        v.push((p("input_layernorm.weight"), view(block.input_layernorm.gamma.val())));
        let a = &block.self_attn;
        for (name, lin) in [
            ("q_proj", &a.q_proj),
            ("k_proj", &a.k_proj),
            ("v_proj", &a.v_proj),
            ("o_proj", &a.o_proj),
        ] {
            v.push((p(&format!("self_attn.{name}.weight")), linear(lin)));
            if let Some(b) = &lin.bias {
                v.push((p(&format!("self_attn.{name}.bias")), view(b.val())));
            }
        }
        v.push((
            p("post_attention_layernorm.weight"),
            view(block.post_attention_layernorm.gamma.val()),
        ));
        for (name, lin) in [
            ("gate_proj", &block.mlp.gate_proj),
            ("up_proj", &block.mlp.up_proj),
            ("down_proj", &block.mlp.down_proj),
        ] {
            v.push((p(&format!("mlp.{name}.weight")), linear(lin)));
        }
    }
    v.push(("model.norm.weight".into(), view(model.norm.gamma.val())));
    if let Some(head) = &model.lm_head {
        v.push(("lm_head.weight".into(), chunked_view(head)));
    }
    v
}

/// A GPT-2's tensors under transformers-5 names (`transformer.h.0…`; lm_head is tied).
fn gpt2_tensors(model: &Gpt2) -> Vec<(String, DeviceView)> {
    let mut v = vec![
        ("transformer.wte.weight".to_string(), chunked_view(&model.wte)),
        ("transformer.wpe.weight".to_string(), view(model.wpe.weight.val())),
        ("transformer.ln_f.weight".to_string(), view(model.ln_f.gamma.val())),
    ];
    if let Some(b) = &model.ln_f.beta {
        v.push(("transformer.ln_f.bias".into(), view(b.val())));
    }
    for (l, block) in model.h.iter().enumerate() {
        let p = |s: &str| format!("transformer.h.{l}.{s}");
        v.push((p("ln_1.weight"), view(block.ln_1.gamma.val())));
        v.push((p("ln_2.weight"), view(block.ln_2.gamma.val())));
        for (name, lin) in [
            ("attn.c_attn", &block.attn.c_attn),
            ("attn.c_proj", &block.attn.c_proj),
            ("mlp.c_fc", &block.mlp.c_fc),
            ("mlp.c_proj", &block.mlp.c_proj),
        ] {
            v.push((p(&format!("{name}.weight")), view(lin.weight.val())));
            if let Some(b) = &lin.bias {
                v.push((p(&format!("{name}.bias")), view(b.val())));
            }
        }
        for (name, ln) in [("ln_1", &block.ln_1), ("ln_2", &block.ln_2)] {
            if let Some(b) = &ln.beta {
                v.push((p(&format!("{name}.bias")), view(b.val())));
            }
        }
    }
    v
}

/// Serialises named tensors (f32) and metadata to safetensors bytes, reading them back from the
/// device one at a time.
pub fn tensors_to_bytes<const D: usize>(
    tensors: Vec<(String, Tensor<D>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, DeviceView)> = tensors.into_iter().map(|(n, t)| (n, view(t))).collect();
    safetensors::serialize(views, Some(metadata)).map_err(|e| EngineError::Input(format!("serialising tensors: {e}")))
}

/// The whole model as safetensors bytes (transformers-5 names) in `dtype`: [`stream_model`] into
/// memory, for small models and tests.
pub async fn model_to_bytes(model: &Model, dtype: WeightDtype) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    stream_model(model, dtype, |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })
    .await?;
    Ok(bytes)
}

/// Writes the model as a safetensors file (transformers-5 names) in `dtype` through `write`, in
/// order: the header, then each tensor as it is read back from the device (async reads, so it
/// works on WebGPU). Only one tensor is ever in host memory, so the page writes GPT2-XL to a file
/// without holding it (the wasm heap ends at 4 GiB). Returns the file's length.
pub async fn stream_model(
    model: &Model,
    dtype: WeightDtype,
    mut write: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let width = dtype.width();
    let tensors = named_tensors(model);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, view) in &tensors {
        let bytes = (view.shape.iter().product::<usize>() * width) as u64;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": view.shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text =
        serde_json::to_vec(&header).map_err(|e| EngineError::Input(format!("serialising the header: {e}")))?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    write(&(text.len() as u64).to_le_bytes())?;
    write(&text)?;
    for (_, view) in tensors {
        for part in view.parts {
            let values = crate::readback::read_vec::<f32, 1, Float>(part).await?;
            let bytes = dtype.encode(&values);
            write(&bytes)?;
        }
    }
    Ok(8 + text.len() as u64 + offset)
}

/// The files of the model directory `source` that an edited copy keeps: config, tokenizer and
/// the rest, but not its weights (`*.safetensors`, the shard index) or hidden files.
#[cfg(not(target_family = "wasm"))]
pub fn model_side_files(source: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let io = |p: &Path, e| EngineError::io(p, e);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(source).map_err(|e| io(source, e))? {
        let entry = entry.map_err(|e| io(source, e))?;
        let fname = entry.file_name().to_string_lossy().into_owned();
        let is_weights = fname.ends_with(".safetensors") || fname == "model.safetensors.index.json";
        if entry.path().is_file() && !is_weights && !fname.starts_with('.') {
            files.push((fname, std::fs::read(entry.path()).map_err(|e| io(&entry.path(), e))?));
        }
    }
    files.sort();
    Ok(files)
}

/// Writes `model` as `model.safetensors` (in `dtype`) and `files` (name, contents: config,
/// tokenizer, …) into the existing directory `dir`.
#[cfg(not(target_family = "wasm"))]
pub fn write_model_files(model: &Model, dir: &Path, files: &[(String, Vec<u8>)], dtype: WeightDtype) -> Result<()> {
    let io = |p: &Path, e| EngineError::io(p, e);
    for (fname, bytes) in files {
        std::fs::write(dir.join(fname), bytes).map_err(|e| io(&dir.join(fname), e))?;
    }
    let weights = dir.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut tensors = named_tensors(model);
    for (_, v) in &mut tensors {
        v.dtype = dtype;
    }
    safetensors::serialize_to_file(tensors, Some(meta), &weights).map_err(|e| EngineError::Safetensors {
        path: weights.clone(),
        reason: e.to_string(),
    })?;
    // safetensors creates the file private (0600); give it what any new file gets (0666 less the
    // umask), which the directory shows (0777 less the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir_mode = std::fs::metadata(dir).map_err(|e| io(dir, e))?.permissions().mode();
        std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(dir_mode & 0o666))
            .map_err(|e| io(&weights, e))?;
    }
    Ok(())
}
