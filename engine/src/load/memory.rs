//! Assembling a model from files the caller already has (the browser reads them from a `File` or
//! an HTTP response): config text, a parsed tokenizer, and `model.safetensors` as any
//! [`ByteSource`] — bytes in memory, or a source that fetches one tensor's range at a time so a
//! large file never sits whole in memory.

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::safetensors::SafetensorsFile;
use super::source::{ByteSource, MemorySource};
use super::weights::{WeightFiles, build_gpt2_in};
use crate::error::{EngineError, Result};
use crate::model::{Gpt2, Gpt2Config};
use crate::tokenizer::Gpt2Tokenizer;

/// A model built from in-memory files.
#[derive(Debug)]
pub struct ModelParts {
    /// Its config.
    pub config: Gpt2Config,
    /// The network.
    pub model: Gpt2,
    /// Its tokenizer.
    pub tokenizer: Gpt2Tokenizer,
    /// Storage dtype of the weights.
    pub dtype: String,
}

/// Builds a model on `device` from the contents of `config.json`, a tokenizer already parsed,
/// and `model.safetensors`; `name` labels errors. The checks are those of a model directory:
/// a config that is GPT-2, a tokenizer that fits the vocabulary, every tensor with its shape.
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
    let text = std::str::from_utf8(config_json).map_err(|e| EngineError::Config {
        path: format!("{name}/config.json").into(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    let config = Gpt2Config::from_json(text).map_err(|e| match e {
        EngineError::Config { reason, .. } => EngineError::Config {
            path: format!("{name}/config.json").into(),
            reason,
        },
        other => other,
    })?;
    tokenizer.check_fits(config.vocab_size, std::path::Path::new(name))?;
    let path = weights.name().to_path_buf();
    let file = SafetensorsFile::open(weights)?;
    let mut files = WeightFiles::new(vec![file], path);
    let stored = files.dtype();
    let model = build_gpt2_in(&config, &mut files, device, dtype)?;
    Ok(ModelParts {
        config,
        model,
        tokenizer,
        dtype: stored,
    })
}
