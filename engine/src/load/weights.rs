//! Assembling a [`Gpt2`] from named tensors, whichever key layout the files use.
//!
//! Hugging Face writes GPT-2 in two layouts: the original hub files (`h.0.attn.c_attn.weight`,
//! sometimes with `attn.bias` buffers and `lm_head.weight`) and transformers ≥ 5
//! (`transformer.h.0…`, no `lm_head`). Conv1D weights are `[in, out]` in both, which is burn's
//! `Linear` layout, so no tensor is transposed.

use half::slice::HalfFloatSliceExt;
use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

use super::safetensors::SafetensorsFile;
use super::source::ByteSource;
use crate::error::{EngineError, Result};
use crate::model::embedding::{TokenEmbeddingConfig, max_chunk_bytes_for};
use crate::model::{Gpt2, Gpt2Config};

/// Named tensors spread over one or more safetensors files (shards).
pub struct WeightFiles<S> {
    pub(crate) files: Vec<SafetensorsFile<S>>,
    /// canonical name (no `transformer.` prefix) → (file index, name in that file)
    pub(crate) index: HashMap<String, (usize, String)>,
    pub(crate) origin: PathBuf,
}

impl<S: ByteSource> WeightFiles<S> {
    /// Indexes the tensors of `files`, accepting both key layouts.
    pub fn new(files: Vec<SafetensorsFile<S>>, origin: PathBuf) -> Self {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.names() {
                let canon = name.strip_prefix("transformer.").unwrap_or(name);
                index.insert(canon.to_string(), (i, name.to_string()));
            }
        }
        Self { files, index, origin }
    }

    /// Reads a tensor by canonical name as f32 host values, checking its shape and finiteness.
    pub(crate) fn take_values(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        self.take_rows(name, expected, 0..expected.first().copied().unwrap_or(1))
    }

    /// Reads rows `rows` of a tensor (its first dimension) by canonical name as f32 host values,
    /// checking the tensor's shape and the values' finiteness.
    fn take_rows(&mut self, name: &str, expected: &[usize], rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let (file, key) = self
            .index
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.into(),
                path: self.origin.clone(),
            })?;
        let shape = self.files[file].info(&key).map(|t| t.shape.clone()).unwrap_or_default();
        if shape != expected {
            return Err(EngineError::ShapeMismatch {
                name: key,
                expected: expected.to_vec(),
                found: shape,
            });
        }
        let row: usize = expected.iter().skip(1).product();
        let values = self.files[file].read_f32_elements(&key, rows.start * row, rows.len() * row)?;
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::Safetensors {
                path: self.origin.clone(),
                reason: format!(
                    "tensor `{key}` holds a non-finite value ({}) at element {}",
                    values[pos],
                    rows.start * row + pos
                ),
            });
        }
        Ok(values)
    }

    /// Reads a tensor by canonical name as f32, checking its shape.
    pub(crate) fn take(&mut self, name: &str, expected: &[usize]) -> Result<TensorData> {
        Ok(TensorData::new(self.take_values(name, expected)?, expected.to_vec()))
    }

    /// Checks, from the files' headers alone, that they hold the network `config` describes —
    /// every tensor with its shape, and nothing more — before any module is built, so a
    /// `config.json` that claims 10⁹ layers or 2³²-wide embeddings is an error, not an attempt to
    /// allocate them.
    pub fn check_config(&self, config: &Gpt2Config) -> Result<()> {
        let bad = |reason: String| EngineError::Config {
            path: "config.json".into(),
            reason,
        };
        let claimed = config
            .checked_num_params()
            .ok_or_else(|| bad("its sizes overflow".into()))?;
        // Blocks present: one past the largest `h.N.` index (bounds every loop below).
        let blocks = self
            .index
            .keys()
            .filter_map(|k| k.strip_prefix("h.")?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |n| n + 1);
        if config.n_layer > blocks {
            return Err(bad(format!(
                "it says n_layer {} but the weights in {} hold {blocks} blocks: the config does not belong to these weights",
                config.n_layer,
                self.origin.display()
            )));
        }
        let (d, f, v) = (config.n_embd, config.d_inner(), config.vocab_size);
        let mut expected: Vec<(String, Vec<usize>)> = vec![
            ("wte.weight".into(), vec![v, d]),
            ("wpe.weight".into(), vec![config.n_positions, d]),
        ];
        for l in 0..config.n_layer {
            for (suffix, shape) in [
                ("ln_1.weight", vec![d]),
                ("ln_1.bias", vec![d]),
                ("attn.c_attn.weight", vec![d, 3 * d]),
                ("attn.c_attn.bias", vec![3 * d]),
                ("attn.c_proj.weight", vec![d, d]),
                ("attn.c_proj.bias", vec![d]),
                ("ln_2.weight", vec![d]),
                ("ln_2.bias", vec![d]),
                ("mlp.c_fc.weight", vec![d, f]),
                ("mlp.c_fc.bias", vec![f]),
                ("mlp.c_proj.weight", vec![f, d]),
                ("mlp.c_proj.bias", vec![d]),
            ] {
                expected.push((format!("h.{l}.{suffix}"), shape));
            }
        }
        expected.push(("ln_f.weight".into(), vec![d]));
        expected.push(("ln_f.bias".into(), vec![d]));
        for (name, shape) in &expected {
            let (file, key) = self.index.get(name).ok_or_else(|| EngineError::MissingTensor {
                name: name.clone(),
                path: self.origin.clone(),
            })?;
            if let Some(info) = self.files[*file].info(key)
                && info.shape != *shape
            {
                return Err(EngineError::ShapeMismatch {
                    name: key.clone(),
                    expected: shape.clone(),
                    found: info.shape.clone(),
                });
            }
        }
        let mut held: u128 = 0;
        for (canon, (file, key)) in &self.index {
            // Hub files carry attention-mask buffers and a tied lm_head copy: not parameters.
            if canon.ends_with(".attn.bias") || canon.ends_with(".attn.masked_bias") || canon == "lm_head.weight" {
                continue;
            }
            if let Some(info) = self.files[*file].info(key) {
                held += info.shape.iter().map(|&d| d as u128).product::<u128>();
            }
        }
        if held != claimed as u128 {
            return Err(bad(format!(
                "it describes {claimed} parameters (n_layer {}, n_embd {}, vocab_size {}, n_positions {}) but the weights in {} hold {held}: \
                 the config does not belong to these weights",
                config.n_layer,
                config.n_embd,
                config.vocab_size,
                config.n_positions,
                self.origin.display()
            )));
        }
        Ok(())
    }

    /// Checks, from the headers alone, that the files hold exactly `n_layer` blocks (tensors named
    /// `{block_prefix}N.…`) and every tensor of `expected` with its shape, before anything is
    /// allocated (the Llama and GPT-J loaders; GPT-2's [`check_config`](Self::check_config) also
    /// counts parameters).
    pub(crate) fn check_expected(
        &self,
        block_prefix: &str,
        n_layer: usize,
        expected: Vec<(String, Vec<usize>)>,
    ) -> Result<()> {
        let blocks = self
            .index
            .keys()
            .filter_map(|k| k.strip_prefix(block_prefix)?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |n| n + 1);
        if blocks != n_layer {
            return Err(EngineError::Config {
                path: "config.json".into(),
                reason: format!(
                    "it says {n_layer} layers but the weights in {} hold {blocks} blocks: the config does not belong to these weights",
                    self.origin.display()
                ),
            });
        }
        for (name, shape) in expected {
            let (file, key) = self.index.get(&name).ok_or_else(|| EngineError::MissingTensor {
                name: name.clone(),
                path: self.origin.clone(),
            })?;
            if let Some(info) = self.files[*file].info(key)
                && info.shape != shape
            {
                return Err(EngineError::ShapeMismatch {
                    name: key.clone(),
                    expected: shape,
                    found: info.shape.clone(),
                });
            }
        }
        Ok(())
    }

    /// The dtype of the first weight, for `pmedit info`.
    pub fn dtype(&self) -> String {
        self.index
            .get("wte.weight")
            .or_else(|| self.index.get("model.embed_tokens.weight"))
            .and_then(|(f, k)| self.files[*f].info(k))
            .map_or_else(|| "unknown".into(), |i| format!("{:?}", i.dtype))
    }
}

