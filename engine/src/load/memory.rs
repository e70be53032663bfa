//! Assembling a model from files the caller already has (the browser reads them from a `File` or
//! an HTTP response): config text, a parsed tokenizer, and `model.safetensors` as any
//! [`ByteSource`] — bytes in memory, or a source that fetches one tensor's range at a time so a
//! large file never sits whole in memory.

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::gptj_weights::build_gptj_in;
use super::llama_weights::build_llama_in;
use super::safetensors::SafetensorsFile;
use super::source::{ByteSource, MemorySource};
use super::weights::{WeightFiles, build_gpt2_in};
use crate::error::{EngineError, Result};
use crate::model::{Model, ModelConfig};
use crate::tokenizer::Gpt2Tokenizer;

/// A model built from in-memory files.
#[derive(Debug)]
pub struct ModelParts {
    /// Its config.
    pub config: ModelConfig,
    /// The network.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Gpt2Tokenizer,
    /// Storage dtype of the weights.
    pub dtype: String,
}

/// Builds a model on `device` from the contents of `config.json`, a tokenizer already parsed,
/// and `model.safetensors`; `name` labels errors. The checks are those of a model directory:
/// a config of a family pmedit knows, a tokenizer that fits the vocabulary, every tensor with its
/// shape.
pub fn load_model_bytes(
    name: &str,
    config_json: &[u8],
    tokenizer: Gpt2Tokenizer,
    weights: Vec<u8>,
    device: &Device,
) -> Result<ModelParts> {
    let source = MemorySource::new(format!("{name}/model.safetensors"), weights);
    load_model_source(name, config_json, tokenizer, source, device)
}

/// [`load_model_bytes`] with `model.safetensors` read through `weights`, one tensor's byte range
/// at a time (the header first, validated against the source's length).
pub fn load_model_source<S: ByteSource>(
    name: &str,
    config_json: &[u8],
    tokenizer: Gpt2Tokenizer,
    weights: S,
    device: &Device,
) -> Result<ModelParts> {
    load_model_source_in(name, config_json, tokenizer, weights, device, FloatDType::F32)
}

/// [`load_model_source`] with the weight matrices stored in `dtype` on the device, each cast as
/// it arrives (`model::precision`).
pub fn load_model_source_in<S: ByteSource>(
    name: &str,
    config_json: &[u8],
    tokenizer: Gpt2Tokenizer,
    weights: S,
    device: &Device,
    dtype: FloatDType,
) -> Result<ModelParts> {
    load_model_sources_in(name, config_json, tokenizer, vec![weights], device, dtype)
}

/// [`load_model_source_in`] for a sharded checkpoint: `shards` are the safetensors files a
/// `model.safetensors.index.json` names, each read one tensor's range at a time; every tensor is
/// looked up across all of them, as for a sharded model directory.
pub fn load_model_sources_in<S: ByteSource>(
    name: &str,
    config_json: &[u8],
    tokenizer: Gpt2Tokenizer,
    shards: Vec<S>,
    device: &Device,
    dtype: FloatDType,
) -> Result<ModelParts> {
    if shards.is_empty() {
        return Err(EngineError::MissingFile {
            dir: name.into(),
            what: "weights".into(),
            expected: "model.safetensors, or the shards model.safetensors.index.json names".into(),
        });
    }
    let text = std::str::from_utf8(config_json).map_err(|e| EngineError::Config {
        path: format!("{name}/config.json").into(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    let config = ModelConfig::from_json(text).map_err(|e| match e {
        EngineError::Config { reason, .. } => EngineError::Config {
            path: format!("{name}/config.json").into(),
            reason,
        },
        other => other,
    })?;
    tokenizer.check_fits(config.vocab_size(), std::path::Path::new(name))?;
    let path = shards[0].name().to_path_buf();
    let files = shards
        .into_iter()
        .map(SafetensorsFile::open)
        .collect::<Result<Vec<_>>>()?;
    let mut files = WeightFiles::new(files, path);
    let stored = files.dtype();
    let model = match &config {
        ModelConfig::Gpt2(c) => Model::Gpt2(build_gpt2_in(c, &mut files, device, dtype)?),
        ModelConfig::Gptj(c) => Model::Gptj(build_gptj_in(c, &mut files, device, dtype)?),
        ModelConfig::Llama(c) => Model::Llama(build_llama_in(c, &mut files, device, dtype)?),
    };
    Ok(ModelParts {
        config,
        model,
        tokenizer,
        dtype: stored,
    })
}