pub(crate) fn param<const D: usize>(data: TensorData, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(data, device))
}

/// Builds the model on `device` with its matrices in f32 ([`build_gpt2_in`]).
pub fn build_gpt2<S: ByteSource>(config: &Gpt2Config, w: &mut WeightFiles<S>, device: &Device) -> Result<Gpt2> {
    build_gpt2_in(config, w, device, FloatDType::F32)
}

/// Elements read per piece when a tensor is converted on the host (16 MB of f32).
pub(crate) const PIECE: usize = 1 << 22;

impl<S: ByteSource> WeightFiles<S> {
    /// Rows `rows` of a tensor as host data in `dtype`, read and converted in pieces of [`PIECE`]
    /// elements: a half-precision tensor never exists in f32 as a whole, on the host or the device.
    pub(crate) fn take_rows_as(
        &mut self,
        name: &str,
        expected: &[usize],
        rows: std::ops::Range<usize>,
        dtype: FloatDType,
    ) -> Result<TensorData> {
        let row: usize = expected.iter().skip(1).product::<usize>().max(1);
        let mut shape = expected.to_vec();
        shape[0] = rows.len();
        let step = (PIECE / row).max(1);
        let pieces = (rows.start..rows.end)
            .step_by(step)
            .map(|s| s..(s + step).min(rows.end));
        let numel = rows.len() * row;
        Ok(match dtype {
            FloatDType::F16 | FloatDType::BF16 => {
                let (mut f16s, mut bf16s) = (Vec::new(), Vec::new());
                if dtype == FloatDType::F16 {
                    f16s.reserve_exact(numel);
                } else {
                    bf16s.reserve_exact(numel);
                }
                for piece in pieces {
                    let values = self.take_rows(name, expected, piece)?;
                    // Whole slices: `half` converts them with F16C where the CPU has it.
                    if dtype == FloatDType::F16 {
                        let at = f16s.len();
                        f16s.resize(at + values.len(), half::f16::ZERO);
                        f16s[at..].convert_from_f32_slice(&values);
                    } else {
                        let at = bf16s.len();
                        bf16s.resize(at + values.len(), half::bf16::ZERO);
                        bf16s[at..].convert_from_f32_slice(&values);
                    }
                }
                if dtype == FloatDType::F16 {
                    TensorData::new(f16s, shape)
                } else {
                    TensorData::new(bf16s, shape)
                }
            }
            _ => TensorData::new(self.take_rows(name, expected, rows)?, shape),
        })
    }
}

/// Builds the model on `device` with its matrices stored in `dtype` (vectors stay f32; see
/// `model::precision`), one tensor at a time — the token embeddings one device chunk at a time —
/// each converted to `dtype` on the host as it is read, so peak memory stays near the model's own
/// size in `dtype` plus one tensor: never a whole-model copy, never a half-precision tensor in f32.
pub fn build_gpt2_in<S: ByteSource>(
    config: &Gpt2Config,
    w: &mut WeightFiles<S>,
    device: &Device,
    dtype: FloatDType,
) -> Result<Gpt2> {
    config.validate()?;
    w.check_config(config)?;
    crate::model::precision::check_supported(device, dtype)?;
    let (d, f, v) = (config.n_embd, config.d_inner(), config.vocab_size);
    let on_device = |data: TensorData| Tensor::<2>::from_data(data, (device, DType::from(dtype)));
    // `init` only declares lazily-initialised parameters; each is replaced before first use.
    let mut model = config.init(device);
    // Uploaded in chunks that fit any GPU binding limit, each read from the file on its own.
    model.wte = TokenEmbeddingConfig::new(v, d)
        .with_max_chunk_bytes(max_chunk_bytes_for(device))
        .from_chunks(|rows| Ok::<_, EngineError>(on_device(w.take_rows_as("wte.weight", &[v, d], rows, dtype)?)))?;
    let matrix = |w: &mut WeightFiles<S>, name: &str, shape: [usize; 2]| -> Result<Param<Tensor<2>>> {
        let data = w.take_rows_as(name, &shape, 0..shape[0], dtype)?;
        Ok(Param::from_tensor(on_device(data)))
    };
    model.wpe.weight = matrix(w, "wpe.weight", [config.n_positions, d])?;
    // In the order the blocks' tensors lie in the hub's files, so a streamed read seldom seeks back.
    for (l, block) in model.h.iter_mut().enumerate() {
        let name = |suffix: &str| format!("h.{l}.{suffix}");
        let vector = |w: &mut WeightFiles<S>, suffix: &str, n: usize| {
            Ok::<_, EngineError>(param(w.take(&name(suffix), &[n])?, device))
        };
        block.ln_1.gamma = vector(w, "ln_1.weight", d)?;
        block.ln_1.beta = Some(vector(w, "ln_1.bias", d)?);
        block.attn.c_attn.weight = matrix(w, &name("attn.c_attn.weight"), [d, 3 * d])?;
        block.attn.c_attn.bias = Some(vector(w, "attn.c_attn.bias", 3 * d)?);
        block.attn.c_proj.weight = matrix(w, &name("attn.c_proj.weight"), [d, d])?;
        block.attn.c_proj.bias = Some(vector(w, "attn.c_proj.bias", d)?);
        block.ln_2.gamma = vector(w, "ln_2.weight", d)?;
        block.ln_2.beta = Some(vector(w, "ln_2.bias", d)?);
        block.mlp.c_fc.weight = matrix(w, &name("mlp.c_fc.weight"), [d, f])?;
        block.mlp.c_fc.bias = Some(vector(w, "mlp.c_fc.bias", f)?);
        block.mlp.c_proj.weight = matrix(w, &name("mlp.c_proj.weight"), [f, d])?;
        block.mlp.c_proj.bias = Some(vector(w, "mlp.c_proj.bias", d)?);
    }
    model.ln_f.gamma = param(w.take("ln_f.weight", &[d])?, device);
    model.ln_f.beta = Some(param(w.take("ln_f.bias", &[d])?, device));
    Ok(model)
}
